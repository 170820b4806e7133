package qemutests

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/initramfs/usb"
	"github.com/shoal-project/shoal/internal/sampleos"
	"github.com/shoal-project/shoal/internal/testdisk"
)

// The appliance tests boot Debian's kernel and the real initramfs
// (out/shoal-initramfs.cpio.zst, built by build/build.d/initramfs.sh) in
// QEMU (TCG, -cpu max, 512 MiB) with user-mode networking: the guest
// reaches the test's HTTP repository on the host's loopback as 10.0.2.2,
// so no traffic leaves loopback.

var (
	applianceOnce sync.Once
	applianceErr  error
)

// applianceInitramfs returns the kernel and the initramfs. It (re)builds
// out/ with build/build.d/initramfs.sh, once per test binary, when the
// initramfs is missing or older than the appliance's sources.
func applianceInitramfs(t testing.TB) (kernel, initramfs string) {
	t.Helper()
	kernel = netbootKernel(t)
	initramfs = filepath.Join("..", "out", "shoal-initramfs.cpio.zst")
	applianceOnce.Do(func() {
		if !applianceStale(initramfs) {
			return
		}
		start := time.Now()
		cmd := exec.Command("bash", "build/build.d/initramfs.sh")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "OUT=out")
		out, err := cmd.CombinedOutput()
		if err != nil {
			applianceErr = fmt.Errorf("build/build.d/initramfs.sh: %v\n%s", err, out)
			return
		}
		t.Logf("built the initramfs in %v", time.Since(start).Round(time.Second))
	})
	if applianceErr != nil {
		t.Fatal(applianceErr)
	}
	return kernel, initramfs
}

// applianceStale reports whether path is missing or older than a Go file
// of the packages that go into the appliance.
func applianceStale(path string) bool {
	st, err := os.Stat(path)
	if err != nil {
		return true
	}
	stale := false
	for _, dir := range []string{"initramfs", "cmd/shoal-init", "cmd/shoal-usb", "cmd/shoal-modules", "imaging", "partition", "build/build.d"} {
		filepath.WalkDir(filepath.Join("..", dir), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && !strings.HasSuffix(p, "_test.go") {
				if fi, err := d.Info(); err == nil && fi.ModTime().After(st.ModTime()) {
					stale = true
				}
			}
			return nil
		})
	}
	return stale
}

// applianceRepo makes a 64 MiB GPT source disk (FAT ESP + ext4), an image
// "testimg" of it in a repository, and serves the repository on loopback.
// It returns the source disk and the repository's port.
func applianceRepo(t testing.TB) (*testdisk.Disk, int) {
	t.Helper()
	dir := t.TempDir()
	src := testdisk.GPT(t, dir, 64<<20)
	repo := filepath.Join(dir, "repo")
	if _, _, err := imaging.Create(context.Background(), src.Path, repo, "testimg", imaging.CreateOptions{ChunkSizeBytes: 1 << 20, SignKey: siteKey(t)}); err != nil {
		t.Fatal(err)
	}
	return src, applianceServe(t, repo)
}

// applianceServe serves the repository directory over HTTP on loopback
// until the test ends and returns the port (the guest reaches it as
// 10.0.2.2:PORT through QEMU's user-mode network).
func applianceServe(t testing.TB, repo string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(repo))}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// vm is a QEMU run whose serial console goes to a file.
type applianceVM struct {
	t      testing.TB
	serial string
	start  time.Time
	done   chan error
	cmd    *exec.Cmd
	out    bytes.Buffer
	// seen records when each watched console line first appeared.
	seen map[string]time.Duration
}

func applianceStart(t testing.TB, args ...string) *applianceVM {
	t.Helper()
	qemu := applianceTool(t, "qemu-system-x86_64")
	v := &applianceVM{t: t, serial: filepath.Join(t.TempDir(), "serial.log"), done: make(chan error, 1), seen: map[string]time.Duration{}}
	base := append(testCPUArgs(t), "-m", "512", "-smp", "1", "-display", "none", "-monitor", "none",
		"-serial", "file:"+v.serial, "-no-reboot", "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,romfile=")
	v.cmd = exec.Command(qemu, append(base, args...)...)
	v.cmd.Stdout, v.cmd.Stderr = &v.out, &v.out
	v.start = time.Now()
	if err := v.cmd.Start(); err != nil {
		t.Fatalf("qemu: %v", err)
	}
	go func() { v.done <- v.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-v.done:
		default:
			v.cmd.Process.Kill()
			<-v.done
		}
	})
	return v
}

