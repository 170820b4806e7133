package appliance

import (
	"context"
	"fmt"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/netboot/api"
)

// StepCredential is the step that fails when shoal serve gives no
// credential for this boot.
const StepCredential Step = "credential"

// credential asks shoal serve (shoal.server=) for this boot's credential,
// right after DHCP. Without shoal.server (a USB stick alone) there is
// none: the appliance then reports nothing and joins no peer session.
// A server that does not give one is a failure: without it the machine
// could not report its success (it would stay "reimage" and be reimaged
// at every boot), and a refusal (409) means someone else took this boot's
// credential, which the operator must see.
func (r *run) credential(ctx context.Context) error {
	if r.cfg.Server == "" {
		r.say("no shoal.server: no credential, so no status reports and no peer session (the image comes from the repository alone)")
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := (&api.Client{BaseURL: r.cfg.Server}).Credential(ctx, r.cfg.MAC)
	if err != nil {
		r.say("NO CREDENTIAL for this boot from %s: %v", r.cfg.Server, err)
		return &Failure{Step: StepCredential, Image: r.cfg.Image,
			Err: fmt.Errorf("%w; the disk was not touched. A 409 means another host took this boot's credential: see the server's log, then boot the machine through iPXE again", err)}
	}
	r.cred = &c
	id := "none (the server cannot read the manifest)"
	if c.ImageID != "" {
		id = c.ImageID
	}
	r.say("credential for this boot: image %s, image ID %s, peer session key %v, valid until %s",
		c.Image, id, c.SessionKey != "", fmtMs(c.ExpiresMs))
	return nil
}

// jobCredential puts the credential's session key and image ID into j.
func (r *run) jobCredential(j *Job) error {
	if r.cred == nil {
		return nil
	}
	var err error
	if j.SessionKey, err = r.cred.SessionKeyBytes(); err != nil {
		return err
	}
	j.ImageID, err = r.cred.ImageIDBytes()
	return err
}

// checkImageID refuses a manifest whose ID is not the credential's (when
// the credential has one).
func checkImageID(j Job, id imaging.ID) error {
	if j.ImageID == ([32]byte{}) || [32]byte(id) == j.ImageID {
		return nil
	}
	return fmt.Errorf("image %s: the manifest's ID %x is not the %x shoal serve gave in this boot's credential; the disk was not touched",
		j.Name, id[:], j.ImageID[:])
}

// fmtMs shows a Unix time in milliseconds.
func fmtMs(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339) }
