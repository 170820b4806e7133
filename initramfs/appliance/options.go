// options.go holds the appliance's options and their defaults, the one
// place shoal-init's flags take them from.

package appliance

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/shoal-project/shoal/initramfs/efiboot"
	"github.com/shoal-project/shoal/initramfs/netup"
)

// Options are the appliance's paths and hooks; a zero field takes
// DefaultOptions' value, or the real machine's hook.
type Options struct {
	Cmdline    string // path of the kernel command line
	ModulesDir string // kernel modules to load
	PubKey     string // image-signing public key
	SysBlock   string
	DevDir     string
	// ConfWait is how long to wait for a USB stick with shoal.conf when the
	// command line does not name the repository and image.
	ConfWait time.Duration
	// DiskWait is how long to wait for the target disk to appear.
	DiskWait time.Duration
	// EFIFirmware is where the kernel shows that it booted by UEFI
	// (missing: a BIOS boot, no boot entry).
	EFIFirmware string
	// EFIVars are the firmware's variables, for the boot entry; nil is
	// efivarfs at EFIFirmware/efivars, mounted when needed.
	EFIVars efiboot.Vars
	// Reimage writes the image; nil is Session (the peer session).
	Reimage Reimager
	// After performs the after-action; nil is the real one (reboot, kexec,
	// poweroff; shell returns).
	After func(ctx context.Context, action string, disk string, log *slog.Logger) error
	// Net brings the network up; nil is netup.Up.
	Net func(ctx context.Context) ([]netup.Lease, error)
	// Console is where the operator reads (default os.Stdout).
	Console io.Writer
	Log     *slog.Logger
}

// DefaultOptions are the real machine's paths and waits; the hooks are
// left nil (Run fills them).
func DefaultOptions() Options {
	return Options{
		Cmdline:     "/proc/cmdline",
		ModulesDir:  "/lib/shoal/modules",
		PubKey:      "/etc/shoal/pubkey.pem",
		SysBlock:    "/sys/block",
		DevDir:      "/dev",
		ConfWait:    20 * time.Second,
		DiskWait:    15 * time.Second,
		EFIFirmware: efiboot.DefaultFirmwareDir,
	}
}

// withDefaults fills o's zero paths and waits from DefaultOptions.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	for _, f := range []struct {
		p *string
		d string
	}{{&o.Cmdline, d.Cmdline}, {&o.ModulesDir, d.ModulesDir}, {&o.PubKey, d.PubKey}, {&o.SysBlock, d.SysBlock}, {&o.DevDir, d.DevDir}, {&o.EFIFirmware, d.EFIFirmware}} {
		if *f.p == "" {
			*f.p = f.d
		}
	}
	if o.ConfWait == 0 {
		o.ConfWait = d.ConfWait
	}
	if o.DiskWait == 0 {
		o.DiskWait = d.DiskWait
	}
	return o
}
