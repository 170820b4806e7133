// serve_run_test.go: `shoal serve` run in-process for a test.
package main

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"
)

// serveFor runs `shoal serve` with args until the test ends (its error,
// when it ends, fails the test) and returns its base URL, from the line
// it prints first.
func serveFor(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, append([]string{"serve"}, args...), pw, io.Discard)
		pw.CloseWithError(err)
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		go io.Copy(io.Discard, pr)
		if err := <-done; err != nil {
			t.Errorf("shoal serve %v: %v", args, err)
		}
	})
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("shoal serve %v: reading its first line: %v", args, err)
	}
	return "http://" + strings.TrimSpace(strings.TrimPrefix(line, "shoal serve: http on "))
}

// startServe is serveFor with --dhcp off --tftp off --http 127.0.0.1:0
// before args.
func startServe(t *testing.T, args ...string) string {
	t.Helper()
	return serveFor(t, append([]string{"--dhcp", "off", "--tftp", "off", "--http", "127.0.0.1:0"}, args...)...)
}
