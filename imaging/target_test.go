package imaging

import (
	"testing"

	"github.com/shoal-project/shoal/partition"
)

func openTestTarget(img *Image, path string) (*partition.Target, error) {
	return partition.OpenTarget(path, img.Requirements(), partition.TargetOptions{})
}

// newTestWriter opens a target file at dst for img and a writer on it.
func newTestWriter(t *testing.T, img *Image, dst string) *Writer {
	t.Helper()
	tg, err := openTestTarget(img, dst)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	w, err := NewWriter(img, tg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return w
}
