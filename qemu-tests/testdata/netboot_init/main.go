// Command netboot_init is the /init of the netboot test's initramfs: it
// prints a marker and the kernel command line on the console, then powers
// the machine off. It stands in for the appliance (a later issue) so that
// the netboot test shows that shoal serve's chain (DHCP, TFTP, iPXE script,
// HTTP kernel and initramfs, command line) reached userspace.
package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.MkdirAll("/dev", 0o755)
	syscall.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	os.MkdirAll("/proc", 0o755)
	syscall.Mount("proc", "/proc", "proc", 0, "")
	con, err := os.OpenFile("/dev/console", os.O_WRONLY, 0)
	if err != nil {
		con = os.Stdout
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	fmt.Fprintf(con, "\nSHOAL-CMDLINE: %s\n", strings.TrimSpace(string(cmdline)))
	fmt.Fprintf(con, "SHOAL-NETBOOT-OK\n")
	con.Sync()
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	for {
		time.Sleep(time.Hour)
	}
}
