package session

// status.go: what a node reports of itself: its roles, the Status snapshot, the progress calls.

import (
	"context"
	"time"
)

// Roles reported in Status.Role.
const (
	RoleListening = "listening"
	RoleLeader    = "leader"
	RoleFollower  = "follower"
	RoleElection  = "election"
	RoleFallback  = "fallback"
	RoleDone      = "done"
	RoleFailed    = "failed"
)

// Status is what a node is doing.
type Status struct {
	Role   string
	Epoch  uint32 // the epoch of the session the node leads or follows
	Node   uint32 // this node's ID
	Leader uint32 // the node followed (0: none)
	Chunks int
	// ChunksDone counts the chunks verified on the target.
	ChunksDone      int
	BytesFromServer int64 // stored bytes fetched from the server
	BytesFromPeers  int64 // stored bytes received by multicast and written
	BytesToPeers    int64 // block bytes multicast while leading
	Elapsed         time.Duration
	// Led counts the epochs this node led; Takeovers the elections it
	// won; Fallbacks the times it fell back to the server; BadPeers the
	// leaders left for bad data or a bad manifest signature.
	Led, Takeovers, Fallbacks, BadPeers int
	// Refused counts control messages dropped: unauthenticated, stale
	// (another run's), replayed, or beyond the bounds of its tables.
	Refused int64
	// LastError is the last thing that went wrong (empty: nothing).
	LastError string
}

func (n *node) setRole(role string, epoch, leader uint32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.st.Role, n.st.Epoch, n.st.Leader = role, epoch, leader
}

func (n *node) setErr(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.st.LastError = err.Error()
}

func (n *node) status() Status {
	n.mu.Lock()
	st := n.st
	w := n.w
	n.mu.Unlock()
	if w != nil {
		st.ChunksDone = len(w.Image().Chunks) - w.Remaining()
	}
	st.BytesFromServer = n.fromServer.Load()
	st.BytesFromPeers = n.fromPeers.Load()
	st.BytesToPeers = n.toPeers.Load()
	st.Refused = n.refused.Load()
	st.Elapsed = time.Since(n.start)
	return st
}

func (n *node) progressLoop(ctx context.Context) {
	if n.cfg.Progress == nil {
		return
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.cfg.Progress(n.status())
		}
	}
}
