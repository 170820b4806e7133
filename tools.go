//go:build tools

// This file keeps build-time modules (u-root's commands and mkuimage, which
// build the appliance's initramfs, and staticcheck) in go.mod so that builds
// are reproducible and offline once the module cache is warm.
package tools

import (
	_ "github.com/u-root/mkuimage/cmd/mkuimage"
	_ "github.com/u-root/u-root/cmds/core/gosh"
	_ "github.com/u-root/u-root/cmds/core/init"
	_ "honnef.co/go/tools/cmd/staticcheck"
)
