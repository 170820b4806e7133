package imaging

import (
	"crypto/sha256"
	"fmt"
	"io"
)

// ReadPlain appends chunk i's uncompressed bytes, read back from the
// target (or, for a chunk of the commit region, from the copy the writer
// holds until Finish), to dst[:0]. The chunk must have been written (Has(i)); the bytes
// are checked against the manifest's hash again, so a disk that returns
// something else is an error wrapping ErrCorrupt. A peer that leads a
// session serves the chunks it holds from here.
func (w *Writer) ReadPlain(i int, dst []byte) ([]byte, error) {
	ref, err := w.ref(i)
	if err != nil {
		return dst[:0], err
	}
	if !w.Has(i) {
		return dst[:0], fmt.Errorf("chunk %d: not written yet", i)
	}
	w.mu.Lock()
	held, ok := w.held[i]
	w.mu.Unlock()
	if ok {
		// Verified when it came; not on the disk until Finish.
		return append(dst[:0], held...), nil
	}
	if int64(cap(dst)) < ref.SizeBytes {
		dst = make([]byte, ref.SizeBytes)
	}
	dst = dst[:ref.SizeBytes]
	if _, err := w.t.File.ReadAt(dst, ref.OffsetBytes); err != nil && err != io.EOF {
		return dst[:0], fmt.Errorf("read chunk %d back from %s: %w", i, w.t.Path, err)
	}
	if Hash(sha256.Sum256(dst)) != ref.Hash {
		return dst[:0], fmt.Errorf("chunk %d read back from %s: %w", i, w.t.Path, ErrCorrupt)
	}
	return dst, nil
}
