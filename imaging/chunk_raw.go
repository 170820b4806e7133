package imaging

// chunk_raw.go: chunks stored as zstd frames of raw blocks (incompressible data), verified and written without a decoder's copy.

import (
	"crypto/sha256"
	"encoding/binary"
)

// zstdMagic starts every zstd frame (little endian).
const zstdMagic = 0xFD2FB528

// maxRawBlockBytes is the largest block zstd allows.
const maxRawBlockBytes = 128 << 10

// rawBlocks appends to dst the contents of stored's blocks when stored is
// exactly one zstd frame all of whose blocks are raw (what the encoder
// makes of incompressible data, and so of most of a disk's data): the
// chunk's bytes are then those blocks, in order. ok is false for anything
// else (a compressed or RLE block, a dictionary, several frames, anything
// malformed), which is the decoder's to handle. The frame's own checksum,
// when it has one, is not checked: the chunk's SHA-256 is.
func rawBlocks(dst [][]byte, stored []byte) (_ [][]byte, ok bool) {
	if len(stored) < 5 || binary.LittleEndian.Uint32(stored) != zstdMagic {
		return dst, false
	}
	fhd := stored[4]
	b := stored[5:]
	if fhd&0x08 != 0 || fhd&0x03 != 0 {
		return dst, false // the reserved bit, or a dictionary
	}
	single := fhd&0x20 != 0
	skip := [4]int{0, 2, 4, 8}[fhd>>6] // frame content size
	if fhd>>6 == 0 && single {
		skip = 1
	}
	if !single {
		skip++ // window descriptor
	}
	if len(b) < skip {
		return dst, false
	}
	b = b[skip:]
	for {
		if len(b) < 3 {
			return dst, false
		}
		h := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
		last, typ, size := h&1 != 0, (h>>1)&3, int(h>>3)
		b = b[3:]
		if typ != 0 || size > maxRawBlockBytes || size > len(b) {
			return dst, false
		}
		if size > 0 {
			dst = append(dst, b[:size])
		}
		b = b[size:]
		if last {
			break
		}
	}
	if fhd&0x04 != 0 {
		if len(b) < 4 {
			return dst, false
		}
		b = b[4:] // content checksum
	}
	return dst, len(b) == 0
}

// writeRaw verifies and writes chunk ref from its stored bytes without
// decoding them into a buffer, when they are a frame of raw blocks: the
// blocks are hashed in place and, when the hash is the manifest's, written
// from where they are. done is false when it did nothing: the stored bytes
// are not such a frame, or do not verify (the decoder then says why).
func (w *Writer) writeRaw(ref ChunkRef, stored []byte) (done bool, err error) {
	if int64(len(stored)) != ref.StoredBytes {
		return false, nil
	}
	var arr [40][]byte // a 4 MiB chunk has 32 blocks
	parts, ok := rawBlocks(arr[:0], stored)
	if !ok {
		return false, nil
	}
	var n int64
	for _, p := range parts {
		n += int64(len(p))
	}
	if n != ref.SizeBytes {
		return false, nil
	}
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	var sum Hash
	h.Sum(sum[:0])
	if sum != ref.Hash {
		return false, nil
	}
	return true, w.writeParts(ref, parts)
}
