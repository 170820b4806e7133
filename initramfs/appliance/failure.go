// failure.go is the appliance's failure: the step that failed, the
// message on the console with what to do, and the failure report.

package appliance

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/sign"
	"github.com/shoal-project/shoal/initramfs/config"
	"github.com/shoal-project/shoal/initramfs/disksel"
	"github.com/shoal-project/shoal/initramfs/netup"
	"github.com/shoal-project/shoal/initramfs/report"
	"github.com/shoal-project/shoal/netboot/api"
	"github.com/shoal-project/shoal/partition"
)

// Step names the stage that failed, for the failure message.
type Step string

// Failure is the appliance's error: the step, what it was working on and
// the cause.
type Failure struct {
	Step  Step
	Image string
	Disk  string
	URL   string
	Err   error
}

func (f *Failure) Error() string { return fmt.Sprintf("%s: %v", f.Step, f.Err) }
func (f *Failure) Unwrap() error { return f.Err }

// fail shows f on the console, with what to do, and reports it.
func (r *run) fail(ctx context.Context, err error) {
	var f *Failure
	if !errors.As(err, &f) {
		f = &Failure{Step: "appliance", Err: err}
	}
	var b strings.Builder
	bar := strings.Repeat("=", 72)
	fmt.Fprintf(&b, "\n%s\nSHOAL: REIMAGING FAILED at step %q\n", bar, f.Step)
	if f.Image != "" {
		fmt.Fprintf(&b, "  image:  %s\n", f.Image)
	}
	if f.URL != "" {
		fmt.Fprintf(&b, "  repo:   %s\n", f.URL)
	}
	if f.Disk != "" {
		fmt.Fprintf(&b, "  disk:   %s\n", f.Disk)
	}
	fmt.Fprintf(&b, "  error:  %v\n", f.Err)
	fmt.Fprintf(&b, "  what to do: %s\n", hint(f))
	if r.pubNote != "" {
		fmt.Fprintf(&b, "  note:   %s\n", r.pubNote)
	}
	fmt.Fprintf(&b, "A shell follows for diagnosis (ip a, ls /dev, dmesg, cat /proc/cmdline).\nRun shoal-init again to retry; `poweroff -f` or `shutdown reboot` to leave.\n%s", bar)
	r.say("%s", b.String())
	if r.rep != nil {
		msg := fmt.Sprintf("%s: %v", f.Step, f.Err)
		if err := r.rep.Send(ctx, report.Status{State: api.StateFailed, Error: msg}); err != nil {
			r.say("the failure report to %s failed too: %v", r.cfg.Server, err)
		}
	}
}

func hint(f *Failure) string {
	if h := bootEntryHint(f); h != "" {
		return h
	}
	switch {
	case f.Step == StepCredential:
		return "shoal serve gave no credential for this boot (the error says why): check the server's log; boot the machine through its iPXE script again for a new credential; an appliance without a credential writes nothing, since it could not report its success"
	case errors.Is(f.Err, imaging.ErrNotFound):
		return fmt.Sprintf("the repository has no image %q: check the name (shoal.image= or image = in shoal.conf) against %simages/ and that shoal.repo points at the repository's root", f.Image, withSlash(f.URL))
	case errors.Is(f.Err, partition.ErrTooSmall):
		return fmt.Sprintf("disk %s is too small for image %s: put in a larger disk, choose another with shoal.disk=, or make the image from a smaller disk. Nothing was written.", f.Disk, f.Image)
	case errors.Is(f.Err, partition.ErrBootDevice), errors.Is(f.Err, disksel.ErrBootMedium):
		return "that disk is the boot medium and is never written: choose another with shoal.disk="
	case errors.Is(f.Err, partition.ErrMounted):
		return "the disk is in use; choose another with shoal.disk="
	case errors.Is(f.Err, disksel.ErrNoDisk):
		return "no disk matches: check that the disk is attached and powered, that its driver (ahci, nvme, virtio_blk, usb-storage) is in the initramfs (dmesg, ls /sys/block), and shoal.disk="
	case errors.Is(f.Err, disksel.ErrAmbiguous):
		return "more than one disk could be the target: name it with shoal.disk=/dev/NAME, or a model=, serial= or size= selector"
	case errors.Is(f.Err, disksel.ErrSelector), errors.Is(f.Err, config.ErrInvalid), errors.Is(f.Err, config.ErrSyntax):
		return "fix the value on the kernel command line (shoal.KEY=), at the server (inventory) or in shoal.conf on the stick; see docs/appliance.md"
	case errors.Is(f.Err, config.ErrMissing):
		return "say which image to write: shoal.repo= and shoal.image= on the kernel command line, an inventory entry at shoal.server=, or repo = and image = in shoal.conf on the USB stick"
	case errors.Is(f.Err, netup.ErrNoLink):
		return "no network link came up: check the cable and switch port, and that the NIC's driver is in the initramfs (ip link, dmesg)"
	case errors.Is(f.Err, netup.ErrNoLease):
		return "no DHCP server answered: check that the provisioning network has DHCP (shoal serve --dhcp full or the site's server)"
	case errors.Is(f.Err, sign.ErrNoSignature), errors.Is(f.Err, sign.ErrBadSignature):
		return "the image is not signed by the key built into this appliance: sign it (shoal image create signs with the state directory's key by default) or build the appliance with the matching key (./build.sh, SHOAL_STATE= or PUBKEY=); shoal.insecure=unsigned on the kernel command line accepts it, and lets anyone on the LAN write this disk"
	case errors.Is(f.Err, ErrNoKey):
		return "rebuild the appliance with the site's key (./build.sh bakes signing.pub of $SHOAL_STATE, default /var/lib/shoal; or PUBKEY=file), or, on a LAN you trust entirely, add shoal.insecure=unsigned to the kernel command line"
	case f.URL != "":
		return fmt.Sprintf("check that %s is reachable from this machine (ip a; wget %s) and the disk is healthy (dmesg)", f.URL, withSlash(f.URL))
	}
	return "read the error above; dmesg and the shell may tell more"
}
