package tftpd

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/pin/tftp/v3"
)

func TestCleanName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		refused  bool
	}{
		{in: "undionly.kpxe", want: "undionly.kpxe"},
		{in: "efi/ipxe.efi", want: "efi/ipxe.efi"},
		{in: "a//b", want: "a/b"},
		{in: "/etc/passwd", refused: true},
		{in: "../etc/passwd", refused: true},
		{in: "a/../../x", refused: true},
		{in: "a/../b", refused: true},
		{in: "..\\x", refused: true},
		{in: "", refused: true},
		{in: ".", refused: true},
		{in: "a\x00b", refused: true},
	} {
		got, err := CleanName(tc.in)
		if tc.refused {
			if !errors.Is(err, ErrRefused) {
				t.Errorf("CleanName(%q) = %q, %v; want ErrRefused", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("CleanName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// serveLoopback starts a server for dir on 127.0.0.1 and returns its address.
func serveLoopback(t *testing.T, dir string) string {
	t.Helper()
	s, err := New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		s.Close()
	})
	return conn.LocalAddr().String()
}

func TestServeFiles(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	if err := os.MkdirAll(filepath.Join(root, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte("shoal-boot-file."), 10000) // 160 kB: many blocks
	if err := os.WriteFile(filepath.Join(root, "sub", "boot.bin"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../secret", filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	addr := serveLoopback(t, root)
	c, err := tftp.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	wt, err := c.Receive("sub/boot.bin", "octet")
	if err != nil {
		t.Fatalf("Receive(sub/boot.bin): %v", err)
	}
	var got bytes.Buffer
	if _, err := wt.WriteTo(&got); err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("received %d bytes, want the file's %d", got.Len(), len(want))
	}
	for _, name := range []string{"../secret", "/etc/passwd", "escape", "missing", "sub"} {
		wt, err := c.Receive(name, "octet")
		if err == nil {
			var buf bytes.Buffer
			_, err = wt.WriteTo(&buf)
		}
		if err == nil {
			t.Errorf("Receive(%q) succeeded, want an error", name)
		}
	}
	rf, err := c.Send("upload", "octet")
	if err == nil {
		_, err = rf.ReadFrom(bytes.NewReader([]byte("data")))
	}
	if err == nil {
		t.Errorf("write request succeeded, want it refused")
	}
	if _, err := os.Stat(filepath.Join(root, "upload")); err == nil {
		t.Errorf("write request created a file")
	}
}
