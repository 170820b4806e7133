// Package qemutests boots real machines in QEMU (TCG) on private network
// namespaces: the netboot chain of shoal serve, and the appliance.
package qemutests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/shoal-project/shoal/internal/netlab"
	"github.com/shoal-project/shoal/internal/netlabtest"
	"github.com/shoal-project/shoal/internal/testdisk"
)

// netbootRequire returns path, or skips (fails in CI) when it is missing.
func netbootRequire(t testing.TB, path, why string) string {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return path
	}
	testdisk.Missing(t, "%s missing (%s)", path, why)
	return ""
}

// netbootKernel finds Debian's kernel that build/deps.d/kernel.sh caches.
func netbootKernel(t testing.TB) string {
	t.Helper()
	cache := os.Getenv("SHOAL_KERNEL_CACHE")
	if cache == "" {
		cache = "/var/cache/shoal/kernel"
	}
	return netbootRequire(t, filepath.Join(cache, "vmlinuz"), "run build/deps.d/kernel.sh")
}

// netbootBuild builds shoal and the test init into dir (the Go build
// cache makes the second test's build quick).
func netbootBuild(t testing.TB, dir string) (shoal, initBin string) {
	t.Helper()
	for _, b := range []struct{ out, pkg string }{
		{"shoal", "../cmd/shoal"},
		{"init", "./testdata/netboot_init"},
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return filepath.Join(dir, "shoal"), filepath.Join(dir, "init")
}

// netbootInitramfs writes a zstd-compressed newc cpio with /init and /dev.
func netbootInitramfs(t testing.TB, initBin, dst string) {
	t.Helper()
	initData, err := os.ReadFile(initBin)
	if err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	w := cpio.Newc.Writer(&raw)
	recs := []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.Directory("proc", 0o755),
		cpio.StaticFile("init", string(initData), 0o755),
	}
	if err := cpio.WriteRecords(w, recs); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	zw, err := zstd.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(raw.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func netbootCopy(t testing.TB, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestNetbootBIOS(t *testing.T) {
	testNetboot(t, netbootCase{firmware: "bios", mac: "52:54:00:5e:00:01", dhcp: "full"})
}

func TestNetbootUEFI(t *testing.T) {
	testNetboot(t, netbootCase{firmware: "uefi", mac: "52:54:00:5e:00:02", dhcp: "full"})
}

// TestNetbootProxyBIOS boots with shoal in proxy mode beside dnsmasq, the
// "site's" DHCP server: the address comes from dnsmasq, the boot script
// from shoal.
func TestNetbootProxyBIOS(t *testing.T) {
	testNetboot(t, netbootCase{firmware: "bios", mac: "52:54:00:5e:00:05", dhcp: "proxy"})
}

// netbootCase is one netboot run.
type netbootCase struct {
	firmware  string // bios or uefi
	mac       string
	dhcp      string   // full, or proxy beside dnsmasq
	serveArgs []string // extra flags for shoal serve
}

// BenchmarkNetbootRA measures what answering router solicitations saves:
// QEMU start to the marker on serial, BIOS iPXE, with and without --ra, in
// the same run. Run: go test -run XXX -bench NetbootRA -benchtime 1x ./qemu-tests
func BenchmarkNetbootRA(b *testing.B) {
	var with, without time.Duration
	for i := 0; i < b.N; i++ {
		with += testNetboot(b, netbootCase{firmware: "bios", mac: "52:54:00:5e:00:03", dhcp: "full"})
		without += testNetboot(b, netbootCase{firmware: "bios", mac: "52:54:00:5e:00:04", dhcp: "full", serveArgs: []string{"--ra=false"}})
	}
	b.ReportMetric(with.Seconds()/float64(b.N), "s/boot-with-ra")
	b.ReportMetric(without.Seconds()/float64(b.N), "s/boot-without-ra")
	b.ReportMetric(with.Seconds()/without.Seconds(), "ratio")
}

// testNetboot PXE-boots a QEMU machine from `shoal serve` running in a
// namespace of a netlab LAN, with QEMU on a tap of the same bridge, and
// waits for the test init's marker on the serial console.
func testNetboot(t testing.TB, c netbootCase) time.Duration {
	firmware, mac := c.firmware, c.mac
	netlabtest.RequireRoot(t)
	qemu := netlabtest.RequireTool(t, "qemu-system-x86_64")
	kernel := netbootKernel(t)
	// QEMU finds its virtio NIC's iPXE ROM itself (package ipxe-qemu).
	netbootRequire(t, "/usr/lib/ipxe/qemu/efi-virtio.rom", "apt-get install ipxe-qemu")
	undionly := netbootRequire(t, "/usr/lib/ipxe/undionly.kpxe", "apt-get install ipxe")
	ipxeEFI := netbootRequire(t, "/usr/lib/ipxe/ipxe.efi", "apt-get install ipxe")
	var ovmfCode, ovmfVars string
	if firmware == "uefi" {
		ovmfCode = netbootRequire(t, "/usr/share/OVMF/OVMF_CODE.fd", "apt-get install ovmf")
		ovmfVars = netbootRequire(t, "/usr/share/OVMF/OVMF_VARS.fd", "apt-get install ovmf")
	}
	dir := t.TempDir()
	shoal, initBin := netbootBuild(t, dir)
	bootDir, repoDir := filepath.Join(dir, "boot"), filepath.Join(dir, "repo")
	for _, d := range []string{bootDir, repoDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	netbootCopy(t, kernel, filepath.Join(bootDir, "vmlinuz"))
	netbootCopy(t, undionly, filepath.Join(bootDir, "undionly.kpxe"))
	netbootCopy(t, ipxeEFI, filepath.Join(bootDir, "ipxe.efi"))
	netbootInitramfs(t, initBin, filepath.Join(bootDir, "shoal-initramfs.cpio.zst"))
	inv := filepath.Join(dir, "machines")
	if err := os.WriteFile(inv, []byte(mac+" reimage testimg /dev/vda\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lan := netlabtest.New(t, netlab.Config{Nodes: 2})
	if err := lan.AddTap(ctx, "tap0"); err != nil {
		t.Fatal(err)
	}
	srvNode := lan.Nodes[0]
	ip := srvNode.IP.To4()
	rng := fmt.Sprintf("%d.%d.%d.100-%d.%d.%d.120", ip[0], ip[1], ip[2], ip[0], ip[1], ip[2])
	var siteLeases string
	if c.dhcp == "proxy" {
		siteLeases = netbootDnsmasq(t, ctx, lan.Nodes[1], fmt.Sprintf("%d.%d.%d.150,%d.%d.%d.159", ip[0], ip[1], ip[2], ip[0], ip[1], ip[2]))
	}
	serveArgs := append([]string{"serve", "--iface", "eth0", "--dhcp", c.dhcp, "--range", rng,
		"--boot", bootDir, "--repo", repoDir, "--inventory", inv,
		"--cmdline", "console=ttyS0 panic=-1", "-v"}, c.serveArgs...)
	srv := srvNode.Command(ctx, shoal, serveArgs...)
	var srvLog bytes.Buffer
	srv.Stderr = &srvLog
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	srvDone := make(chan struct{})
	go func() { srv.Wait(); close(srvDone) }()
	defer func() {
		srv.Process.Kill()
		<-srvDone
		if t.Failed() {
			t.Logf("shoal serve log:\n%s", srvLog.String())
		}
	}()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || !strings.Contains(line, "http on") {
		t.Fatalf("shoal serve did not start: %q %v\n%s", line, err, srvLog.String())
	}

	serial := filepath.Join(dir, "serial.log")
	nic := "virtio-net-pci,netdev=n0,mac=" + mac
	if firmware == "uefi" {
		// No option ROM: OVMF's own virtio driver and PXE client boot, as
		// a real UEFI machine does (QEMU's iPXE ROM would skip straight
		// to the script), so this path loads ipxe.efi over TFTP first.
		nic += ",romfile="
	}
	args := append(testCPUArgs(t), "-m", "512", "-smp", "1",
		"-display", "none", "-monitor", "none", "-serial", "file:"+serial, "-no-reboot",
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
		"-device", nic,
	)
	switch firmware {
	case "bios":
		// graphics=off: SeaBIOS and iPXE write their text screen to the
		// serial port too (sgabios), which helps when the test fails.
		args = append(args, "-machine", "pc,graphics=off", "-boot", "n")
	case "uefi":
		vars := filepath.Join(dir, "OVMF_VARS.fd")
		netbootCopy(t, ovmfVars, vars)
		args = append(args, "-machine", "pc",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	}
	start := time.Now()
	vm := lan.HubCommand(ctx, qemu, args...)
	var vmOut bytes.Buffer
	vm.Stdout, vm.Stderr = &vmOut, &vmOut
	if err := vm.Start(); err != nil {
		t.Fatalf("qemu: %v", err)
	}
	vmDone := make(chan error, 1)
	go func() { vmDone <- vm.Wait() }()
	defer func() {
		select {
		case <-vmDone:
		default:
			vm.Process.Kill()
			<-vmDone
		}
	}()

	// Wait for the marker (the init powers off right after printing it).
	var console []byte
	found := false
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for !found {
		select {
		case <-ctx.Done():
			t.Fatalf("no marker after %v; serial:\n%s\nqemu: %s", time.Since(start), console, vmOut.String())
		case err := <-vmDone:
			console, _ = os.ReadFile(serial)
			vmDone <- err
			if !bytes.Contains(console, []byte("SHOAL-NETBOOT-OK")) {
				t.Fatalf("qemu exited (%v) without the marker; serial:\n%s\nqemu: %s", err, console, vmOut.String())
			}
			found = true
		case <-tick.C:
			console, _ = os.ReadFile(serial)
			found = bytes.Contains(console, []byte("SHOAL-NETBOOT-OK"))
		}
	}
	bootTime := time.Since(start)
	t.Logf("%s: QEMU start to marker on serial: %v", firmware, bootTime.Round(100*time.Millisecond))

	// The kernel got the machine's command line from the iPXE script.
	var cmdline string
	for _, line := range strings.Split(string(console), "\n") {
		if c, ok := strings.CutPrefix(strings.TrimSpace(line), "SHOAL-CMDLINE: "); ok {
			cmdline = c
		}
	}
	for _, want := range []string{"shoal.image=testimg", "shoal.mac=" + mac, "shoal.disk=/dev/vda",
		"shoal.repo=http://" + srvNode.IP.String() + ":8080/repo/", "initrd=shoal-initramfs.cpio.zst", "console=ttyS0"} {
		if !strings.Contains(cmdline, want) {
			t.Errorf("kernel command line %q lacks %q", cmdline, want)
		}
	}
	// The firmware's path is visible in the server's log: UEFI PXE fetched
	// ipxe.efi over TFTP; every path fetched the per-machine script.
	out, err := srvNode.Command(ctx, "curl", "-sS", "http://"+srvNode.IP.String()+":8080/api/v1/machines").Output()
	if err != nil {
		t.Fatalf("curl machines: %v", err)
	}
	var ms []struct {
		MAC      string    `json:"mac"`
		LastBoot time.Time `json:"lastBoot"`
	}
	if err := json.Unmarshal(out, &ms); err != nil {
		t.Fatalf("machines JSON: %v\n%s", err, out)
	}
	if len(ms) != 1 || ms[0].MAC != mac || ms[0].LastBoot.IsZero() {
		t.Errorf("machines = %+v, want %s with a boot recorded", ms, mac)
	}
	metrics, err := srvNode.Command(ctx, "curl", "-sS", "http://"+srvNode.IP.String()+":8080/metrics").Output()
	if err != nil {
		t.Fatalf("curl metrics: %v", err)
	}
	// UEFI PXE (OVMF) loads ipxe.efi over TFTP first; QEMU's BIOS ROM is
	// iPXE already and goes straight to the script.
	tftpLine := grepLines(metrics, "shoal_serve_tftp_transfers_total ")
	if firmware == "uefi" && (tftpLine == "" || strings.HasSuffix(tftpLine, " 0")) {
		t.Errorf("UEFI boot: TFTP transfers in /metrics = %q, want at least 1", tftpLine)
	}
	t.Logf("DHCP replies: %s", strings.ReplaceAll(grepLines(metrics, "shoal_serve_dhcp_replies_total{"), "\n", "; "))
	want := `shoal_serve_dhcp_replies_total{kind="ipxe",type="ACK"}`
	if c.dhcp == "proxy" {
		// The address came from the site's server.
		if leases, err := os.ReadFile(siteLeases); err != nil || !bytes.Contains(leases, []byte(mac)) {
			t.Errorf("dnsmasq leases = %q, %v; want a lease for %s", leases, err, mac)
		}
		want = `shoal_serve_dhcp_replies_total{kind="ipxe",type="OFFER"}`
	}
	if !bytes.Contains(metrics, []byte(want)) {
		t.Errorf("/metrics lacks %s:\n%s", want, grepLines(metrics, "dhcp"))
	}
	return bootTime
}

// netbootDnsmasq runs dnsmasq as the site's DHCP server in node n until
// the test ends.
// It returns the path of its leases file.
func netbootDnsmasq(t testing.TB, ctx context.Context, n *netlab.Node, rng string) string {
	t.Helper()
	netlabtest.RequireTool(t, "dnsmasq")
	dir := t.TempDir()
	cmd := n.Command(ctx, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface=eth0", "--bind-interfaces", "--no-ping", "--dhcp-range="+rng+",255.255.255.0,1h",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"), "--pid-file="+filepath.Join(dir, "pid"),
		"--user=root", "--log-facility=-")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("dnsmasq: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("dnsmasq:\n%s", out.String())
		}
	})
	return filepath.Join(dir, "leases")
}

func grepLines(b []byte, s string) string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			out = append(out, sc.Text())
		}
	}
	return strings.Join(out, "\n")
}
