// Package config reads the appliance's configuration from its three
// sources, in order of precedence: the kernel command line (shoal.KEY=VALUE),
// the netboot server's entry for the machine's MAC (GET
// /api/v1/machines/{mac}), and shoal.conf on the USB stick (KEY = VALUE lines).
// A value set by an earlier source wins; Finish applies defaults and checks
// the result.
package config

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/internal/units"
	"github.com/shoal-project/shoal/netboot/api"
)

// Keys are the configuration keys, without the "shoal." prefix of the
// kernel command line.
var Keys = []string{"repo", "image", "disk", "server", "after", "relay", "rate", "linger", "key", "mac", "insecure", "reuse"}

// InsecureUnsigned is the value of shoal.insecure= that makes the
// appliance accept images whose signature it cannot check.
const InsecureUnsigned = "unsigned"

// DefaultLinger is how long a machine that holds the whole image stays, by
// default, to lead for machines that boot later (machines of one batch
// reach the session seconds apart: firmware, PXE and DHCP differ).
const DefaultLinger = 30 * time.Second

// After-actions: what the appliance does once the disk is written.
const (
	AfterReboot   = "reboot"
	AfterKexec    = "kexec"
	AfterPoweroff = "poweroff"
	AfterShell    = "shell"
)

// Sources of a value, as Config.Source names them.
const (
	SourceCmdline = "kernel command line"
	SourceServer  = "server"
	SourceConf    = "shoal.conf"
	SourceDefault = "default"
)

var (
	// ErrSyntax is wrapped by errors about the form of a source.
	ErrSyntax = errors.New("config syntax")
	// ErrInvalid is wrapped by errors about a value.
	ErrInvalid = errors.New("invalid config value")
	// ErrMissing is wrapped when a required key has no value.
	ErrMissing = errors.New("config value missing")
)

// Config is the appliance's configuration.
type Config struct {
	Repo   string // URL of the image repository
	Image  string // image name
	Disk   string // target disk: a path, a selector or "auto"
	Server string // URL of shoal serve, for status reports ("" = none)
	After  string // reboot, kexec, poweroff or shell
	Relay  string // peer-session relay, passed through
	// rate and linger are the keys' text (e.g. 100Mbit, 30s); Finish
	// parses them into RateBitsPerSec and Linger.
	rate, linger string
	// RateBitsPerSec is the highest multicast rate when leading (0: the
	// session's default); Linger how long a machine that holds the whole
	// image stays to lead for machines that boot later (DefaultLinger when
	// not set). Finish sets both.
	RateBitsPerSec int64
	Linger         time.Duration
	Key            string // site key: status reports carry its HMAC
	MAC            string // the machine's MAC, as the netboot server knows it
	// Insecure is "unsigned" (InsecureUnsigned) to accept images whose
	// signature is not checked; only the kernel command line may set it.
	Insecure string
	// Reuse is "on" (the default) to scan the disk first and write only
	// the chunks it does not already hold, "off" to write every chunk.
	Reuse string
	// Source says where each set key came from.
	Source map[string]string
}

func (c *Config) field(k string) *string {
	switch k {
	case "repo":
		return &c.Repo
	case "image":
		return &c.Image
	case "disk":
		return &c.Disk
	case "server":
		return &c.Server
	case "after":
		return &c.After
	case "relay":
		return &c.Relay
	case "rate":
		return &c.rate
	case "linger":
		return &c.linger
	case "key":
		return &c.Key
	case "mac":
		return &c.MAC
	case "insecure":
		return &c.Insecure
	case "reuse":
		return &c.Reuse
	}
	return nil
}

// Get returns the value of key k ("" for an unknown key).
func (c *Config) Get(k string) string {
	if p := c.field(k); p != nil {
		return *p
	}
	return ""
}

func (c *Config) set(k, v, src string) bool {
	p := c.field(k)
	if p == nil {
		return false
	}
	*p = v
	if c.Source == nil {
		c.Source = map[string]string{}
	}
	c.Source[k] = src
	return true
}

// Default sets key k to v, saying why (src), unless it is set already.
func (c *Config) Default(k, v, src string) {
	if c.Get(k) == "" {
		c.set(k, v, src)
	}
}

// ParseCmdline reads the shoal.* parameters of a kernel command line
// (/proc/cmdline). Double quotes group a value with blanks, as the kernel
// does. Other parameters are ignored; an unknown shoal.* key is an error.
func ParseCmdline(cmdline string) (Config, error) {
	var c Config
	for _, f := range splitCmdline(cmdline) {
		k, v, ok := strings.Cut(f, "=")
		name, isShoal := strings.CutPrefix(k, "shoal.")
		if !isShoal {
			continue
		}
		if !ok {
			return c, fmt.Errorf("%w: kernel command line: %q has no value", ErrSyntax, f)
		}
		if !c.set(name, v, SourceCmdline) {
			return c, fmt.Errorf("%w: kernel command line: unknown key %q", ErrSyntax, k)
		}
	}
	return c, nil
}

// splitCmdline splits on blanks outside double quotes and drops the quotes.
func splitCmdline(s string) []string {
	var out []string
	var cur strings.Builder
	in, any := false, false
	for _, r := range s {
		switch {
		case r == '"':
			in = !in
			any = true
		case !in && (r == ' ' || r == '\t' || r == '\n'):
			if any {
				out = append(out, cur.String())
			}
			cur.Reset()
			any = false
		default:
			cur.WriteRune(r)
			any = true
		}
	}
	if any {
		out = append(out, cur.String())
	}
	return out
}