func applianceTool(t testing.TB, name string) string {
	t.Helper()
	testdisk.Need(t, name)
	p, _ := exec.LookPath(name)
	return p
}

func (v *applianceVM) console() string {
	b, _ := os.ReadFile(v.serial)
	return string(b)
}

// wait polls the console until until(console) or QEMU exits (exited true)
// or the timeout passes (a test failure). It notes when each of watch
// first appears.
func (v *applianceVM) wait(timeout time.Duration, until func(string) bool, watch ...string) (exited bool) {
	v.t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		c := v.console()
		for _, w := range watch {
			if _, ok := v.seen[w]; !ok && strings.Contains(c, w) {
				v.seen[w] = time.Since(v.start)
			}
		}
		if until != nil && until(c) {
			return false
		}
		select {
		case err := <-v.done:
			v.done <- err
			c = v.console()
			for _, w := range watch {
				if _, ok := v.seen[w]; !ok && strings.Contains(c, w) {
					v.seen[w] = time.Since(v.start)
				}
			}
			return true
		case <-deadline:
			v.t.Fatalf("timeout after %v; serial:\n%s\nqemu: %s", timeout, applianceTail(c, 6000), v.out.String())
		case <-tick.C:
		}
	}
}

func applianceTail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// applianceDirect returns QEMU arguments that boot the kernel and initramfs
// with the appliance's settings on the command line.
func applianceDirect(kernel, initramfs, cmdline string) []string {
	return []string{"-kernel", kernel, "-initrd", initramfs, "-append", "console=ttyS0 panic=-1 " + cmdline}
}

