// ext.go: the block bitmaps of ext2, ext3 and ext4.

package fsalloc

import (
	"encoding/binary"
	"io"
	"math/bits"
	"sort"
)

// ext feature flags this reader acts on (see the kernel's fs/ext4/ext4.h).
const (
	extCompatSparseSuper2 = 0x200

	extIncompatCompression = 0x1
	extIncompatRecover     = 0x4
	extIncompatJournalDev  = 0x8
	extIncompatMetaBG      = 0x10
	extIncompatExtents     = 0x40
	extIncompat64Bit       = 0x80
	extIncompatFlexBG      = 0x200

	extROCompatSparseSuper  = 0x1
	extROCompatGDTCsum      = 0x10
	extROCompatBigalloc     = 0x200
	extROCompatMetadataCsum = 0x400

	extCompatHasJournal = 0x4

	extStateValid = 0x1
	extStateError = 0x2

	extBGBlockUninit = 0x2

	extMagic = 0xEF53
)

// extSuper is the part of an ext superblock this reader uses.
type extSuper struct {
	blocksCount      uint64
	firstDataBlock   uint64
	blockBytes       int64
	blocksPerGroup   uint64
	inodesPerGroup   uint64
	inodeBytes       uint64
	state            uint16
	compat, incompat uint32
	roCompat         uint32
	reservedGDT      uint64
	descBytes        int64
}

func (s *extSuper) name() string {
	switch {
	case s.incompat&(extIncompatExtents|extIncompat64Bit|extIncompatFlexBG) != 0 || s.roCompat&extROCompatMetadataCsum != 0:
		return "ext4"
	case s.compat&extCompatHasJournal != 0:
		return "ext3"
	}
	return "ext2"
}

// readExt maps an ext2/3/4 file system: a block is free when its group's
// bitmap says so, or, for a group whose bitmap was never initialised
// (BLOCK_UNINIT), when it holds none of the file system's metadata.
func readExt(r io.ReaderAt, sizeBytes int64) (*Map, error) {
	if sizeBytes < 2048 {
		return nil, ErrUnknown
	}
	b := make([]byte, 1024)
	if err := readFull(r, b, 1024, "ext superblock"); err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	if le.Uint16(b[0x38:]) != extMagic {
		return nil, ErrUnknown
	}
	s := extSuper{
		blocksCount:    uint64(le.Uint32(b[0x04:])),
		firstDataBlock: uint64(le.Uint32(b[0x14:])),
		blocksPerGroup: uint64(le.Uint32(b[0x20:])),
		inodesPerGroup: uint64(le.Uint32(b[0x28:])),
		inodeBytes:     128,
		state:          le.Uint16(b[0x3A:]),
		compat:         le.Uint32(b[0x5C:]),
		incompat:       le.Uint32(b[0x60:]),
		roCompat:       le.Uint32(b[0x64:]),
		reservedGDT:    uint64(le.Uint16(b[0xCE:])),
		descBytes:      32,
	}
	logBlock := le.Uint32(b[0x18:])
	if le.Uint32(b[0x4C:]) >= 1 { // dynamic revision: the fields below are set
		s.inodeBytes = uint64(le.Uint16(b[0x58:]))
	} else {
		s.compat, s.incompat, s.roCompat, s.reservedGDT = 0, 0, 0, 0
	}
	fs := s.name()
	if logBlock > 6 {
		return nil, unsupported(fs, "block size 2^(10+%d)", logBlock)
	}
	s.blockBytes = 1024 << logBlock
	if s.incompat&extIncompat64Bit != 0 {
		s.blocksCount |= uint64(le.Uint32(b[0x150:])) << 32
		s.descBytes = int64(le.Uint16(b[0xFE:]))
		if s.descBytes < 64 || s.descBytes > 1024 || bits.OnesCount64(uint64(s.descBytes)) != 1 {
			return nil, unsupported(fs, "group descriptor size %d", s.descBytes)
		}
	}
	switch {
	case s.state&extStateValid == 0 || s.state&extStateError != 0:
		return nil, unsupported(fs, "not cleanly unmounted or has errors (state %#x): run e2fsck first", s.state)
	case s.incompat&extIncompatRecover != 0:
		return nil, unsupported(fs, "its journal needs recovery (mounted, or not cleanly unmounted): run e2fsck first")
	case s.incompat&extIncompatJournalDev != 0:
		return nil, unsupported(fs, "an external journal device")
	case s.incompat&extIncompatCompression != 0:
		return nil, unsupported(fs, "compression")
	case s.roCompat&extROCompatBigalloc != 0:
		return nil, unsupported(fs, "bigalloc")
	case s.incompat&extIncompatMetaBG != 0:
		return nil, unsupported(fs, "meta_bg")
	case s.compat&extCompatSparseSuper2 != 0:
		return nil, unsupported(fs, "sparse_super2")
	}
	blockBytes := uint64(s.blockBytes)
	if s.blocksPerGroup == 0 || s.blocksPerGroup > 8*blockBytes || s.blocksCount <= s.firstDataBlock ||
		s.firstDataBlock > 1 || s.inodesPerGroup == 0 || s.inodeBytes < 128 || s.inodeBytes > blockBytes {
		return nil, unsupported(fs, "superblock out of range (blocks %d per group %d, first %d, inodes per group %d of %d bytes)",
			s.blocksCount, s.blocksPerGroup, s.firstDataBlock, s.inodesPerGroup, s.inodeBytes)
	}
	if s.blocksCount > uint64(sizeBytes)/blockBytes {
		return nil, unsupported(fs, "%d blocks of %d bytes do not fit the partition's %d bytes", s.blocksCount, blockBytes, sizeBytes)
	}
	groups := (s.blocksCount - s.firstDataBlock + s.blocksPerGroup - 1) / s.blocksPerGroup
	descs := make([]byte, groups*uint64(s.descBytes))
	gdtBlocks := (uint64(len(descs)) + blockBytes - 1) / blockBytes
	if err := readFull(r, descs, int64((s.firstDataBlock+1)*blockBytes), fs+" group descriptors"); err != nil {
		return nil, err
	}
	return s.mapGroups(r, fs, groups, gdtBlocks, descs)
}

