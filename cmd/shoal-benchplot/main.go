// Command shoal-benchplot draws the plot of a `shoal bench` run from its
// JSON figures (the --json file; docs/bench.json is one): seconds until
// every receiver is done against receivers, one line per tool and loss rate.
//
//	go run ./cmd/shoal-benchplot [-o bench.png] bench.json
//
// The output format follows -o's extension (png, svg, pdf, eps); the
// default is the JSON file's name with .png. It is a command of its own so
// that the shoal binary does not carry gonum/plot and its fonts.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/shoal-project/shoal/internal/bench"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "shoal-benchplot:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("shoal-benchplot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "write the plot here (default: the JSON file's name with .png)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("want one argument: the JSON file of shoal bench --json")
	}
	in := fs.Arg(0)
	rep, err := readReport(in)
	if err != nil {
		return err
	}
	if *out == "" {
		*out = strings.TrimSuffix(in, ".json") + ".png"
	}
	if err := plotReport(rep, *out); err != nil {
		return fmt.Errorf("plot %s: %w", *out, err)
	}
	fmt.Fprintf(stdout, "plot: %s\n", *out)
	return nil
}

// readReport reads the JSON figures of a `shoal bench` run (not of
// `shoal bench --session`, whose results have no tool).
func readReport(path string) (*bench.Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read bench figures: %w", err)
	}
	var rep bench.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if rep.SizeBytes <= 0 || rep.RateBitsPerSec <= 0 || len(rep.Results) == 0 {
		return nil, fmt.Errorf("%s: not the figures of a shoal bench run (no size, rate or results)", path)
	}
	for i, res := range rep.Results {
		if res.Tool == "" {
			return nil, fmt.Errorf("%s: result %d has no tool (the figures of shoal bench --session have no plot)", path, i)
		}
	}
	return &rep, nil
}