func applianceHash(t testing.TB, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// appliancePatterned makes a disk file of size bytes full of a non-zero pattern,
// so that any write shows.
func appliancePatterned(t testing.TB, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "target.img")
	if err := os.WriteFile(p, bytes.Repeat([]byte("untouched-disk! "), int(size/16)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// applianceCheck compares every partition of the target with the source,
// and fscks them.
func applianceCheck(t testing.TB, src *testdisk.Disk, target string) {
	t.Helper()
	for _, p := range src.Partitions {
		if !testdisk.Equal(t, src.Path, target, p.StartLBA*512, p.SizeBytes) {
			t.Errorf("partition %d (%s) of the target differs from the source", p.Number, p.FS)
		}
		testdisk.Fsck(t, target, p)
	}
	out := testdisk.Run(t, "sgdisk", "-v", target)
	if !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v %s:\n%s", target, out)
	}
}

// consoleTimes logs the times from QEMU start to the lease and to success.
func (v *applianceVM) logTimes(label string) {
	v.t.Logf("%s: QEMU start to DHCP lease %v, to disk written %v", label,
		v.seen["shoal: DHCP lease"].Round(100*time.Millisecond), v.seen["shoal: SUCCESS"].Round(100*time.Millisecond))
}

// TestApplianceReimage: the VM boots the kernel and the initramfs, gets a
// lease from QEMU's user-mode DHCP, fetches testimg from the host's
// repository, writes its blank virtio disk and powers off; every partition
// then equals the source's, byte for byte, and passes fsck.
func TestApplianceReimage(t *testing.T) {
	kernel, initramfs := applianceInitramfs(t)
	src, port := applianceRepo(t)
	target := filepath.Join(t.TempDir(), "target.img")
	if err := os.Truncate(applianceCreate(t, target), 64<<20); err != nil {
		t.Fatal(err)
	}
	v := applianceStart(t, append(applianceDirect(kernel, initramfs, fmt.Sprintf(
		"shoal.repo=http://10.0.2.2:%d/ shoal.image=testimg shoal.after=poweroff", port)),
		"-drive", "file="+target+",format=raw,if=virtio")...)
	if !v.wait(3*time.Minute, nil, "shoal: DHCP lease", "shoal: SUCCESS") {
		t.Fatal("unreachable")
	}
	c := v.console()
	if _, ok := v.seen["shoal: SUCCESS"]; !ok {
		t.Fatalf("QEMU exited without success; serial:\n%s\nqemu: %s", applianceTail(c, 6000), v.out.String())
	}
	for _, re := range []string{`target disk: /dev/vda`, `after-action: poweroff`, `images must be signed by the built-in key`,
		`written testimg -> /dev/vda: .* \(100%\) .* role \w+ source server`} {
		if !regexp.MustCompile(re).MatchString(c) {
			t.Errorf("console lacks %q:\n%s", re, applianceTail(c, 3000))
		}
	}
	v.logTimes("direct boot")
	applianceCheck(t, src, target)
}

func applianceCreate(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

// TestApplianceFailures: no such image, a disk too small, no disk at all.
// Each ends with the failure message on the console (naming what failed
// and what to do, then a shell), the disk untouched, and no reboot.
func TestApplianceFailures(t *testing.T) {
	kernel, initramfs := applianceInitramfs(t)
	_, port := applianceRepo(t)
	for _, tc := range []struct {
		name     string
		image    string
		diskSize int64 // 0: no disk
		want     []string
	}{
		{"no such image", "nosuch", 64 << 20, []string{`image:  nosuch`, `404 Not Found`, `the repository has no image "nosuch"`, "the disk was not touched"}},
		{"disk too small", "testimg", 16 << 20, []string{"disk:   /dev/vda", "target is too small", "is too small for image testimg", "the disk was not touched"}},
		{"no disk", "testimg", 0, []string{`step "target disk"`, "no matching disk", "disks: none", "check that the disk is attached"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := applianceDirect(kernel, initramfs, fmt.Sprintf(
				"shoal.repo=http://10.0.2.2:%d/ shoal.image=%s shoal.after=poweroff uroot.uinitargs=-disk-wait=2s", port, tc.image))
			var target string
			var before [32]byte
			if tc.diskSize > 0 {
				target = appliancePatterned(t, tc.diskSize)
				before = applianceHash(t, target)
				args = append(args, "-drive", "file="+target+",format=raw,if=virtio")
			}
			v := applianceStart(t, args...)
			marker := "starting it again in 30 s" // the shell ends at once: no console input
			exited := v.wait(2*time.Minute, func(c string) bool {
				return strings.Contains(c, marker) || strings.Contains(c, "M-? toggle key help")
			})
			c := v.console()
			if exited {
				t.Fatalf("QEMU exited (reboot or poweroff) after a failure; serial:\n%s", applianceTail(c, 6000))
			}
			if !strings.Contains(c, "SHOAL: REIMAGING FAILED") || !strings.Contains(c, "what to do: ") {
				t.Errorf("console lacks the failure message:\n%s", applianceTail(c, 6000))
			}
			for _, w := range tc.want {
				if !strings.Contains(c, w) {
					t.Errorf("console lacks %q:\n%s", w, applianceTail(c, 3000))
				}
			}
			if tc.diskSize > 0 {
				v.cmd.Process.Kill()
				<-v.done
				v.done <- nil
				if applianceHash(t, target) != before {
					t.Errorf("the disk was written")
				}
			}
		})
	}
}

// TestApplianceUSB: the USB-stick image (made as build/build.d/initramfs.sh
// makes it, with a shoal.conf naming the test's repository) boots under
// OVMF as a USB disk; the appliance reads shoal.conf from the stick,
// chooses the VM's other disk (auto: the stick is the boot medium) and
// reimages it. The stick is not written.
func TestApplianceUSB(t *testing.T) {
	kernel, initramfs := applianceInitramfs(t)
	ovmfCode := netbootRequire(t, "/usr/share/OVMF/OVMF_CODE.fd", "apt-get install ovmf")
	ovmfVars := netbootRequire(t, "/usr/share/OVMF/OVMF_VARS.fd", "apt-get install ovmf")
	netbootRequire(t, usb.DefaultStub, "apt-get install systemd-boot-efi")
	src, port := applianceRepo(t)
	dir := t.TempDir()
	stick := filepath.Join(dir, "stick.img")
	conf := fmt.Sprintf("# test\nrepo = http://10.0.2.2:%d/\nimage = testimg\ndisk = auto\nafter = poweroff\n", port)
	if err := usb.Write(usb.Options{Kernel: kernel, Initramfs: initramfs, Cmdline: "console=ttyS0 panic=-1", Conf: []byte(conf)}, stick); err != nil {
		t.Fatal(err)
	}
	stickBefore := applianceHash(t, stick)
	target := filepath.Join(dir, "target.img")
	if err := os.Truncate(applianceCreate(t, target), 64<<20); err != nil {
		t.Fatal(err)
	}
	vars := filepath.Join(dir, "OVMF_VARS.fd")
	netbootCopy(t, ovmfVars, vars)
	v := applianceStart(t, "-machine", "q35",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
		"-drive", "if=pflash,format=raw,unit=1,file="+vars,
		"-drive", "file="+target+",format=raw,if=virtio",
		"-device", "qemu-xhci",
		"-drive", "if=none,id=stick,format=raw,file="+stick,
		"-device", "usb-storage,drive=stick,bootindex=0")
	v.wait(4*time.Minute, nil, "shoal: DHCP lease", "shoal: SUCCESS")
	c := v.console()
	if _, ok := v.seen["shoal: SUCCESS"]; !ok {
		t.Fatalf("QEMU exited without success; serial:\n%s\nqemu: %s", applianceTail(c, 6000), v.out.String())
	}
	for _, re := range []string{`read shoal.conf from /dev/sd[a-z]`, `image +testimg \(shoal.conf\)`, `target disk: /dev/vda`} {
		if !regexp.MustCompile(re).MatchString(c) {
			t.Errorf("console lacks %q", re)
		}
	}
	v.logTimes("USB stick under OVMF")
	applianceCheck(t, src, target)
	if applianceHash(t, stick) != stickBefore {
		t.Errorf("the USB stick was written")
	}
}

// BenchmarkAppliance8GiB: the appliance in a 512 MiB VM writes an 8 GiB
// image (GPT: a 64 MiB ESP and an ext4 holding 300 MiB of random data, the
// rest zeros) to an 8 GiB virtio disk; both partitions are compared. It
// reports the seconds from QEMU start to the lease and to the disk written.
// About 3 minutes and 17 GiB of disk (the target's zeros get allocated):
//
//	go test -run XXX -bench Appliance8GiB -benchtime 1x ./qemu-tests
func BenchmarkAppliance8GiB(b *testing.B) {
	kernel, initramfs := applianceInitramfs(b)
	testdisk.Need(b, "sgdisk", "mkfs.ext4")
	dir := b.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		b.Fatal(err)
	}
	random := make([]byte, 300<<20)
	rand.Read(random)
	if err := os.WriteFile(filepath.Join(root, "random.bin"), random, 0o644); err != nil {
		b.Fatal(err)
	}
	random = nil
	src := filepath.Join(dir, "src.img")
	if err := os.Truncate(applianceCreate(b, src), 8<<30); err != nil {
		b.Fatal(err)
	}
	testdisk.Run(b, "sgdisk", "-n1:2048:+64M", "-t1:ef00", "-n2:0:0", "-t2:8300", src)
	const p2 = 2048 + 64*2048
	var p2Last int64
	for _, line := range strings.Split(testdisk.Run(b, "sgdisk", "-i", "2", src), "\n") {
		fmt.Sscanf(line, "Last sector: %d", &p2Last)
	}
	p2Bytes := (p2Last - p2 + 1) * 512
	testdisk.Run(b, "mkfs.ext4", "-q", "-F", "-d", root, "-E", fmt.Sprintf("offset=%d", p2*512), src, fmt.Sprintf("%dk", p2Bytes/1024))
	repo := filepath.Join(dir, "repo")
	start := time.Now()
	img, _, err := imaging.Create(context.Background(), src, repo, "big", imaging.CreateOptions{SignKey: siteKey(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("image: %d bytes of data in %d chunks, made in %v", img.Manifest.DataBytes, len(img.Chunks), time.Since(start).Round(time.Second))
	port := applianceServe(b, repo)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		target := filepath.Join(dir, "target.img")
		if err := os.Truncate(applianceCreate(b, target), 8<<30); err != nil {
			b.Fatal(err)
		}
		v := applianceStart(b, append(applianceDirect(kernel, initramfs, fmt.Sprintf(
			"shoal.repo=http://10.0.2.2:%d/ shoal.image=big shoal.after=poweroff", port)),
			"-drive", "file="+target+",format=raw,if=virtio")...)
		v.wait(15*time.Minute, nil, "shoal: DHCP lease", "shoal: SUCCESS")
		if _, ok := v.seen["shoal: SUCCESS"]; !ok {
			b.Fatalf("no success; serial:\n%s", applianceTail(v.console(), 6000))
		}
		b.ReportMetric(v.seen["shoal: DHCP lease"].Seconds(), "s-to-lease")
		b.ReportMetric(v.seen["shoal: SUCCESS"].Seconds(), "s-to-written")
		b.StopTimer()
		for _, p := range []struct{ off, size int64 }{{2048 * 512, 64 << 20}, {p2 * 512, p2Bytes}} {
			if !applianceSame(b, src, target, p.off, p.size) {
				b.Errorf("partition at %d differs", p.off)
			}
		}
		os.Remove(target)
		b.StartTimer()
	}
}

// applianceSame compares n bytes at off of two files, 4 MiB at a time
// (testdisk.Equal reads it all into memory: too much for 8 GiB).
func applianceSame(t testing.TB, a, b string, off, n int64) bool {
	t.Helper()
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	ba, bb := make([]byte, 4<<20), make([]byte, 4<<20)
	for done := int64(0); done < n; {
		k := min(int64(len(ba)), n-done)
		if _, err := fa.ReadAt(ba[:k], off+done); err != nil {
			t.Fatal(err)
		}
		if _, err := fb.ReadAt(bb[:k], off+done); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ba[:k], bb[:k]) {
			return false
		}
		done += k
	}
	return true
}

// TestApplianceKexec: with shoal.after=kexec the appliance writes the
// sample OS (systemd-boot entry and syslinux config on its ESP) and kexecs
// into the kernel, initrd and command line of the new disk's boot loader
// entry, without going through the firmware: the sample OS comes up and
// prints the machine's name.
func TestApplianceKexec(t *testing.T) {
	kernel, initramfs := applianceInitramfs(t)
	for _, tool := range sampleos.Tools {
		testdisk.Need(t, tool)
	}
	netbootRequire(t, sampleos.DefaultGPTMBR, "apt-get install syslinux-common")
	netbootRequire(t, sampleos.DefaultSystemdBoot, "apt-get install systemd-boot-efi")
	dir := t.TempDir()
	src := filepath.Join(dir, "sample-os.img")
	if err := sampleos.Build(context.Background(), sampleos.Options{Kernel: kernel, Out: src}); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "repo")
	if _, _, err := imaging.Create(context.Background(), src, repo, "sample", imaging.CreateOptions{SignKey: siteKey(t)}); err != nil {
		t.Fatal(err)
	}
	port := applianceServe(t, repo)
	target := filepath.Join(dir, "target.img")
	if err := os.Truncate(applianceCreate(t, target), 96<<20); err != nil {
		t.Fatal(err)
	}
	v := applianceStart(t, append(applianceDirect(kernel, initramfs, fmt.Sprintf(
		"shoal.repo=http://10.0.2.2:%d/ shoal.image=sample shoal.after=kexec", port)),
		"-drive", "file="+target+",format=raw,if=virtio", "-smbios", "type=1,serial=kexec1")...)
	marker := sampleos.Marker + " host=kexec1"
	v.wait(3*time.Minute, func(c string) bool { return strings.Contains(c, marker) }, "shoal: SUCCESS", "shoal: after-action: kexec")
	c := v.console()
	if !strings.Contains(c, marker) {
		t.Fatalf("the sample OS did not come up after kexec; serial:\n%s", applianceTail(c, 6000))
	}
	if !strings.Contains(c, "shoal: after-action: kexec") || strings.Contains(c, "kexec failed") {
		t.Errorf("console does not show a kexec:\n%s", applianceTail(c, 4000))
	}
	t.Logf("QEMU start to the sample OS after kexec: %v", time.Since(v.start).Round(100*time.Millisecond))
}
