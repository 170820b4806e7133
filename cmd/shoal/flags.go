package main

import (
	"flag"
	"strconv"

	"github.com/shoal-project/shoal/internal/units"
)

// parseInterspersed parses fs over args, allowing flags after positional
// arguments, and returns the positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// bytesFlag is a flag.Value holding a byte size (units.ParseBytes).
type bytesFlag struct{ n *int64 }

func (b bytesFlag) String() string {
	if b.n == nil {
		return ""
	}
	return strconv.FormatInt(*b.n, 10)
}

func (b bytesFlag) Set(s string) error {
	n, err := units.ParseBytes(s)
	if err != nil {
		return err
	}
	*b.n = n
	return nil
}