// ParseConf reads shoal.conf: one "key = value" per line, '#' starts a
// comment, blank lines are ignored, keys may carry the "shoal." prefix.
// Values may be double-quoted. An unknown key is an error naming the line.
func ParseConf(r io.Reader) (Config, error) {
	var c Config
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return c, fmt.Errorf("%w: shoal.conf line %d: want key = value, got %q", ErrSyntax, n, line)
		}
		k = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(k)), "shoal.")
		v = strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		if k == "insecure" {
			return c, fmt.Errorf("%w: shoal.conf line %d: insecure can only be set on the kernel command line (shoal.insecure=)", ErrSyntax, n)
		}
		if !c.set(k, v, SourceConf) {
			return c, fmt.Errorf("%w: shoal.conf line %d: unknown key %q (known: %s)", ErrSyntax, n, k, strings.Join(Keys, ", "))
		}
	}
	if err := sc.Err(); err != nil {
		return c, fmt.Errorf("%w: shoal.conf: %v", ErrSyntax, err)
	}
	return c, nil
}

// FromMachine is the configuration the netboot server's entry for the
// machine (GET /api/v1/machines/{mac}) gives: its image and disk.
func FromMachine(m api.Machine) Config {
	var c Config
	if m.Image != "" {
		c.set("image", m.Image, SourceServer)
	}
	if m.Disk != "" {
		c.set("disk", m.Disk, SourceServer)
	}
	return c
}

// Merge returns c with every key that c leaves empty taken from lower.
func (c Config) Merge(lower Config) Config {
	out := c
	out.Source = map[string]string{}
	for k, v := range c.Source {
		out.Source[k] = v
	}
	for _, k := range Keys {
		if out.Get(k) == "" && lower.Get(k) != "" {
			out.set(k, lower.Get(k), lower.Source[k])
		}
	}
	return out
}

// Finish applies the defaults (disk auto, after reboot) and checks every
// value: repo and image are required, URLs must be http(s), the image name
// valid, after one of the after-actions.
func (c *Config) Finish() error {
	if c.Disk == "" {
		c.set("disk", "auto", SourceDefault)
	}
	if c.After == "" {
		c.set("after", AfterReboot, SourceDefault)
	}
	if c.Repo == "" {
		return fmt.Errorf("%w: repo (set shoal.repo= on the kernel command line or repo = in shoal.conf)", ErrMissing)
	}
	if c.Image == "" {
		return fmt.Errorf("%w: image (set shoal.image= on the kernel command line or image = in shoal.conf)", ErrMissing)
	}
	for _, k := range []string{"repo", "server"} {
		v := c.Get(k)
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: %s %q (from %s): want an http:// or https:// URL", ErrInvalid, k, v, c.Source[k])
		}
	}
	if err := imaging.ValidName(c.Image); err != nil {
		return fmt.Errorf("%w: image %q (from %s): %v", ErrInvalid, c.Image, c.Source["image"], err)
	}
	switch c.Reuse {
	case "":
		c.set("reuse", "on", SourceDefault)
	case "on", "off":
	default:
		return fmt.Errorf("%w: reuse %q (from %s): want on or off", ErrInvalid, c.Reuse, c.Source["reuse"])
	}
	c.RateBitsPerSec = 0
	if c.rate != "" {
		n, err := units.ParseRate(c.rate)
		if err != nil {
			return fmt.Errorf("%w: rate (from %s): %v", ErrInvalid, c.Source["rate"], err)
		}
		c.RateBitsPerSec = n
	}
	if c.linger == "" {
		c.set("linger", DefaultLinger.String(), SourceDefault)
	}
	d, err := time.ParseDuration(c.linger)
	if err != nil || d < 0 {
		return fmt.Errorf("%w: linger %q (from %s): want a duration such as 30s", ErrInvalid, c.linger, c.Source["linger"])
	}
	c.Linger = d
	if c.Insecure != "" && (c.Insecure != InsecureUnsigned || c.Source["insecure"] != SourceCmdline) {
		return fmt.Errorf("%w: insecure %q (from %s): the only value is %s, on the kernel command line", ErrInvalid, c.Insecure, c.Source["insecure"], InsecureUnsigned)
	}
	switch c.After {
	case AfterReboot, AfterKexec, AfterPoweroff, AfterShell:
	default:
		return fmt.Errorf("%w: after %q (from %s): want reboot, kexec, poweroff or shell", ErrInvalid, c.After, c.Source["after"])
	}
	if c.MAC != "" {
		hw, err := net.ParseMAC(c.MAC)
		if err != nil {
			return fmt.Errorf("%w: mac %q (from %s): %v", ErrInvalid, c.MAC, c.Source["mac"], err)
		}
		c.MAC = hw.String()
	}
	return nil
}

// String lists the settings and their sources, one per line, the site key
// hidden.
func (c *Config) String() string {
	var b strings.Builder
	for _, k := range Keys {
		v := c.Get(k)
		if v == "" {
			continue
		}
		if k == "key" {
			v = "(set)"
		}
		fmt.Fprintf(&b, "  %-7s %s (%s)\n", k, v, c.Source[k])
	}
	return b.String()
}
