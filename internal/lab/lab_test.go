package lab

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/shoal-project/shoal/netboot/inventory"
)

func TestParseRepoEgress(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     int64
		wantErr  bool
	}{
		{"present", "# HELP x\nshoal_serve_http_response_bytes_total{route=\"boot\"} 99\nshoal_serve_http_response_bytes_total{route=\"repo\"} 1.2345678e+07\n", 12345678, false},
		{"absent", "shoal_serve_http_response_bytes_total{route=\"boot\"} 99\n", 0, false},
		{"garbage", "shoal_serve_http_response_bytes_total{route=\"repo\"} lots\n", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRepoEgress(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("ParseRepoEgress() = %d, %v; want %d, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := Config{Shoal: "shoal"}
	if err := c.defaults(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"bios", "uefi"}, c.Firmware); c.Nodes != 3 || diff != "" || c.Timeout != 15*time.Minute {
		t.Errorf("defaults: nodes %d firmware %v timeout %v; want 3, [bios uefi], 15m", c.Nodes, c.Firmware, c.Timeout)
	}
	for _, bad := range []Config{{Shoal: "s", Firmware: []string{"coreboot"}}, {Shoal: "s", Nodes: 1000}} {
		if err := bad.defaults(); err == nil {
			t.Errorf("defaults(%+v) = nil, want an error", bad)
		}
	}
}

// TestNodeUpdate checks how a machine's state follows the server's reports
// and its console.
func TestNodeUpdate(t *testing.T) {
	n := &node{started: time.Now()}
	n.Name = "node1"
	n.update(nil, true)
	if n.over() || n.ok(true) {
		t.Fatalf("machine with no report: over %v ok %v, want neither", n.over(), n.ok(true))
	}
	n.update(&inventory.Machine{LastReport: time.Now(), Status: inventory.Status{State: "done", Role: "follower", Verified: true, BytesFromPeers: 5}}, true)
	if n.over() || n.ok(true) || n.Seconds <= 0 || n.Role != "follower" || n.BytesFromPeers != 5 {
		t.Errorf("done but not booted: over %v ok %v seconds %v role %q peers %d", n.over(), n.ok(true), n.Seconds, n.Role, n.BytesFromPeers)
	}
	n.update(&inventory.Machine{LastReport: time.Now(), Status: inventory.Status{State: "done"}}, true)
	if n.BytesFromPeers != 5 {
		t.Errorf("a report without counts took the bytes from peers from 5 to %d, want them kept", n.BytesFromPeers)
	}
	if !n.ok(false) {
		t.Errorf("done and verified, image not the sample OS: ok = false, want true")
	}
	n.BootedNewOS = true
	if !n.over() || !n.ok(true) {
		t.Errorf("done and booted: over %v ok %v, want both", n.over(), n.ok(true))
	}
	f := &node{}
	f.update(&inventory.Machine{LastReport: time.Now(), Status: inventory.Status{State: "failed", Error: "disk too small"}}, true)
	if !f.over() || f.ok(true) || f.Error != "disk too small" {
		t.Errorf("failed machine: over %v ok %v error %q", f.over(), f.ok(true), f.Error)
	}
}

func TestTableAndSummary(t *testing.T) {
	var b bytes.Buffer
	n := &node{}
	n.NodeSummary = NodeSummary{Name: "node2", Firmware: "uefi", MAC: "52:54:00:5e:00:02", State: "writing", Role: "leader", BytesFromServer: 3 << 20}
	printTable(&b, []*node{n}, 65*time.Second)
	printSummary(&b, Summary{Seconds: 12, ImageBytes: 10 << 20, ServerEgressBytes: 11 << 20, Nodes: []NodeSummary{n.NodeSummary}})
	for _, want := range []string{"01:05", "node2", "uefi", "writing", "leader", "3.0MiB", "1.10x the image"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
}
