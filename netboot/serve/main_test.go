package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/shoal-project/shoal/internal/netlab"
)

// serverProcessEnv names the config file of a test binary re-run as a
// server process (see startServerProcess).
const serverProcessEnv = "SHOAL_SERVE_TEST_CONFIG"

// TestMain runs the test binary as a plain server when serverProcessEnv is
// set: TFTP makes a socket per transfer in pin/tftp's own goroutines, so a
// server that serves TFTP inside a namespace must be a whole process there.
func TestMain(m *testing.M) {
	if path := os.Getenv(serverProcessEnv); path != "" {
		if err := serveProcess(path); err != nil {
			fmt.Fprintln(os.Stderr, "server process:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func serveProcess(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return err
	}
	ls, err := Listen(cfg)
	if err != nil {
		return err
	}
	s, err := New(cfg, ls, nil)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	fmt.Println("ready")
	return s.Serve(ctx)
}

// startServerProcess runs cfg's server as a separate process inside node n
// until the test ends, then stops it with SIGTERM and checks that it exited
// cleanly.
func startServerProcess(t *testing.T, n *netlab.Node, cfg Config) {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := n.Command(context.Background(), self, "-test.run=^$")
	cmd.Env = append(os.Environ(), serverProcessEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := <-done; err != nil {
			t.Errorf("server process: %v\n%s", err, stderr.String())
		}
	})
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("server process did not start: %q %v\n%s", line, err, stderr.String())
	}
}
