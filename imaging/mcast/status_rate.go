package mcast

// status_rate.go: how often a receiver sends its status: the LAN's statuses held under a budget however many receivers there are, as RTCP does.

import (
	"math/rand/v2"
	"time"
)

const (
	// minStatusInterval is the interval with few receivers.
	minStatusInterval = 250 * time.Millisecond
	// maxStatusInterval bounds the stretch: statuses say the receiver is
	// alive, and the sender forgets one silent for ReceiverTimeout (5 s).
	maxStatusInterval = 1500 * time.Millisecond
	// peerWindow: a receiver whose status was not heard for this long no
	// longer counts.
	peerWindow = 5 * time.Second
	// maxPeers bounds the receivers counted (and the memory they take).
	maxPeers = 1 << 14
)

// peerHeard counts another receiver, by its status; r.mu is held.
func (r *receiver) peerHeard(now time.Time, id uint32) {
	if id == r.cfg.ID {
		return
	}
	if _, ok := r.peers[id]; !ok && len(r.peers) >= maxPeers {
		return
	}
	r.peers[id] = now
}

// statusInterval is the wait before the next status: every receiver
// heard in the last peerWindow (and this one) sharing StatusesPerSec,
// between minStatusInterval and maxStatusInterval, with ±25% at random
// so that receivers started together do not send together; r.mu is held.
func (r *receiver) statusInterval(now time.Time) time.Duration {
	for id, at := range r.peers {
		if now.Sub(at) > peerWindow {
			delete(r.peers, id)
		}
	}
	n := len(r.peers) + 1
	iv := time.Duration(n) * time.Second / time.Duration(r.cfg.StatusesPerSec)
	iv = min(max(iv, minStatusInterval), maxStatusInterval)
	return iv*3/4 + rand.N(iv/2+1)
}
