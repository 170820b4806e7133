package session

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-project/shoal/internal/syncbuf"
)

// TestFetchProcesses runs real `shoal fetch` processes, one per node, and
// kills the leader's process (SIGKILL, by PID) half way: the two others
// complete, one of them by taking over, with the right bytes on disk.
func TestFetchProcesses(t *testing.T) {
	l := newLab(t, 3, testSizeBytes, testChunkBytes, "img")
	bin := filepath.Join(t.TempDir(), "shoal")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/shoal")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l.srv.delay.Store(int64(60 * time.Millisecond))
	dir := t.TempDir()
	type proc struct {
		cmd    *exec.Cmd
		stderr *syncbuf.Buffer
		target string
		stats  string
		done   chan error
	}
	keyFile := filepath.Join(dir, "session.key")
	if err := os.WriteFile(keyFile, []byte("session key of the test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func(i int) *proc {
		p := &proc{stderr: &syncbuf.Buffer{}, target: filepath.Join(dir, "target"+string(rune('0'+i))),
			stats: filepath.Join(dir, "stats"+string(rune('0'+i))+".json"), done: make(chan error, 1)}
		p.cmd = l.lan.Nodes[i].Command(ctx, bin, "fetch", "--insecure-unsigned", "--repo", l.url, "--name", "img", "--iface", "eth0", "--key-file", keyFile,
			"--announce-interval", "100ms", "--listen", "400ms", "--leader-timeout", "1s", "--election", "700ms",
			"--data-timeout", "5s", "--linger", "1s", "--workers", "2", "--rate", "200Mbit", "--stats", p.stats, p.target)
		p.cmd.Stderr = p.stderr
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.done <- p.cmd.Wait() }()
		return p
	}
	waitLog := func(p *proc, what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(p.stderr.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the output within 20 s:\n%s", what, p.stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	leader := start(1)
	waitLog(leader, "INFO leading")
	followers := []*proc{start(2), start(3)}
	waitLog(leader, "requested: multicasting")
	// 64 chunks at 60 ms, 2 at a time: about 2 s of download.
	time.Sleep(900 * time.Millisecond)
	if err := syscall.Kill(leader.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill leader: %v", err)
	}
	<-leader.done
	takeovers := 0
	for i, f := range followers {
		select {
		case err := <-f.done:
			if err != nil {
				t.Errorf("follower %d: shoal fetch: %v\n%s", i, err, f.stderr.String())
				continue
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("follower %d did not finish:\n%s", i, f.stderr.String())
		}
		got, err := os.ReadFile(f.target)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, l.images["img"].disk) {
			t.Errorf("follower %d: target differs from the source disk", i)
		}
		var st Status
		b, err := os.ReadFile(f.stats)
		if err == nil {
			err = json.Unmarshal(b, &st)
		}
		if err != nil {
			t.Fatalf("stats: %v", err)
		}
		t.Logf("follower %d: %+v", i, st)
		takeovers += st.Takeovers
	}
	if takeovers != 1 {
		t.Errorf("%d takeovers, want 1", takeovers)
	}
	within(t, "server egress", l.srv.served.Load(), l.images["img"].storedBytes(), 1.3)
}
