package mcast

import (
	"context"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// listenLoopback opens a UDP socket on loopback, closed at the end of the
// test.
func listenLoopback(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSendControlError: a control socket that fails ends the session with
// its error; the end of the session, or the caller's cancel, is no error of
// the socket. Unicast on loopback: the sender's announces go to its own
// control socket, its data to a socket nobody reads.
func TestSendControlError(t *testing.T) {
	_, repo, img := testImage(t, 256<<10, 64<<10)
	tests := []struct {
		name string
		// failReads sets a read deadline in the past on the control socket:
		// every read fails, while writes go on.
		failReads bool
		// cancel cancels Send's context at its first progress report.
		cancel  bool
		wantErr error
	}{
		{name: "session ends", wantErr: nil},
		{name: "control reads fail", failReads: true, wantErr: os.ErrDeadlineExceeded},
		{name: "caller cancels", cancel: true, wantErr: context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctrl, data := listenLoopback(t), listenLoopback(t)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cfg := SenderConfig{
				Image: img, Source: RepoSource{Repo: repo, Image: img},
				Control: ctrl.LocalAddr().(*net.UDPAddr).AddrPort(),
				Data:    data.LocalAddr().(*net.UDPAddr).AddrPort(),
				Linger:  50 * time.Millisecond,
				Logger:  testLogger(t, "sender"),
			}
			if tc.failReads {
				if err := ctrl.SetReadDeadline(time.Now()); err != nil {
					t.Fatal(err)
				}
			}
			if tc.cancel {
				cfg.Linger = time.Minute // the session would go on
				var once sync.Once
				cfg.Progress = func(SenderStats) { once.Do(cancel) }
			}
			_, err := Send(ctx, ctrl, cfg)
			if diff := cmp.Diff(tc.wantErr, err, cmpopts.EquateErrors()); diff != "" {
				t.Errorf("Send error (-want +got):\n%s", diff)
			}
		})
	}
}
