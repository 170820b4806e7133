package serve

import (
	"errors"
	"net"
	"testing"
)

// TestBindAddr: by default a listener binds to the boot interface's
// address; a flag overrides it; with neither there is no guess; every
// address is only what a flag asks for, and Unspecified says so.
func TestBindAddr(t *testing.T) {
	ifaceIP := net.IPv4(192, 0, 2, 1)
	for _, tc := range []struct {
		name, flag string
		ip         net.IP
		port       int
		want       string
		err        error
		all        bool
	}{
		{"default http", "", ifaceIP, DefaultHTTPPort, "192.0.2.1:8080", nil, false},
		{"default tftp", "", ifaceIP, DefaultTFTPPort, "192.0.2.1:69", nil, false},
		{"flag wins", "127.0.0.1:0", ifaceIP, DefaultHTTPPort, "127.0.0.1:0", nil, false},
		{"every address, asked for", ":8080", ifaceIP, DefaultHTTPPort, ":8080", nil, true},
		{"0.0.0.0, asked for", "0.0.0.0:69", nil, DefaultTFTPPort, "0.0.0.0:69", nil, true},
		{"no interface, no flag", "", nil, DefaultHTTPPort, "", ErrNoBindAddr, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := BindAddr(tc.flag, tc.ip, tc.port)
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Fatalf("BindAddr(%q, %v, %d) = %q, %v; want %q, %v", tc.flag, tc.ip, tc.port, got, err, tc.want, tc.err)
			}
			if err == nil && Unspecified(got) != tc.all {
				t.Errorf("Unspecified(%q) = %v, want %v", got, !tc.all, tc.all)
			}
		})
	}
}

// TestListenIfaceAddr: Listen takes the default bind address from
// --iface (lo here; the HTTP port is chosen by the kernel, so that the
// test never depends on port 8080 being free).
func TestListenIfaceAddr(t *testing.T) {
	l, err := Listen(Config{Iface: "lo", HTTP: "127.0.0.1:0", TFTP: "off", DHCP: "off"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got, err := BindAddr("", l.ifaceIP, DefaultHTTPPort); err != nil || got != "127.0.0.1:8080" {
		t.Errorf("default HTTP address with --iface lo = %q, %v; want 127.0.0.1:8080", got, err)
	}
}
