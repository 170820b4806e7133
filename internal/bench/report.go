package bench

import (
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"os"
	"sort"
	"text/tabwriter"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// WriteTable prints the results as a table.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "image %d MiB (%d bytes stored), links %.0f Mbit/s\n\n", r.SizeBytes>>20, r.StoredBytes, float64(r.RateBitsPerSec)/1e6)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tool\treceivers\tloss %\tseconds\tlink fraction\tegress/size\tduplicate\tok\t")
	for _, res := range r.Results {
		ok := "yes"
		if !res.OK {
			ok = "NO: " + res.Error
			if len(ok) > 60 {
				ok = ok[:60] + "..."
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.2f\t%.3f\t%.3f\t%.3f\t%s\t\n", res.Tool, res.Receivers, float64(res.LossPermille)/10,
			res.Seconds, res.LinkFraction, res.EgressRatio, res.DuplicateFraction, ok)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if lj := r.LateJoin; lj != nil {
		if lj.OK {
			fmt.Fprintf(w, "\nshoal late joiner: started %.2fs after the sender, done in %.2fs; on-time receiver %.2fs; ratio %.3f\n",
				lj.JoinedAfter, lj.LateSeconds, lj.OnTimeSeconds, lj.Ratio)
		} else {
			fmt.Fprintf(w, "\nshoal late joiner: FAILED: %s\n", lj.Error)
		}
	}
	return nil
}

// WriteJSON writes the report as JSON to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Plot draws seconds against receivers, one line per tool and loss rate,
// into a PNG (or any format gonum/plot knows from the extension).
func (r *Report) Plot(path string) error {
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
	for i, t := range Tools {
		if t == tool {
			return i
		}
	}
	return len(Tools)
}
