package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/initramfs/appliance"
)

func TestRunHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &stdout, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("run(-h) = %v, want flag.ErrHelp", err)
	}
	if !bytes.Contains(stderr.Bytes(), []byte("-single-node")) {
		t.Errorf("usage lacks -single-node:\n%s", stderr.String())
	}
	// The flags' defaults are the appliance's.
	d := appliance.DefaultOptions()
	for _, want := range []string{`(default "` + d.Cmdline + `")`, `(default "` + d.ModulesDir + `")`, `(default "` + d.PubKey + `")`,
		"(default " + d.ConfWait.String() + ")", "(default " + d.DiskWait.String() + ")"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("usage lacks %s:\n%s", want, stderr.String())
		}
	}
}
