// Package inventorytest is the conformance suite of inventory.Backend:
// every implementation (the file Store, etcdstore) runs the same table
// tests of lookups, the unknown-machine policy, reports, the turn to local
// and what another opening of the same inventory (a restart, another
// server) sees.
package inventorytest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/shoal-project/shoal/netboot/api"
	"github.com/shoal-project/shoal/netboot/inventory"
)

// Setup is what an inventory holds when the test opens it.
type Setup struct {
	Machines []api.Machine // MAC, Action, Image, Disk
	Unknown  string        // the unknown-machine policy
}

// Fixture is an inventory opened for one test.
type Fixture struct {
	inventory.Backend
	// Edit sets a machine as an operator would (the file, etcdctl put)
	// and returns once b sees it.
	Edit func(t *testing.T, m api.Machine)
	// Reopen opens the same inventory again (a restart, or another
	// server on the same store), closed when the test ends.
	Reopen func(t *testing.T) inventory.Backend
}

// Opener opens a new, separate inventory holding setup for t.
type Opener func(t *testing.T, setup Setup) Fixture

// The MACs and images of the suite.
const (
	macReimage = "52:54:00:00:00:01"
	macLocal   = "52:54:00:00:00:02"
	macUnknown = "02:00:00:00:00:99"
	image      = "debian-12"
	other      = "debian-13"
)

var (
	t0        = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	done      = api.Status{State: api.StateDone, Progress: 1, Verified: true}
	unsigned  = api.Status{State: api.StateDone, Progress: 1}
	withError = api.Status{State: api.StateDone, Progress: 1, Verified: true, Error: "disk full"}
	writing   = api.Status{State: api.StateWriting, Progress: 0.5}
)

func setup(unknown string) Setup {
	return Setup{Unknown: unknown, Machines: []api.Machine{
		{MAC: macReimage, Action: api.Reimage, Image: image, Disk: "/dev/vda"},
		{MAC: macLocal, Action: api.Local, Image: image},
	}}
}

// Run runs the suite against inventories that open makes.
func Run(t *testing.T, open Opener) {
	t.Run("Lookup", func(t *testing.T) { testLookup(t, open) })
	t.Run("Reports", func(t *testing.T) { testReports(t, open) })
	t.Run("Machines", func(t *testing.T) { testMachines(t, open) })
	t.Run("Reopen", func(t *testing.T) { testReopen(t, open) })
}

func testLookup(t *testing.T, open Opener) {
	ignore := open(t, setup(inventory.Ignore))
	policy := open(t, setup("fallback"))
	for _, tc := range []struct {
		name    string
		inv     inventory.Backend
		mac     string
		want    api.Machine
		wantErr error
	}{
		{"reimage", ignore, macReimage, api.Machine{MAC: macReimage, Action: api.Reimage, Image: image, Disk: "/dev/vda", Known: true}, nil},
		{"local", ignore, macLocal, api.Machine{MAC: macLocal, Action: api.Local, Image: image, Known: true}, nil},
		{"dashes and upper case", ignore, "52-54-00-00-00-01", api.Machine{MAC: macReimage, Action: api.Reimage, Image: image, Disk: "/dev/vda", Known: true}, nil},
		{"unknown, ignored", ignore, macUnknown, api.Machine{}, inventory.ErrUnknown},
		{"unknown, policy image", policy, macUnknown, api.Machine{MAC: macUnknown, Action: api.Reimage, Image: "fallback"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.inv.Lookup(tc.mac)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Lookup(%s) error = %v, want %v", tc.mac, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Lookup(%s) (-want +got):\n%s", tc.mac, diff)
			}
		})
	}
	if _, err := ignore.Lookup("zz:zz"); err == nil {
		t.Error("Lookup(zz:zz) = nil error, want a bad MAC")
	}
}

// step is one thing that happens to a machine.
type step struct {
	boot   bool         // it fetches its boot script
	report *api.Status  // it reports
	edit   *api.Machine // the operator sets its entry
}

func boot() step                { return step{boot: true} }
func report(st api.Status) step { return step{report: &st} }
func edit(m api.Machine) step   { return step{edit: &m} }
func reimageWith(img string) api.Machine {
	return api.Machine{MAC: macReimage, Action: api.Reimage, Image: img, Disk: "/dev/vda"}
}

