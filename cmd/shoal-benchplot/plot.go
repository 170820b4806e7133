// plot.go: drawing the seconds of each tool against receivers with gonum/plot.
package main

import (
	"fmt"
	"image/color"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/shoal-project/shoal/internal/bench"
)

// plotReport draws seconds against receivers, one line per tool and loss rate,
// into a PNG (or any format gonum/plot knows from the extension).
func plotReport(r *bench.Report, path string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%d MiB image, %.0f Mbit/s links", r.SizeBytes>>20, float64(r.RateBitsPerSec)/1e6)
	p.X.Label.Text = "receivers"
	p.Y.Label.Text = "seconds until every receiver is done"
	p.Legend.Top = true
	p.Legend.Left = true
	type key struct {
		tool string
		loss int
	}
	lines := map[key]plotter.XYs{}
	var keys []key
	for _, res := range r.Results {
		if !res.OK {
			continue
		}
		k := key{res.Tool, res.LossPermille}
		if _, ok := lines[k]; !ok {
			keys = append(keys, k)
		}
		lines[k] = append(lines[k], plotter.XY{X: float64(res.Receivers), Y: res.Seconds})
	}
	for _, k := range keys {
		xy := lines[k]
		sort.Slice(xy, func(a, b int) bool { return xy[a].X < xy[b].X })
		l, pts, err := plotter.NewLinePoints(xy)
		if err != nil {
			return err
		}
		c := plotutil.Color(toolIndex(k.tool))
		l.Color, pts.Color = c, c
		if k.loss > 0 {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(l, pts)
		p.Legend.Add(fmt.Sprintf("%s, %.1f%% loss", k.tool, float64(k.loss)/10), l, pts)
	}
	// The ideal: the image at the full link rate.
	ideal := float64(r.SizeBytes*8) / float64(r.RateBitsPerSec)
	if len(keys) > 0 {
		fn := plotter.NewFunction(func(float64) float64 { return ideal })
		fn.Color = color.Gray{Y: 128}
		fn.Dashes = []vg.Length{vg.Points(1), vg.Points(2)}
		p.Add(fn)
		p.Legend.Add("image at link rate", fn)
	}
	p.Y.Min = 0
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

func toolIndex(tool string) int {
	for i, t := range bench.Tools {
		if t == tool {
			return i
		}
	}
	return len(bench.Tools)
}
