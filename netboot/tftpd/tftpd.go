// Package tftpd is a read-only TFTP server for network boot files (iPXE
// binaries), serving only files under one directory. Absolute paths, ".."
// and symlinks leading out of the directory are refused; so are writes.
package tftpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path"
	"strings"

	"github.com/pin/tftp/v3"
)

// ErrRefused is returned for a file name that is not a plain relative path
// inside the root.
var ErrRefused = errors.New("path refused")

// Server serves the files under Root.
type Server struct {
	root *os.Root
	log  *slog.Logger
	// Sent, if set, is called after each successful transfer.
	Sent func(name string, sizeBytes int64)
}

// New serves the directory dir. The caller closes the server's root with
// Close.
func New(dir string, log *slog.Logger) (*Server, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("tftpd: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{root: r, log: log}, nil
}

// Close releases the root directory.
func (s *Server) Close() error { return s.root.Close() }

// CleanName turns a requested file name into a path relative to the root,
// or fails with ErrRefused. Leading slashes are not stripped: "/etc/passwd"
// is refused, not served as "etc/passwd", so that a misconfigured client
// fails loudly.
func CleanName(name string) (string, error) {
	name = strings.ReplaceAll(name, "\\", "/")
	if name == "" || strings.HasPrefix(name, "/") || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("%q: %w", name, ErrRefused)
	}
	for _, elem := range strings.Split(name, "/") {
		if elem == ".." {
			return "", fmt.Errorf("%q: %w", name, ErrRefused)
		}
	}
	clean := path.Clean(name)
	if !fs.ValidPath(clean) || clean == "." {
		return "", fmt.Errorf("%q: %w", name, ErrRefused)
	}
	return clean, nil
}

func (s *Server) read(name string, rf io.ReaderFrom) error {
	clean, err := CleanName(name)
	if err != nil {
		s.log.Warn("tftp: refused", "file", name)
		return err
	}
	f, err := s.root.Open(clean) // os.Root refuses symlinks out of the root
	if err != nil {
		s.log.Info("tftp: open", "file", name, "err", err)
		return fmt.Errorf("open %s: %w", clean, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", clean, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file: %w", clean, ErrRefused)
	}
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ot.SetSize(fi.Size())
	}
	n, err := rf.ReadFrom(f)
	if err != nil {
		s.log.Info("tftp: send", "file", clean, "err", err)
		return fmt.Errorf("send %s: %w", clean, err)
	}
	s.log.Debug("tftp: sent", "file", clean, "bytes", n)
	if s.Sent != nil {
		s.Sent(clean, n)
	}
	return nil
}

// Serve answers read requests on conn (usually UDP port 69) until ctx is
// done, then closes conn. Each transfer runs on its own ephemeral port, as
// RFC 1350 has it, from the address the request was sent to. (pin/tftp's
// single-port mode races a transfer's end against the packets still
// arriving for it: the race detector caught it, and it can panic with a
// send on a closed channel.) Transfer sockets are made in pin/tftp's own
// goroutines, so a process serving TFTP must sit wholly in one network
// namespace.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	srv := tftp.NewServer(s.read, nil)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(conn) }()
	select {
	case <-ctx.Done():
		srv.Shutdown() // closes conn and waits for transfers in flight
		<-done
		return nil
	case err := <-done:
		conn.Close()
		return fmt.Errorf("tftpd: %w", err)
	}
}
