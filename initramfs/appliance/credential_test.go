package appliance

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/netboot/api"
)

// ipxeBoot fetches the machine's iPXE script from the server, as iPXE
// does at each boot: the server then gives this boot a credential.
func (m *machine) ipxeBoot(t *testing.T) {
	t.Helper()
	if m.serverURL == "" {
		return
	}
	resp, err := http.Get(m.serverURL + "/ipxe/" + testMAC)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestCredentialTaken: another host took this boot's credential first;
// the appliance says so, fails at step "credential" and writes nothing.
func TestCredentialTaken(t *testing.T) {
	src := newSource(t)
	for _, tc := range []struct {
		name string
		take bool
	}{
		{"taken by another", true},
		{"no boot known", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t, src)
			disk := m.disk(t, "vda", "", 64<<20)
			m.noBoot = true
			if tc.take {
				m.ipxeBoot(t)
				if _, err := (&api.Client{BaseURL: m.serverURL}).Credential(context.Background(), testMAC); err != nil {
					t.Fatal(err)
				}
			}
			o := m.run(t, "shoal.server="+m.serverURL+" shoal.repo="+m.repoURL+" shoal.image=testimg shoal.mac="+testMAC+" shoal.after=shell")
			var f *Failure
			if !errors.As(o.err, &f) || f.Step != StepCredential {
				t.Fatalf("Run = %v, want a failure at step %q\n%s", o.err, StepCredential, o.console)
			}
			if !strings.Contains(o.console, "NO CREDENTIAL for this boot") {
				t.Errorf("console does not say there is no credential:\n%s", o.console)
			}
			b, err := os.ReadFile(disk)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, make([]byte, len(b))) {
				t.Errorf("the disk was written without a credential")
			}
			if ms, _ := m.inv.Lookup(testMAC); ms.Status.State == api.StateDone {
				t.Errorf("machine reported done")
			}
		})
	}
}

func TestCheckImageID(t *testing.T) {
	var id, other [32]byte
	id[0], other[0] = 1, 2
	for _, tc := range []struct {
		name    string
		want    [32]byte
		wantErr bool
	}{
		{"no ID in the credential", [32]byte{}, false},
		{"same", id, false},
		{"other", other, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkImageID(Job{Name: "img", ImageID: tc.want}, id)
			if (err != nil) != tc.wantErr {
				t.Errorf("checkImageID = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}
