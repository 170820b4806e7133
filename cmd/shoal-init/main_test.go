package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"testing"
)

func TestRunHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &stdout, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("run(-h) = %v, want flag.ErrHelp", err)
	}
	if !bytes.Contains(stderr.Bytes(), []byte("-single-node")) {
		t.Errorf("usage lacks -single-node:\n%s", stderr.String())
	}
}
