// sync.go keeps the cache current: a load of the machines and statuses,
// then a watch from the revision loaded; on a watch that ends (compacted,
// canceled) the load starts again.

package etcdstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// load reads every machine and status at one revision into the cache and
// returns that revision.
func (s *Store) load(ctx context.Context) (int64, error) {
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.keys.Machines(), clientv3.WithPrefix()),
		clientv3.OpGet(s.keys.Statuses(), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return 0, fmt.Errorf("get %s*: %w", s.keys.Prefix, err)
	}
	known := map[string]*knownMachine{}
	status := map[string]StatusRecord{}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		if mac, k, ok := s.decodeMachine(kv); ok {
			known[mac] = k
		}
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		if mac, r, ok := s.decodeStatus(kv); ok {
			status[mac] = r
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// What this server changed and has not written yet stays as it is
	// here until the writer gets there.
	for _, q := range []queue{s.flushing, s.q} {
		for mac, op := range q.local {
			if k, ok := known[mac]; ok && k.Image == op.Image && k.Disk == op.Disk {
				k.Action = op.Action
			}
		}
		for mac, r := range q.status {
			status[mac] = newer(r, status[mac]) // ours, unless etcd has newer
		}
	}
	s.known, s.status = known, status
	for mac := range known {
		delete(s.admitted, mac)
	}
	return resp.Header.Revision, nil
}

// decodeMachine reads a machine key; a bad one is logged and left out.
func (s *Store) decodeMachine(kv *mvccpb.KeyValue) (string, *knownMachine, bool) {
	mac, err := MACOfKey(s.keys.Machines(), string(kv.Key))
	if err == nil {
		var r MachineRecord
		if r, err = DecodeMachine(kv.Value); err == nil {
			return mac, &knownMachine{MachineRecord: r, key: string(kv.Key), modRev: kv.ModRevision}, true
		}
	}
	s.log.Warn("inventory store: machine ignored", "key", string(kv.Key), "err", err)
	return "", nil, false
}

func (s *Store) decodeStatus(kv *mvccpb.KeyValue) (string, StatusRecord, bool) {
	mac, err := MACOfKey(s.keys.Statuses(), string(kv.Key))
	if err == nil {
		var r StatusRecord
		if r, err = DecodeStatus(kv.Value); err == nil {
			return mac, r, true
		}
	}
	s.log.Warn("inventory store: status ignored", "key", string(kv.Key), "err", err)
	return "", StatusRecord{}, false
}

// watchLoop applies the watch's events from rev+1 on until ctx is done;
// when the watch ends it loads again and watches from there.
func (s *Store) watchLoop(ctx context.Context, rev int64) {
	for ctx.Err() == nil {
		s.watch(ctx, rev)
		for ctx.Err() == nil {
			lctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
			r, err := s.load(lctx)
			cancel()
			if err == nil {
				rev = r
				break
			}
			s.setDown(err)
			select {
			case <-ctx.Done():
			case <-time.After(s.cfg.RetryInterval):
			}
		}
	}
}

// watch follows machines and statuses from rev+1 until the watch ends.
func (s *Store) watch(ctx context.Context, rev int64) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	machines := s.cli.Watch(wctx, s.keys.Machines(), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	statuses := s.cli.Watch(wctx, s.keys.Statuses(), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case resp, ok = <-machines:
		case resp, ok = <-statuses:
		}
		if !ok || resp.Canceled || resp.Err() != nil {
			if ctx.Err() == nil {
				s.log.Debug("inventory store: watch ended, loading again", "err", resp.Err())
			}
			return
		}
		s.apply(resp.Events)
	}
}

// apply updates the cache with a watch's events.
func (s *Store) apply(evs []*clientv3.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range evs {
		key := string(ev.Kv.Key)
		switch {
		case strings.HasPrefix(key, s.keys.Machines()):
			if ev.Type == clientv3.EventTypeDelete {
				if mac, err := MACOfKey(s.keys.Machines(), key); err == nil {
					delete(s.known, mac)
				}
				continue
			}
			if mac, k, ok := s.decodeMachine(ev.Kv); ok {
				s.known[mac] = k
				delete(s.admitted, mac)
			} else if mac, err := MACOfKey(s.keys.Machines(), key); err == nil {
				delete(s.known, mac) // as at a load: a bad value is no machine
			}
		case ev.Type == clientv3.EventTypePut:
			mac, r, ok := s.decodeStatus(ev.Kv)
			if !ok {
				continue
			}
			s.status[mac] = newer(s.status[mac], r)
		}
	}
}

// newer merges a status record read from etcd into the cache's: a write
// of ours coming back after a newer report or boot here does not take the
// cache back.
func newer(cur, got StatusRecord) StatusRecord {
	out := got
	if cur.LastReport.After(got.LastReport) {
		out.Status, out.LastReport, out.Server = cur.Status, cur.LastReport, cur.Server
	}
	if cur.LastBoot.After(got.LastBoot) {
		out.LastBoot = cur.LastBoot
	}
	if !cur.FirstSeen.IsZero() && (got.FirstSeen.IsZero() || cur.FirstSeen.Before(got.FirstSeen)) {
		out.FirstSeen = cur.FirstSeen
	}
	return out
}
