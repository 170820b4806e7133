package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/internal/sitekeys"
)

// TestBuildPubkeyDefault: the key ./build.sh bakes into the appliance
// (build/pubkey.sh) is, by default, the state directory's signing.pub,
// made when missing; PUBKEY= overrides it.
func TestBuildPubkeyDefault(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	if b, err := exec.Command("go", "build", "-o", filepath.Join(out, "shoal"), ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	state := filepath.Join(dir, "state")
	for _, tc := range []struct {
		name, pubkey, want string
	}{
		{"default: the state's key", "", sitekeys.PubPath(state)},
		{"PUBKEY wins", "/elsewhere/site.pub", "/elsewhere/site.pub"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("bash", "build/pubkey.sh")
			cmd.Dir = "../.."
			cmd.Env = append(os.Environ(), "OUT="+out, "SHOAL_STATE="+state, "PUBKEY="+tc.pubkey)
			b, err := cmd.Output()
			if err != nil {
				t.Fatalf("build/pubkey.sh: %v", err)
			}
			if got := strings.TrimSpace(string(b)); got != tc.want {
				t.Errorf("build/pubkey.sh printed %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := sitekeys.Load(state); err != nil {
		t.Errorf("the state's keys after build/pubkey.sh: %v", err)
	}
}
