package progress

import (
	"bytes"
	"testing"
	"time"
)

func TestBytes(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {3 << 20, "3.0 MiB"}, {1536 << 20, "1.5 GiB"},
	} {
		if got := Bytes(tc.n); got != tc.want {
			t.Errorf("Bytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestBarQuietOffTerminal(t *testing.T) {
	var out bytes.Buffer
	b := New(&out, "apply", 100<<20)
	start := b.start
	b.now = func() time.Time { return start.Add(10 * time.Second) }
	b.Add(50 << 20)
	if got, want := b.Line(), "apply  50.0%  50.0 MiB / 100.0 MiB  5.0 MiB/s  ETA 10s"; got != want {
		t.Errorf("Line() = %q, want %q", got, want)
	}
	b.Finish()
	if out.Len() != 0 {
		t.Errorf("bar wrote %q to a non-terminal", out.String())
	}
}
