// trust.go: which key signs an image and which key checks one, by default
// the site's keys in the state directory (internal/sitekeys).

package main

import (
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"

	"github.com/shoal-project/shoal/imaging/sign"
	"github.com/shoal-project/shoal/internal/sitekeys"
)

// envState names the environment variable that sets --state's default.
const envState = "SHOAL_STATE"

// defaultState is the state directory when --state is not given:
// $SHOAL_STATE, else sitekeys.DefaultDir().
func defaultState() string { return envOr(envState, sitekeys.DefaultDir()) }

// stateFlag registers --state on fs.
func stateFlag(fs *flag.FlagSet) *string {
	return fs.String("state", defaultState(), "state directory with the site's keys (signing.key, signing.pub; $"+envState+" sets the default)")
}

// verifyFlags are the flags of the commands that check an image's
// signature: --pub, --state and --insecure-unsigned.
type verifyFlags struct {
	pub      string
	state    *string
	insecure bool
}

func (v *verifyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&v.pub, "pub", "", "public key the manifest must be signed by (default: signing.pub in --state)")
	v.state = stateFlag(fs)
	fs.BoolVar(&v.insecure, "insecure-unsigned", false, "check no signature: accept an unsigned manifest, or one signed by any key (logged as a warning)")
}

// errNoPub is returned when no public key can check an image.
var errNoPub = errors.New("no public key to check the image's signature")

// key returns the public key the manifest must be signed by, or nil with
// --insecure-unsigned (then warned about on log).
func (v *verifyFlags) key(log *slog.Logger) (ed25519.PublicKey, error) {
	if v.insecure {
		if v.pub != "" {
			return nil, usageErr("--pub and --insecure-unsigned contradict each other")
		}
		log.Warn("--insecure-unsigned: the image's signature is NOT checked; whoever can change the repository or its traffic chooses the bytes written")
		return nil, nil
	}
	path := v.pub
	if path == "" {
		path = sitekeys.PubPath(*v.state)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s does not exist (give --pub FILE, run shoal key ensure --state %s, or --insecure-unsigned to check no signature)", errNoPub, path, *v.state)
		}
	}
	return sign.LoadPublic(path)
}

// signFlags are image create's: --sign, --state and --unsigned.
type signFlags struct {
	key      string
	state    *string
	unsigned bool
}

func (s *signFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.key, "sign", "", "sign the manifest with this private key (default: signing.key in --state)")
	s.state = stateFlag(fs)
	fs.BoolVar(&s.unsigned, "unsigned", false, "make an unsigned image (appliances refuse it unless booted with shoal.insecure=unsigned)")
}

// errNoSigningKey is returned when image create has no key to sign with.
var errNoSigningKey = errors.New("no key to sign the image with")

// privateKey returns the key to sign with, or nil with --unsigned (then
// warned about on log).
func (s *signFlags) privateKey(log *slog.Logger) (ed25519.PrivateKey, error) {
	if s.unsigned {
		if s.key != "" {
			return nil, usageErr("--sign and --unsigned contradict each other")
		}
		log.Warn("--unsigned: the image is NOT signed; appliances refuse it unless booted with shoal.insecure=unsigned, and then anyone on the LAN can put bytes on their disks")
		return nil, nil
	}
	path := s.key
	if path == "" {
		path = sitekeys.KeyPath(*s.state)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s does not exist (run shoal key ensure --state %s, give --sign FILE, or --unsigned for an unsigned image)", errNoSigningKey, path, *s.state)
		}
	}
	return sign.LoadPrivate(path)
}

// cmdLog is the logger of a command's own warnings: its stderr.
func cmdLog(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, nil))
}