func testReports(t *testing.T, open Opener) {
	for _, tc := range []struct {
		name    string
		unknown string
		mac     string
		steps   []step
		want    api.Machine // Status, Action, Image, Known (times are checked apart)
		wantErr error       // of the last report
	}{
		{"verified done turns local", inventory.Ignore, macReimage, []step{boot(), report(writing), report(done)},
			api.Machine{MAC: macReimage, Action: api.Local, Image: image, Disk: "/dev/vda", Known: true, Status: done}, nil},
		{"done without a boot here turns local", inventory.Ignore, macReimage, []step{report(done)},
			api.Machine{MAC: macReimage, Action: api.Local, Image: image, Disk: "/dev/vda", Known: true, Status: done}, nil},
		{"unverified done stays", inventory.Ignore, macReimage, []step{boot(), report(unsigned)},
			api.Machine{MAC: macReimage, Action: api.Reimage, Image: image, Disk: "/dev/vda", Known: true, Status: unsigned}, nil},
		{"done with an error stays", inventory.Ignore, macReimage, []step{boot(), report(withError)},
			api.Machine{MAC: macReimage, Action: api.Reimage, Image: image, Disk: "/dev/vda", Known: true, Status: withError}, nil},
		{"progress stays", inventory.Ignore, macReimage, []step{boot(), report(writing)},
			api.Machine{MAC: macReimage, Action: api.Reimage, Image: image, Disk: "/dev/vda", Known: true, Status: writing}, nil},
		{"image changed since the boot stays", inventory.Ignore, macReimage, []step{boot(), edit(reimageWith(other)), report(done)},
			api.Machine{MAC: macReimage, Action: api.Reimage, Image: other, Disk: "/dev/vda", Known: true, Status: done}, nil},
		{"unknown with a policy turns local and known", "fallback", macUnknown, []step{boot(), report(writing), report(done)},
			api.Machine{MAC: macUnknown, Action: api.Local, Image: "fallback", Known: true, Status: done}, nil},
		{"unknown ignored is refused", inventory.Ignore, macUnknown, []step{report(writing)},
			api.Machine{}, inventory.ErrUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := open(t, setup(tc.unknown))
			now := t0
			var got api.Machine
			var err error
			for _, s := range tc.steps {
				now = now.Add(time.Second)
				switch {
				case s.boot:
					f.MarkBoot(tc.mac, now)
				case s.edit != nil:
					f.Edit(t, *s.edit)
				case s.report != nil:
					got, err = f.Report(tc.mac, *s.report, now)
				}
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("last Report error = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			ignoreTimes := cmpopts.IgnoreFields(api.Machine{}, "FirstSeen", "LastBoot", "LastReport")
			if diff := cmp.Diff(tc.want, got, ignoreTimes); diff != "" {
				t.Errorf("Report's machine (-want +got):\n%s", diff)
			}
			looked, err := f.Lookup(tc.mac)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, looked); diff != "" {
				t.Errorf("Lookup after the reports differs from Report's answer (-report +lookup):\n%s", diff)
			}
			if !looked.LastReport.Equal(now) {
				t.Errorf("LastReport = %v, want the last report's %v", looked.LastReport, now)
			}
			if want := t0.Add(time.Second); !looked.FirstSeen.Equal(want) {
				t.Errorf("FirstSeen = %v, want the first step's %v", looked.FirstSeen, want)
			}
		})
	}
}

func testMachines(t *testing.T, open Opener) {
	f := open(t, setup("fallback"))
	f.MarkBoot("02:00:00:00:00:98", t0) // boots, never reports: not listed
	if _, err := f.Report(macUnknown, writing, t0); err != nil {
		t.Fatal(err)
	}
	var macs []string
	for _, m := range f.Machines() {
		macs = append(macs, m.MAC)
	}
	if diff := cmp.Diff([]string{macUnknown, macReimage, macLocal}, macs); diff != "" {
		t.Errorf("Machines() MACs (-want +got):\n%s", diff)
	}
}

// eventually retries check until it returns "" or 5 s have passed: what
// another opening sees may come later (etcd's watch).
func eventually(t *testing.T, what string, check func() string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: %s", what, msg)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testReopen(t *testing.T, open Opener) {
	f := open(t, setup("fallback"))
	f.MarkBoot(macReimage, t0)
	if _, err := f.Report(macReimage, done, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	f.MarkBoot(macUnknown, t0)
	if _, err := f.Report(macUnknown, done, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	again := f.Reopen(t)
	for _, mac := range []string{macReimage, macUnknown} {
		eventually(t, "reopened "+mac, func() string {
			m, err := again.Lookup(mac)
			if err != nil {
				return err.Error()
			}
			if m.Action != api.Local || !m.Known {
				return "machine " + mac + " is " + string(m.Action) + ", want local and known"
			}
			return ""
		})
	}
	// An operator's edit seen through the first opening reaches the
	// second.
	f.Edit(t, api.Machine{MAC: macLocal, Action: api.Reimage, Image: other})
	eventually(t, "an edit seen by the reopened inventory", func() string {
		m, err := again.Lookup(macLocal)
		if err != nil {
			return err.Error()
		}
		if m.Action != api.Reimage || m.Image != other {
			return "machine is " + string(m.Action) + " " + m.Image + ", want reimage " + other
		}
		return ""
	})
}
