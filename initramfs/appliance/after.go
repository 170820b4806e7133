package appliance

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/initramfs/config"
)

// After performs the after-action on the real machine: reboot and
// poweroff sync and call reboot(2); kexec boots the kernel found on the
// written disk (falling back to a reboot when there is none); shell
// returns nil, and init then starts the shell.
func After(ctx context.Context, action, disk string, log *slog.Logger) error {
	unix.Sync()
	if action == config.AfterShell {
		return nil
	}
	// u-root's init copies our output to the consoles through a pipe:
	// give it a moment to drain, or reboot(2) loses the last lines (the
	// SUCCESS line among them).
	time.Sleep(time.Second)
	switch action {
	case config.AfterPoweroff:
		return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	case config.AfterKexec:
		if err := Kexec(ctx, disk, log); err != nil {
			log.Warn("kexec failed: rebooting instead", "disk", disk, "err", err)
			time.Sleep(2 * time.Second)
		}
		return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	case config.AfterReboot:
		return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	}
	return fmt.Errorf("unknown after-action %q", action)
}

// Shells are the shells Shell tries, in order.
var Shells = []string{"/bin/defaultsh", "/bin/gosh", "/bbin/gosh", "/bin/sh"}

// Shell runs a shell on the console for as long as ctx lasts, so that the
// appliance never exits (init would then panic and the machine reboot into
// another attempt: a reboot loop). A shell that ends is started again; one
// that ends at once (no console input, e.g. a serial console with nothing
// attached) is restarted after a pause, each time with a reminder of why it
// is there.
func Shell(ctx context.Context, console io.Writer, why error) error {
	for ctx.Err() == nil {
		if why != nil {
			fmt.Fprintf(console, "shoal: reimaging failed: %v\n", why)
		}
		path := ""
		for _, s := range Shells {
			if _, err := os.Stat(s); err == nil {
				path = s
				break
			}
		}
		if path == "" {
			fmt.Fprintln(console, "shoal: no shell in this initramfs; waiting (power the machine off)")
			<-ctx.Done()
			break
		}
		start := time.Now()
		cmd := exec.CommandContext(ctx, path)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		err := cmd.Run()
		if time.Since(start) < 5*time.Second {
			fmt.Fprintf(console, "shoal: shell %s ended at once (%v); starting it again in 30 s\n", path, err)
			select {
			case <-ctx.Done():
			case <-time.After(30 * time.Second):
			}
		}
	}
	return why
}
