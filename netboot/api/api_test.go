package api

import (
	"testing"
	"time"
)

func TestStateOver(t *testing.T) {
	for _, tc := range []struct {
		s    State
		want bool
	}{
		{StateBooting, false}, {StateListening, false}, {StateWriting, false}, {StateWritten, false},
		{StateServing, false}, {StateDone, true}, {StateFailed, true}, {"", false},
	} {
		t.Run(string(tc.s), func(t *testing.T) {
			if got := tc.s.Over(); got != tc.want {
				t.Errorf("%q.Over() = %v, want %v", tc.s, got, tc.want)
			}
		})
	}
}

func TestSilentAt(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		m     Machine
		after time.Duration
		want  bool
	}{
		{"never reported", Machine{}, time.Second, false},
		{"writing, recent", Machine{LastReport: now.Add(-10 * time.Second), Status: Status{State: StateWriting}}, 30 * time.Second, false},
		{"writing, stopped", Machine{LastReport: now.Add(-31 * time.Second), Status: Status{State: StateWriting}}, 30 * time.Second, true},
		{"done long ago", Machine{LastReport: now.Add(-time.Hour), Status: Status{State: StateDone}}, 30 * time.Second, false},
		{"failed long ago", Machine{LastReport: now.Add(-time.Hour), Status: Status{State: StateFailed}}, 30 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.m.SilentAt(now, tc.after); got != tc.want {
				t.Errorf("SilentAt = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSuccess(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Status
		want bool
	}{
		{"verified done", Status{State: StateDone, Verified: true}, true},
		{"unverified done", Status{State: StateDone}, false},
		{"done with an error", Status{State: StateDone, Verified: true, Error: "x"}, false},
		{"writing", Status{State: StateWriting, Verified: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.Success(); got != tc.want {
				t.Errorf("Success = %v, want %v", got, tc.want)
			}
		})
	}
}
