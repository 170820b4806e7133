package main

// nginx_test.go: docs/netboot.md's nginx proxy_cache snippet, run for real
// in front of shoal serve.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/internal/netlabtest"
)

// nginxSnippet returns the nginx block of docs/netboot.md.
func nginxSnippet(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/netboot.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```nginx\n")
	if !ok {
		t.Fatal("docs/netboot.md has no nginx block")
	}
	snippet, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("docs/netboot.md: the nginx block does not end")
	}
	return snippet
}

// startNginx runs nginx with the snippet as its http block, the cache and
// every file in a temporary directory, listening on a free loopback port
// and proxying to origin; it is ended by its PID when the test ends. It
// returns nginx's base URL.
func startNginx(t *testing.T, origin string) string {
	t.Helper()
	bin := netlabtest.RequireTool(t, "nginx")
	dir := t.TempDir()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	snippet := nginxSnippet(t)
	for _, r := range [][2]string{
		{"/var/cache/nginx/shoal", filepath.Join(dir, "cache")},
		{"listen 8080;", "listen " + addr + ";"},
		{"http://images.example.com:8080/repo/", origin + "/repo/"},
	} {
		if !strings.Contains(snippet, r[0]) {
			t.Fatalf("docs/netboot.md's nginx block has no %q", r[0])
		}
		snippet = strings.ReplaceAll(snippet, r[0], r[1])
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // the workers reach the test's directory
	}
	conf := fmt.Sprintf(`daemon off;
%s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
events { worker_connections 256; }
http {
    access_log %[2]s/access.log;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
%s
}
`, user, dir, snippet)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", confPath)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("nginx: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// The master, by its PID: it ends its worker.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error.log:\n%s", b)
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %v\n%s", err, b)
		default:
		}
		resp, err := http.Get(base + "/") // nginx's own 404: up, the origin not asked
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not answer on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	pid, err := os.ReadFile(filepath.Join(dir, "nginx.pid"))
	if err != nil || strings.TrimSpace(string(pid)) != strconv.Itoa(cmd.Process.Pid) {
		t.Fatalf("nginx.pid = %q, %v; want the PID started, %d", pid, err, cmd.Process.Pid)
	}
	return base
}

// TestNginxProxyCache: docs/netboot.md's nginx proxy_cache in front of
// shoal serve --repo; 16 clients ask for one chunk at once, then the image
// is verified twice through it with shoal image verify; the origin served
// each chunk once and the manifest and signature at each fetch (no-cache).
func TestNginxProxyCache(t *testing.T) {
	site := newSignedSite(t, 5)
	state, repo, boot, img := site.state, site.repo, site.boot, site.img
	ctx := context.Background()
	origin := startServe(t, "--state", state, "--repo", repo, "--boot", boot)
	proxy := startNginx(t, origin)
	// Many machines asking for one chunk at once: proxy_cache_lock.
	const clients = 16
	var wg sync.WaitGroup
	codes := make([]int, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(proxy + "/repo/" + imaging.ChunkPath(img.Chunks[len(img.Chunks)/2].Hash))
			if err != nil {
				t.Errorf("client %d: %v", i, err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	for i, code := range codes {
		if code != http.StatusOK {
			t.Errorf("client %d: %d, want 200", i, code)
		}
	}
	for i := range 2 {
		var out strings.Builder
		if err := run(ctx, []string{"image", "verify", "--state", state, "--repo", proxy + "/repo/", "--name", "img"}, &out, &out); err != nil {
			t.Fatalf("image verify %d through nginx: %v\n%s", i, err, out.String())
		}
	}
	if got, want := metric(t, origin, `shoal_serve_http_requests_total{code="200",route="repo"}`), float64(site.uniqueChunks+2*2); got != want {
		t.Errorf("origin served %v repository files over %d clients of one chunk at once and two fetches of the image through nginx, want %v (%d chunks once, manifest and signature twice)",
			got, clients, want, site.uniqueChunks)
	}
	// A chunk through nginx: a hit, with the origin's Cache-Control.
	resp, err := http.Get(proxy + "/repo/" + imaging.ChunkPath(img.Chunks[0].Hash))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Cache-Status") != "HIT" || resp.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" {
		t.Errorf("chunk through nginx: %d, X-Cache-Status %q, Cache-Control %q; want 200, HIT, immutable",
			resp.StatusCode, resp.Header.Get("X-Cache-Status"), resp.Header.Get("Cache-Control"))
	}
}
