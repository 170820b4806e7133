// writer.go writes what the server changed to etcd: one goroutine drains
// a bounded in-memory queue, and while etcd is unreachable keeps it and
// tries again; it logs one line when the store goes down and one when it
// is back.

package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shoal-project/shoal/netboot/api"
)

// queue is what waits to be written. Statuses are the last of each
// machine; events are in order, the oldest dropped past the bound.
type queue struct {
	status map[string]StatusRecord
	events []queuedEvent
	local  map[string]localOp
}

type queuedEvent struct {
	key string
	val []byte
}

// localOp turns a machine local: the record to write and the key's mod
// revision when the success was reported (0: the key is to be created).
type localOp struct {
	MachineRecord
	key    string
	modRev int64
}

func newQueue() queue {
	return queue{status: map[string]StatusRecord{}, local: map[string]localOp{}}
}

func (q *queue) len() int { return len(q.status) + len(q.events) + len(q.local) }

func (q *queue) addEvent(key string, val []byte, max int, dropped *int) {
	q.events = append(q.events, queuedEvent{key, val})
	if n := len(q.events) - max; n > 0 { // the oldest go
		q.events = q.events[n:]
		*dropped += n
	}
}

// maxTxnOps is the writes in one transaction (etcd's default limit is 128).
const maxTxnOps = 100

// writeLoop writes the queue whenever it grows, and every RetryInterval
// tries again (while down) or probes etcd (while up and idle).
func (s *Store) writeLoop(ctx context.Context) {
	tick := time.NewTicker(s.cfg.RetryInterval)
	defer tick.Stop()
	for {
		probe := false
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-tick.C:
			probe = true
		}
		rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		if s.Queued() > 0 {
			if err := s.flush(rctx); err != nil {
				s.setDown(err)
			} else {
				s.setUp()
			}
		} else if probe {
			if _, err := s.cli.Get(rctx, s.keys.Prefix, clientv3.WithCountOnly()); err != nil {
				s.setDown(err)
			} else {
				s.setUp()
			}
		}
		cancel()
	}
}

func (s *Store) setDown(err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.down {
		s.down = true
		s.log.Warn("inventory store down: booting from the cache, reports queued in memory", "endpoints", fmt.Sprint(s.cfg.Endpoints), "err", err)
	}
}

func (s *Store) setUp() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		s.down = false
		s.log.Info("inventory store back: queued reports written", "dropped", s.dropped)
		s.dropped = 0
	}
}

// flush writes the queue: statuses and events in transactions of at most
// maxTxnOps puts, then the turns to local, then trims the histories
// written to. What is not written goes back to the queue (behind
// anything newer queued meanwhile).
func (s *Store) flush(ctx context.Context) error {
	s.mu.Lock()
	q := s.q
	s.q, s.flushing = newQueue(), q
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.flushing = newQueue()
		s.mu.Unlock()
	}()

	// The statuses first, then the events: written counts both.
	var ops []clientv3.Op
	for mac, r := range q.status {
		ops = append(ops, clientv3.OpPut(s.keys.Status(mac), string(mustJSON(r))))
	}
	trim := map[string]bool{}
	for _, e := range q.events {
		ops = append(ops, clientv3.OpPut(e.key, string(e.val)))
		trim[s.keys.macOfEvent(e.key)] = true
	}
	written := 0
	var err error
	for written < len(ops) {
		n := min(maxTxnOps, len(ops)-written)
		if _, err = s.cli.Txn(ctx).Then(ops[written : written+n]...).Commit(); err != nil {
			break
		}
		written += n
	}
	localDone := map[string]bool{}
	if err == nil {
		for mac, op := range q.local {
			if err = s.turnLocal(ctx, mac, op); err != nil {
				break
			}
			localDone[mac] = true
		}
	}
	if err == nil {
		for mac := range trim {
			if err = s.trimEvents(ctx, mac); err != nil {
				s.log.Warn("inventory store: history not trimmed", "mac", mac, "err", err)
				err = nil // the history is only longer for a while
			}
		}
		return nil
	}
	// Put back what was not written.
	s.mu.Lock()
	defer s.mu.Unlock()
	for mac, r := range q.status {
		if _, newer := s.q.status[mac]; !newer {
			s.q.status[mac] = r
		}
	}
	skipped := written - len(q.status)
	if skipped < 0 {
		skipped = 0
	}
	if skipped < len(q.events) {
		rest := append(q.events[skipped:len(q.events):len(q.events)], s.q.events...)
		s.q.events = nil
		for _, e := range rest {
			s.q.addEvent(e.key, e.val, s.cfg.MaxQueuedEvents, &s.dropped)
		}
	}
	for mac, op := range q.local {
		if _, newer := s.q.local[mac]; !newer && !localDone[mac] {
			s.q.local[mac] = op
		}
	}
	return err
}

// turnLocal writes op's turn to local if the machine's key still says to
// reimage with the image and disk that succeeded: a transaction on the
// key's mod revision, tried again on a fresh read when the key changed
// (another server or an operator wrote it) until it is local or no
// longer the machine that succeeded.
func (s *Store) turnLocal(ctx context.Context, mac string, op localOp) error {
	cmp := clientv3.Compare(clientv3.ModRevision(op.key), "=", op.modRev)
	for range 5 {
		resp, err := s.cli.Txn(ctx).If(cmp).
			Then(clientv3.OpPut(op.key, string(op.MachineRecord.Encode()))).
			Else(clientv3.OpGet(op.key)).Commit()
		if err != nil {
			return fmt.Errorf("turn %s local: %w", mac, err)
		}
		if resp.Succeeded {
			s.log.Info("inventory store: machine turned local", "mac", mac, "image", op.Image)
			return nil
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			if op.modRev != 0 {
				s.log.Info("inventory store: machine removed since its success; not turned local", "mac", mac)
				return nil
			}
			cmp = clientv3.Compare(clientv3.CreateRevision(op.key), "=", 0)
			continue
		}
		cur, derr := DecodeMachine(kvs[0].Value)
		switch {
		case derr != nil:
			s.log.Warn("inventory store: machine's record is bad; not turned local", "mac", mac, "err", derr)
			return nil
		case cur.Action == api.Local:
			return nil // another server did it
		case cur.Image != op.Image || cur.Disk != op.Disk:
			s.log.Info("inventory store: machine changed since its success; not turned local", "mac", mac, "image", cur.Image, "disk", cur.Disk)
			return nil
		}
		cmp = clientv3.Compare(clientv3.ModRevision(op.key), "=", kvs[0].ModRevision)
	}
	return fmt.Errorf("turn %s local: %w", mac, errContended)
}

var errContended = errors.New("the key kept changing")

// trimEvents deletes mac's oldest events past EventsKept.
func (s *Store) trimEvents(ctx context.Context, mac string) error {
	resp, err := s.cli.Get(ctx, s.keys.History(mac), clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return err
	}
	extra := len(resp.Kvs) - s.cfg.EventsKept
	if extra <= 0 {
		return nil
	}
	// Every key before the first one kept.
	_, err = s.cli.Delete(ctx, s.keys.History(mac), clientv3.WithRange(string(resp.Kvs[extra].Key)))
	return err
}
