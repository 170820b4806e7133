package partition

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// seedDisk writes l's table to a fresh file of sizeBytes and returns the
// disk's bytes.
func seedDisk(t testing.TB, l *Layout, sizeBytes int64) []byte {
	p := filepath.Join(t.TempDir(), "d")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(sizeBytes)
	if err := WriteTable(f, sizeBytes, l); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, sizeBytes)
	f.ReadAt(b, 0)
	return b
}

func FuzzReadLayout(f *testing.F) {
	const size = 64 << 10 // small inputs fuzz fast
	gptDisk := seedDisk(f, &Layout{Table: TableGPT, LogicalSectorBytes: 512, FirstUsableLBA: 34, Partitions: []Partition{
		{Number: 1, Name: "a", Type: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", StartLBA: 34, SizeBytes: 20 * 512},
		{Number: 3, Name: "b", Type: "0FC63DAF-8483-4772-8E79-3D69D8477DE4", StartLBA: 60, SizeBytes: 20 * 512, Grow: true},
	}}, size)
	mbrDisk := seedDisk(f, &Layout{Table: TableMBR, LogicalSectorBytes: 512, Partitions: []Partition{
		{Number: 1, Type: "0x83", StartLBA: 1, SizeBytes: 50 * 512, Bootable: true},
		{Number: 4, Type: "0x0c", StartLBA: 63, SizeBytes: 60 * 512},
	}}, size)
	f.Add(gptDisk)
	f.Add(mbrDisk)
	f.Add(make([]byte, 4096))
	broken := bytes.Clone(gptDisk)
	broken[512+40] = 0xff // first usable LBA
	f.Add(broken)
	f.Fuzz(func(t *testing.T, b []byte) {
		n := int64(len(b)) / 512 * 512
		l, err := ReadLayout(bytes.NewReader(b[:n]), n, 512)
		if err != nil {
			return
		}
		if err := l.Validate(); err != nil {
			t.Fatalf("ReadLayout returned a layout that does not validate: %v", err)
		}
	})
}
