// Command init is the /init of shoal's sample OS: the tiny bootable OS that
// `shoal lab` and the end-to-end tests reimage machines with. It prints a
// marker naming the machine (its SMBIOS serial, which QEMU sets with
// -smbios type=1,serial=NAME) and the firmware it booted with, then powers
// the machine off (or halts, with sample.after=halt on the command line).
package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

func main() {
	for _, m := range []struct{ src, dir, fs string }{
		{"devtmpfs", "/dev", "devtmpfs"},
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
	} {
		os.MkdirAll(m.dir, 0o755)
		syscall.Mount(m.src, m.dir, m.fs, 0, "")
	}
	con, err := os.OpenFile("/dev/console", os.O_WRONLY, 0)
	if err != nil {
		con = os.Stdout
	}
	name := "unknown"
	if b, err := os.ReadFile("/sys/class/dmi/id/product_serial"); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		name = strings.TrimSpace(string(b))
	}
	syscall.Sethostname([]byte(name))
	firmware := "bios"
	if _, err := os.Stat("/sys/firmware/efi"); err == nil {
		firmware = "uefi"
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	fmt.Fprintf(con, "\nSHOAL-SAMPLE-OS booted host=%s firmware=%s\n", name, firmware)
	con.Sync()
	syscall.Sync()
	if strings.Contains(string(cmdline), "sample.after=halt") {
		for {
			time.Sleep(time.Hour)
		}
	}
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	for {
		time.Sleep(time.Hour)
	}
}
