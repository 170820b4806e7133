package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
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
