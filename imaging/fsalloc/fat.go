// fat.go: the allocation tables of FAT12, FAT16 and FAT32.

package fsalloc

import (
	"encoding/binary"
	"io"
	"math/bits"
)

// readFAT maps a FAT file system: the boot sector, reserved sectors,
// tables and FAT12/16 root directory are used; a data cluster is free
// when its entry in the first table is 0.
func readFAT(r io.ReaderAt, sizeBytes int64) (*Map, error) {
	if sizeBytes < 512 {
		return nil, ErrUnknown
	}
	b := make([]byte, 512)
	if err := readFull(r, b, 0, "boot sector"); err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	if (b[0] != 0xEB && b[0] != 0xE9) || b[510] != 0x55 || b[511] != 0xAA {
		return nil, ErrUnknown
	}
	sectorBytes := int64(le.Uint16(b[0x0B:]))
	perCluster := int64(b[0x0D])
	reserved := int64(le.Uint16(b[0x0E:]))
	tables := int64(b[0x10])
	rootEntries := int64(le.Uint16(b[0x11:]))
	total := int64(le.Uint16(b[0x13:]))
	if total == 0 {
		total = int64(le.Uint32(b[0x20:]))
	}
	tableSectors := int64(le.Uint16(b[0x16:]))
	if tableSectors == 0 {
		tableSectors = int64(le.Uint32(b[0x24:]))
	}
	switch {
	case sectorBytes < 512 || sectorBytes > 4096 || bits.OnesCount64(uint64(sectorBytes)) != 1,
		perCluster == 0 || bits.OnesCount64(uint64(perCluster)) != 1,
		reserved == 0, tables == 0, tableSectors == 0, total == 0:
		// Not a FAT boot sector (an NTFS or exFAT one, a boot loader).
		return nil, ErrUnknown
	}
	rootSectors := (rootEntries*32 + sectorBytes - 1) / sectorBytes
	dataStart := reserved + tables*tableSectors + rootSectors
	if total > sizeBytes/sectorBytes || dataStart >= total {
		return nil, unsupported("fat", "%d sectors of %d bytes (data from sector %d) do not fit the partition's %d bytes", total, sectorBytes, dataStart, sizeBytes)
	}
	clusters := (total - dataStart) / perCluster
	fs, entryBits := "fat32", int64(32)
	switch {
	case clusters < 4085:
		fs, entryBits = "fat12", 12
	case clusters < 65525:
		fs, entryBits = "fat16", 16
	}
	if (fs == "fat32") != (rootEntries == 0) {
		return nil, unsupported(fs, "%d root directory entries", rootEntries)
	}
	if (clusters+2)*entryBits > tableSectors*sectorBytes*8 {
		return nil, unsupported(fs, "a table of %d sectors is too short for %d clusters", tableSectors, clusters)
	}
	table := make([]byte, ((clusters+2)*entryBits+7)/8)
	if err := readFull(r, table, reserved*sectorBytes, fs+" table"); err != nil {
		return nil, err
	}
	clusterBytes := perCluster * sectorBytes
	out := runs{blockBytes: clusterBytes}
	// Cluster c (from 2) starts at dataStart + (c-2)*perCluster sectors;
	// the runs are counted in clusters from the data area's start, which
	// need not be a whole number of clusters from the partition's.
	run := int64(0)
	for c := int64(2); c < clusters+2; c++ {
		if fatEntry(table, c, entryBits) == 0 {
			run++
			continue
		}
		out.add(c-2-run, run)
		run = 0
	}
	out.add(clusters-run, run)
	base := dataStart * sectorBytes
	for i := range out.out {
		out.out[i].OffsetBytes += base
	}
	return &Map{FS: fs, BlockBytes: clusterBytes, SizeBytes: total * sectorBytes, Free: out.out}, nil
}

// fatEntry returns entry c of a table of entryBits-bit entries.
func fatEntry(table []byte, c, entryBits int64) uint32 {
	le := binary.LittleEndian
	switch entryBits {
	case 12:
		v := uint32(le.Uint16(table[c*3/2:]))
		if c%2 == 1 {
			return v >> 4
		}
		return v & 0xFFF
	case 16:
		return uint32(le.Uint16(table[c*2:]))
	}
	return le.Uint32(table[c*4:]) & 0x0FFFFFFF
}
