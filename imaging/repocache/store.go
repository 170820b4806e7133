package repocache

// store.go: the chunks on disk, in the repository's own layout, bounded by
// bytes with least-recently-used eviction of whole files.

import (
	"container/list"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/internal/atomicfile"
)

// store holds verified chunks under dir (dir/chunks/ab/abcd….zst). Only
// verified bytes are ever written there, and only by put (an atomic,
// durable write), so that a file present is a verified chunk.
type store struct {
	dir      string
	maxBytes int64

	mu        sync.Mutex
	lru       *list.List // of *entry, the most recently used first
	entries   map[imaging.Hash]*list.Element
	sizeBytes int64 // the sum of the entries' sizes
}

type entry struct {
	hash      imaging.Hash
	sizeBytes int64
}

// openStore indexes the chunks already in dir (oldest modification first
// in the LRU order) and evicts down to maxBytes.
func openStore(dir string, maxBytes int64) (*store, []entry, error) {
	s := &store{dir: dir, maxBytes: maxBytes, lru: list.New(), entries: map[imaging.Hash]*list.Element{}}
	if err := os.MkdirAll(filepath.Join(dir, "chunks"), 0o755); err != nil {
		return nil, nil, fmt.Errorf("cache dir: %w", err)
	}
	type found struct {
		e   entry
		mod time.Time
	}
	var all []found
	root := filepath.Join(dir, "chunks")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		h, ok := parseChunkPath(filepath.ToSlash(strings.TrimPrefix(path, dir+string(filepath.Separator))))
		if !ok {
			// atomicfile's temporary files of a write cut short, and
			// anything else: not a verified chunk.
			return os.Remove(path)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		all = append(all, found{entry{h, fi.Size()}, fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("cache dir: index: %w", err)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mod.After(all[j].mod) })
	for _, f := range all {
		s.entries[f.e.hash] = s.lru.PushBack(&entry{f.e.hash, f.e.sizeBytes})
		s.sizeBytes += f.e.sizeBytes
	}
	s.mu.Lock()
	evicted, err := s.evictLocked(nil)
	s.mu.Unlock()
	return s, evicted, err
}

func (s *store) path(h imaging.Hash) string {
	return filepath.Join(s.dir, filepath.FromSlash(imaging.ChunkPath(h)))
}

// open returns the stored chunk h (marking it used), or ok false. The
// file stays readable when it is evicted while open.
func (s *store) open(h imaging.Hash) (f *os.File, ok bool) {
	s.mu.Lock()
	el, ok := s.entries[h]
	if ok {
		s.lru.MoveToFront(el)
	}
	s.mu.Unlock()
	if !ok {
		return nil, false
	}
	f, err := os.Open(s.path(h))
	if err != nil {
		// Removed behind the cache's back: forget it.
		s.mu.Lock()
		if el, ok := s.entries[h]; ok {
			s.removeLocked(el)
		}
		s.mu.Unlock()
		return nil, false
	}
	return f, true
}

// errTooBig is put's answer for a chunk larger than the whole cache.
var errTooBig = errors.New("larger than the cache's bound")

// put stores verified chunk bytes under h and evicts the least recently
// used chunks until the store is within its bound; it returns those.
func (s *store) put(h imaging.Hash, stored []byte) ([]entry, error) {
	if int64(len(stored)) > s.maxBytes {
		return nil, fmt.Errorf("chunk %s: %d bytes: %w (%d bytes)", h, len(stored), errTooBig, s.maxBytes)
	}
	p := s.path(h)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("store chunk %s: %w", h, err)
	}
	if err := atomicfile.Write(p, stored, atomicfile.Options{}); err != nil {
		return nil, fmt.Errorf("store chunk %s: %w", h, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.entries[h]; ok {
		s.removeLocked(el)
	}
	el := s.lru.PushFront(&entry{h, int64(len(stored))})
	s.entries[h] = el
	s.sizeBytes += int64(len(stored))
	return s.evictLocked(el)
}

// evictLocked removes least recently used chunks, never keep, until the
// store is within its bound.
func (s *store) evictLocked(keep *list.Element) ([]entry, error) {
	var evicted []entry
	var errs []error
	for s.sizeBytes > s.maxBytes {
		el := s.lru.Back()
		if el == nil || el == keep {
			break
		}
		e := *el.Value.(*entry)
		s.removeLocked(el)
		if err := os.Remove(s.path(e.hash)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("evict chunk %s: %w", e.hash, err))
		}
		evicted = append(evicted, e)
	}
	return evicted, errors.Join(errs...)
}

// removeLocked forgets el (the file is the caller's business).
func (s *store) removeLocked(el *list.Element) {
	e := el.Value.(*entry)
	s.lru.Remove(el)
	delete(s.entries, e.hash)
	s.sizeBytes -= e.sizeBytes
}

// size returns the stored size of chunk h, if stored.
func (s *store) size(h imaging.Hash) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.entries[h]
	if !ok {
		return 0, false
	}
	return el.Value.(*entry).sizeBytes, true
}

// remove removes chunk h, if stored.
func (s *store) remove(h imaging.Hash) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.entries[h]
	if !ok {
		return nil
	}
	s.removeLocked(el)
	if err := os.Remove(s.path(h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove chunk %s: %w", h, err)
	}
	return nil
}

// stats returns the number of chunks stored and their bytes.
func (s *store) stats() (chunks int, sizeBytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len(), s.sizeBytes
}

// parseChunkPath parses "chunks/ab/abcd….zst" (lower-case hex, the
// folder the hash's first two digits).
func parseChunkPath(p string) (imaging.Hash, bool) {
	var h imaging.Hash
	rest, ok := strings.CutPrefix(p, "chunks/")
	if !ok || len(rest) != 3+2*len(h)+len(".zst") || rest[2] != '/' || !strings.HasSuffix(rest, ".zst") {
		return h, false
	}
	hexs := rest[3 : 3+2*len(h)]
	if hexs[:2] != rest[:2] || strings.ToLower(hexs) != hexs {
		return h, false
	}
	if err := h.UnmarshalText([]byte(hexs)); err != nil {
		return h, false
	}
	return h, true
}
