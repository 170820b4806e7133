// main_test.go checks mkdebian's flags and that it prints the cached image's path.
package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/internal/debianimg"
	"github.com/shoal-project/shoal/internal/testdisk"
)

func TestRunRefusesBadInput(t *testing.T) {
	for _, args := range [][]string{{"-variant", "bogus"}, {"extra"}, {"-nosuchflag"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if err := run(context.Background(), args, &out, &errb); err == nil {
				t.Fatalf("run %q succeeded", args)
			}
			if out.Len() != 0 {
				t.Errorf("printed %q on a usage error", out.String())
			}
		})
	}
}

func TestRunPrintsPath(t *testing.T) {
	testdisk.NeedRoot(t)
	testdisk.Need(t, debianimg.Tools...)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	for _, v := range debianimg.Variants {
		t.Run(string(v), func(t *testing.T) {
			var out, errb bytes.Buffer
			if err := run(ctx, []string{"-variant", string(v)}, &out, &errb); err != nil {
				t.Fatalf("%v\n%s", err, errb.String())
			}
			path := strings.TrimSpace(out.String())
			want, err := debianimg.Path(ctx, debianimg.Options{Variant: v})
			if err != nil {
				t.Fatal(err)
			}
			if path != want {
				t.Errorf("printed %q, want %q", path, want)
			}
			if st, err := os.Stat(path); err != nil || st.Size() != debianimg.DiskBytes {
				t.Errorf("image %s: %v", path, err)
			}
		})
	}
}
