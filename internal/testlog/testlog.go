// Package testlog gives tests a slog.Logger that writes through t.Log when
// the test runs with -v, and discards everything otherwise.
package testlog

import (
	"bytes"
	"log/slog"
	"testing"
)

// New returns a logger for one actor of a test, named by who, at level.
func New(t testing.TB, who string, level slog.Level) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(writer{t}, &slog.HandlerOptions{Level: level})).With("who", who)
}

type writer struct{ t testing.TB }

func (w writer) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimSpace(b)))
	return len(b), nil
}