// extGroup is a group descriptor's metadata blocks.
type extGroup struct {
	blockBitmap, inodeBitmap, inodeTable uint64
	flags                                uint16
}

func (s *extSuper) group(descs []byte, g uint64) extGroup {
	le := binary.LittleEndian
	d := descs[g*uint64(s.descBytes):]
	e := extGroup{
		blockBitmap: uint64(le.Uint32(d[0x00:])),
		inodeBitmap: uint64(le.Uint32(d[0x04:])),
		inodeTable:  uint64(le.Uint32(d[0x08:])),
		flags:       le.Uint16(d[0x12:]),
	}
	if s.descBytes >= 64 {
		e.blockBitmap |= uint64(le.Uint32(d[0x20:])) << 32
		e.inodeBitmap |= uint64(le.Uint32(d[0x24:])) << 32
		e.inodeTable |= uint64(le.Uint32(d[0x28:])) << 32
	}
	if s.roCompat&(extROCompatGDTCsum|extROCompatMetadataCsum) == 0 {
		e.flags = 0 // the flags mean something only with group checksums
	}
	return e
}

// hasSuper reports whether group g holds a superblock backup.
func (s *extSuper) hasSuper(g uint64) bool {
	if g <= 1 || s.roCompat&extROCompatSparseSuper == 0 {
		return true
	}
	for _, p := range []uint64{3, 5, 7} {
		n := p
		for n < g {
			n *= p
		}
		if n == g {
			return true
		}
	}
	return false
}

func (s *extSuper) mapGroups(r io.ReaderAt, fs string, groups, gdtBlocks uint64, descs []byte) (*Map, error) {
	itableBlocks := (s.inodesPerGroup*s.inodeBytes + uint64(s.blockBytes) - 1) / uint64(s.blockBytes)
	// Every group's metadata, wherever flex_bg put it, is used.
	meta := make([][2]uint64, 0, 3*groups)
	for g := range groups {
		e := s.group(descs, g)
		for _, m := range [][2]uint64{{e.blockBitmap, 1}, {e.inodeBitmap, 1}, {e.inodeTable, itableBlocks}} {
			if m[0] < s.firstDataBlock || m[0] >= s.blocksCount || m[1] > s.blocksCount-m[0] {
				return nil, unsupported(fs, "group %d: metadata block %d (+%d) outside the file system", g, m[0], m[1])
			}
			meta = append(meta, m)
		}
	}
	sort.Slice(meta, func(i, j int) bool { return meta[i][0] < meta[j][0] })
	out := runs{blockBytes: s.blockBytes}
	bitmap := make([]byte, s.blockBytes)
	used := make([]bool, s.blocksPerGroup)
	for g := range groups {
		first := s.firstDataBlock + g*s.blocksPerGroup
		n := min(s.blocksPerGroup, s.blocksCount-first)
		e := s.group(descs, g)
		if e.flags&extBGBlockUninit != 0 {
			clear(used)
		} else {
			if err := readFull(r, bitmap, int64(e.blockBitmap)*s.blockBytes, fs+" block bitmap"); err != nil {
				return nil, err
			}
			for i := range n {
				used[i] = bitmap[i/8]&(1<<(i%8)) != 0
			}
		}
		if s.hasSuper(g) {
			for i := range min(n, 1+gdtBlocks+s.reservedGDT) {
				used[i] = true
			}
		}
		// Only entries starting within an inode table's length before the
		// group can reach into it.
		k := sort.Search(len(meta), func(i int) bool { return meta[i][0]+itableBlocks > first })
		for _, m := range meta[k:] {
			if m[0] >= first+n {
				break
			}
			for blk := max(m[0], first); blk < min(m[0]+m[1], first+n); blk++ {
				used[blk-first] = true
			}
		}
		run := uint64(0)
		for i := range n {
			if !used[i] {
				run++
				continue
			}
			out.add(int64(first+i-run), int64(run))
			run = 0
		}
		out.add(int64(first+n-run), int64(run))
	}
	return &Map{FS: fs, BlockBytes: s.blockBytes, SizeBytes: int64(s.blocksCount) * s.blockBytes, Free: out.out}, nil
}
