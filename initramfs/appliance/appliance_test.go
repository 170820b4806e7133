package appliance

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/sign"
	"github.com/shoal-project/shoal/initramfs/config"
	"github.com/shoal-project/shoal/initramfs/disksel"
	"github.com/shoal-project/shoal/initramfs/efiboot"
	"github.com/shoal-project/shoal/initramfs/netup"
	"github.com/shoal-project/shoal/internal/servetest"
	"github.com/shoal-project/shoal/internal/testdisk"
	"github.com/shoal-project/shoal/netboot/inventory"
)

const testMAC = "52:54:00:ab:cd:ef"

// machine is a fake machine for Run: a /sys/block tree whose disks are
// image files under dev/, a kernel command line file, a repository and a
// shoal serve (its real HTTP handler) on loopback.
type machine struct {
	dir, sys, dev, cmdline string
	pub                    string // image-signing public key file ("" = none built in)
	src                    *testdisk.Disk
	repoURL, serverURL     string
	noBoot                 bool // no iPXE script fetch before the run (a new boot)
	inv                    *inventory.Store
	// efiVars, when set, makes the machine one booted by UEFI with these
	// variables; otherwise it booted by BIOS (and the host's own
	// /sys/firmware/efi is never looked at).
	efiVars efiboot.Vars
}

// source is a 64 MiB GPT disk (FAT ESP, ext4) and a repository holding
// its image testimg.
type source struct {
	disk *testdisk.Disk
	repo string
	keys string // PREFIX of the site's signing pair (PREFIX.key, PREFIX.pub)
}

var (
	sharedDir  string // made and removed by TestMain
	sourceOnce sync.Once
	shared     source
	sourceErr  string
)

func TestMain(m *testing.M) {
	var err error
	if sharedDir, err = os.MkdirTemp("", "appliance-test"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(sharedDir)
	os.Exit(code)
}

// newSource returns the source shared by the package's tests, made by the
// first test that asks (making it takes seconds under -race). Tests add
// images to its repository but never change testimg.
func newSource(t *testing.T) source {
	t.Helper()
	sourceOnce.Do(func() {
		disk := testdisk.GPT(t, sharedDir, 64<<20)
		s := source{disk: disk, repo: filepath.Join(sharedDir, "repo")}
		s.keys = filepath.Join(sharedDir, "site")
		if _, err := sign.Generate(s.keys); err != nil {
			sourceErr = err.Error()
			return
		}
		priv, err := sign.LoadPrivate(s.keys + ".key")
		if err != nil {
			sourceErr = err.Error()
			return
		}
		// testimg is signed by the site's key, as shoal image create does
		// by default; "unsigned" is not.
		for name, key := range map[string]ed25519.PrivateKey{"testimg": priv, "unsigned": nil} {
			if _, _, err := imaging.Create(context.Background(), s.disk.Path, s.repo, name, imaging.CreateOptions{ChunkSizeBytes: 1 << 20, SignKey: key}); err != nil {
				sourceErr = err.Error()
				return
			}
		}
		shared = s
	})
	if shared.disk == nil {
		t.Fatalf("no source disk: %s", sourceErr)
	}
	return shared
}

func newMachine(t *testing.T, src source) *machine {
	t.Helper()
	return newMachineWith(t, src, "testimg")
}

// newMachineWith is newMachine with the server's inventory naming image
// for the machine (its credential then carries that image's ID).
func newMachineWith(t *testing.T, src source, image string) *machine {
	t.Helper()
	dir := t.TempDir()
	m := &machine{dir: dir, sys: filepath.Join(dir, "sys", "block"), dev: filepath.Join(dir, "dev"), cmdline: filepath.Join(dir, "cmdline")}
	for _, d := range []string{m.sys, m.dev} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m.src = src.disk
	m.pub = src.keys + ".pub" // the key built in
	repo := src.repo
	srv := servetest.New(t, servetest.Options{Inventory: testMAC + " reimage " + image + " -\n", RepoDir: repo, BootDir: dir})
	m.inv = srv.Inventory
	m.serverURL, m.repoURL = srv.URL, srv.URL+"/repo/"
	return m
}

// disk adds a disk NAME backed by the file at path (made of size bytes
// when it does not exist).
func (m *machine) disk(t *testing.T, name, path string, size int64) string {
	t.Helper()
	if path == "" {
		path = filepath.Join(m.dev, name)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		f.Close()
	} else if err := os.Symlink(path, filepath.Join(m.dev, name)); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	sd := filepath.Join(m.sys, name)
	for f, v := range map[string]string{"size": fmt.Sprint(st.Size() / 512), "removable": "0", "device/vendor": "0x1af4"} {
		os.MkdirAll(filepath.Dir(filepath.Join(sd, f)), 0o755)
		if err := os.WriteFile(filepath.Join(sd, f), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(m.dev, name)
}

type outcome struct {
	err     error
	console string
	after   string
}

func (m *machine) run(t *testing.T, cmdline string) outcome {
	t.Helper()
	if err := os.WriteFile(m.cmdline, []byte(cmdline+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !m.noBoot {
		m.ipxeBoot(t)
	}
	var con bytes.Buffer
	var o outcome
	hw, _ := net.ParseMAC(testMAC)
	firmware := filepath.Join(m.dir, "bios-no-efi")
	if m.efiVars != nil {
		firmware = filepath.Join(m.dir, "sys", "firmware", "efi")
		if err := os.MkdirAll(firmware, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	o.err = Run(context.Background(), Options{
		EFIFirmware: firmware, EFIVars: m.efiVars,
		Cmdline: m.cmdline, ModulesDir: filepath.Join(m.dir, "nomodules"), PubKey: cmp.Or(m.pub, filepath.Join(m.dir, "nokey.pem")),
		SysBlock: m.sys, DevDir: m.dev, ConfWait: 200 * time.Millisecond, DiskWait: 300 * time.Millisecond,
		Reimage: SingleNode,
		Net: func(context.Context) ([]netup.Lease, error) {
			return []netup.Lease{{Iface: "eth0", MAC: hw, IP: net.IPv4(127, 0, 0, 1)}}, nil
		},
		After: func(_ context.Context, action, disk string, _ *slog.Logger) error {
			o.after = action + " " + disk
			return nil
		},
		Console: &con,
		Log:     slog.New(slog.NewTextHandler(&con, nil)),
	})
	o.console = con.String()
	return o
}

func (m *machine) status(t *testing.T) inventory.Machine {
	t.Helper()
	mm, err := m.inv.Lookup(testMAC)
	if err != nil {
		t.Fatal(err)
	}
	return mm
}

// TestRunReimages: configured by the command line and the server, the
// appliance writes the image to the only disk, every partition equal to
// the source's, shows progress, reports a verified success (the server
// turns the machine local) and runs the after-action.
func TestRunReimages(t *testing.T) {
	m := newMachine(t, newSource(t))
	target := m.disk(t, "vda", "", 64<<20)
	o := m.run(t, fmt.Sprintf("console=ttyS0 shoal.server=%s shoal.repo=%s shoal.mac=%s shoal.after=shell", m.serverURL, m.repoURL, testMAC))
	if o.err != nil {
		t.Fatalf("Run = %v\n%s", o.err, o.console)
	}
	for _, p := range m.src.Partitions {
		if !testdisk.Equal(t, m.src.Path, target, p.StartLBA*512, p.SizeBytes) {
			t.Errorf("partition %d differs from the source", p.Number)
		}
	}
	if o.after != "shell "+target {
		t.Errorf("after-action = %q, want shell %s", o.after, target)
	}
	for _, want := range []string{"image   testimg (server)", "images must be signed by the built-in key", "written testimg -> " + target, "(100%)", "role server source server", "SUCCESS: image testimg"} {
		if !strings.Contains(o.console, want) {
			t.Errorf("console lacks %q:\n%s", want, o.console)
		}
	}
	if st := m.status(t); !st.Status.Success() || st.Action != inventory.Local || st.Status.Role != "server" || st.Status.BytesFromServer == 0 {
		t.Errorf("server's machine = %+v, want a verified success turned local", st)
	}
}

// TestRunFailures: each failure names what failed and what to do, is
// reported to the server, and leaves the disk untouched.
func TestRunFailures(t *testing.T) {
	src := newSource(t)
	for _, tc := range []struct {
		name    string
		cmdline string
		disks   []int64
		is      error
		want    []string
	}{
		{"no such image", "shoal.image=nosuch", []int64{64 << 20}, imaging.ErrNotFound,
			[]string{`image:  nosuch`, `the repository has no image "nosuch"`, "the disk was not touched"}},
		{"disk too small", "", []int64{16 << 20}, nil,
			[]string{"disk:   ", "target is too small", "is too small for image testimg"}},
		{"no disk", "", nil, disksel.ErrNoDisk, []string{`step "target disk"`, "disks: none"}},
		{"two disks", "", []int64{64 << 20, 64 << 20}, disksel.ErrAmbiguous, []string{"more than one disk could be the target"}},
		{"bad after", "shoal.after=explode", []int64{64 << 20}, nil, []string{`after "explode" (from kernel command line)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t, src)
			var paths []string
			for i, size := range tc.disks {
				p := m.disk(t, fmt.Sprintf("vd%c", 'a'+i), "", size)
				if err := os.WriteFile(p, bytes.Repeat([]byte("untouched-disk! "), int(size/16)), 0o644); err != nil {
					t.Fatal(err)
				}
				paths = append(paths, p)
			}
			o := m.run(t, fmt.Sprintf("shoal.server=%s shoal.repo=%s shoal.mac=%s %s", m.serverURL, m.repoURL, testMAC, tc.cmdline))
			var f *Failure
			if !errors.As(o.err, &f) {
				t.Fatalf("Run = %v, want a *Failure\n%s", o.err, o.console)
			}
			if tc.is != nil && !errors.Is(o.err, tc.is) {
				t.Errorf("Run = %v, want %v", o.err, tc.is)
			}
			for _, w := range append(tc.want, "SHOAL: REIMAGING FAILED", "what to do: ") {
				if !strings.Contains(o.console, w) {
					t.Errorf("console lacks %q:\n%s", w, o.console)
				}
			}
			if o.after != "" {
				t.Errorf("after-action %q ran after a failure", o.after)
			}
			for _, p := range paths {
				b, _ := os.ReadFile(p)
				if !bytes.Equal(b, bytes.Repeat([]byte("untouched-disk! "), len(b)/16)) {
					t.Errorf("%s was written", p)
				}
			}
			if st := m.status(t).Status; tc.name != "bad after" && (st.State != "failed" || st.Error == "") {
				t.Errorf("server's status = %+v, want failed with an error", st)
			}
		})
	}
}

// TestRunUSBStick: nothing on the command line; shoal.conf on a FAT stick
// (made by mkfs.vfat and mcopy) names the repository and image; the stick
// is the boot medium, so auto chooses the other disk, and the stick is not
// written. With no after = line the after-action is poweroff (a reboot
// would boot the stick and reimage again); one that is given is obeyed.
func TestRunUSBStick(t *testing.T) {
	testdisk.Need(t, "mkfs.vfat", "mcopy")
	for _, tc := range []struct {
		name, afterLine, want, source string
	}{
		{"after given", "after = poweroff\n", "poweroff", "(shoal.conf)"},
		{"after left out", "", "poweroff", "(default when booted from a USB stick"},
		{"reboot asked for", "after = reboot\n", "reboot", "(shoal.conf)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t, newSource(t))
			stick := filepath.Join(m.dir, "stick.img")
			testdisk.Run(t, "mkfs.vfat", "-C", stick, "8192")
			conf := filepath.Join(m.dir, "shoal.conf")
			if err := os.WriteFile(conf, []byte("# field tech's\nrepo = "+m.repoURL+"\nimage = testimg\ndisk = auto\n"+tc.afterLine), 0o644); err != nil {
				t.Fatal(err)
			}
			testdisk.Run(t, "mcopy", "-i", stick, conf, "::/shoal.conf")
			before, _ := os.ReadFile(stick)
			sda := m.disk(t, "sda", stick, 0)
			target := m.disk(t, "vda", "", 64<<20)
			o := m.run(t, "console=ttyS0 quiet")
			if o.err != nil {
				t.Fatalf("Run = %v\n%s", o.err, o.console)
			}
			if o.after != tc.want+" "+target {
				t.Errorf("after-action = %q, want %s %s", o.after, tc.want, target)
			}
			for _, want := range []string{"read shoal.conf from " + sda, "image   testimg (shoal.conf)", "target disk: " + target,
				"after   " + tc.want + " " + tc.source} {
				if !strings.Contains(o.console, want) {
					t.Errorf("console lacks %q:\n%s", want, o.console)
				}
			}
			if after, _ := os.ReadFile(stick); !bytes.Equal(before, after) {
				t.Error("the stick was written")
			}
			for _, p := range m.src.Partitions {
				if !testdisk.Equal(t, m.src.Path, target, p.StartLBA*512, p.SizeBytes) {
					t.Errorf("partition %d differs from the source", p.Number)
				}
			}
		})
	}
}

// TestRunSigned: with a public key built in, an image signed by it is
// written and reported verified; an unsigned one, or one signed by another
// key, is refused before the disk is touched, with what to do, unless the
// kernel command line says shoal.insecure=unsigned (then written, said
// loudly, and not reported verified). With no key built in the appliance
// refuses to reimage at step "image-signing key", unless told
// shoal.insecure=unsigned.
func TestRunSigned(t *testing.T) {
	src := newSource(t)
	other := filepath.Join(t.TempDir(), "other")
	if _, err := sign.Generate(other); err != nil {
		t.Fatal(err)
	}
	priv, err := sign.LoadPrivate(other + ".key")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := imaging.Create(context.Background(), src.disk.Path, src.repo, "othersigned", imaging.CreateOptions{ChunkSizeBytes: 1 << 20, SignKey: priv}); err != nil {
		t.Fatal(err)
	}
	noKey := "none" // m.pub: a file that does not exist
	for _, tc := range []struct {
		name, image, pub, extra string
		want                    error // nil: written
		verified                bool
		console                 []string
	}{
		{"signed", "testimg", "", "", nil, true, []string{"images must be signed by the built-in key", "written to", "and verified"}},
		{"unsigned", "unsigned", "", "", sign.ErrNoSignature, false, []string{"not signed by the key built into this appliance"}},
		{"another key", "othersigned", "", "", sign.ErrBadSignature, false, []string{"not signed by the key built into this appliance"}},
		{"unsigned, insecure", "unsigned", "", "shoal.insecure=unsigned", nil, false, []string{insecureWarning, "SUCCESS (NOT verified)"}},
		{"another key, insecure", "othersigned", "", "shoal.insecure=unsigned", nil, false, []string{insecureWarning, "SUCCESS (NOT verified)"}},
		{"signed, insecure", "testimg", "", "shoal.insecure=unsigned", nil, true, []string{insecureWarning, "and verified"}},
		{"no key", "testimg", noKey, "", ErrNoKey, false, []string{`step "image-signing key"`, "no image-signing key is built in", "shoal.insecure=unsigned"}},
		{"no key, insecure", "testimg", noKey, "shoal.insecure=unsigned", nil, false, []string{insecureWarning, "SUCCESS (NOT verified)"}},
		{"bad insecure value", "testimg", noKey, "shoal.insecure=yes", config.ErrInvalid, false, []string{`insecure "yes"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachineWith(t, src, tc.image)
			if tc.pub == noKey {
				m.pub = filepath.Join(m.dir, "nokey.pem")
			}
			target := m.disk(t, "vda", "", 64<<20)
			o := m.run(t, fmt.Sprintf("shoal.server=%s shoal.repo=%s shoal.image=%s shoal.mac=%s shoal.after=shell %s", m.serverURL, m.repoURL, tc.image, testMAC, tc.extra))
			for _, w := range tc.console {
				if !strings.Contains(o.console, w) {
					t.Errorf("console lacks %q:\n%s", w, o.console)
				}
			}
			st := m.status(t).Status
			if tc.want == nil {
				if o.err != nil {
					t.Fatalf("Run = %v\n%s", o.err, o.console)
				}
				if st.State != "done" || st.Verified != tc.verified {
					t.Errorf("reported %+v, want done with verified %v", st, tc.verified)
				}
				return
			}
			if !errors.Is(o.err, tc.want) {
				t.Errorf("Run = %v, want %v\n%s", o.err, tc.want, o.console)
			}
			if st.Verified {
				t.Errorf("reported %+v after a refusal", st)
			}
			if b, _ := os.ReadFile(target); !bytes.Equal(b, make([]byte, 64<<20)) {
				t.Error("the disk was written")
			}
		})
	}
}

// TestCheckKey: no key and no shoal.insecure=unsigned is the only refusal.
func TestCheckKey(t *testing.T) {
	pub := make(ed25519.PublicKey, ed25519.PublicKeySize)
	for _, tc := range []struct {
		pub      ed25519.PublicKey
		insecure bool
		want     error
	}{{nil, false, ErrNoKey}, {nil, true, nil}, {pub, false, nil}, {pub, true, nil}} {
		if err := checkKey(tc.pub, tc.insecure); !errors.Is(err, tc.want) {
			t.Errorf("checkKey(%v, %v) = %v, want %v", tc.pub != nil, tc.insecure, err, tc.want)
		}
	}
}
