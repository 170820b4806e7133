// report.go: what a bench run measured (Result, Report) and its table and JSON.
package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"
)

// Result is one run.
type Result struct {
	Tool         string  `json:"tool"`
	Receivers    int     `json:"receivers"`
	LossPermille int     `json:"lossPermille"`
	Seconds      float64 `json:"seconds"`
	// BitsPerSec is the image's bits over Seconds (start-up included).
	BitsPerSec float64 `json:"bitsPerSec"`
	// LinkFraction is BitsPerSec over the (nominal) link rate.
	LinkFraction float64 `json:"linkFraction"`
	// CeilingFraction is BitsPerSec over the platform's ceiling with as
	// many receivers (Report.Ceilings); unlimited runs only.
	CeilingFraction float64 `json:"ceilingFraction,omitempty"`
	// EgressBytes is what the server sent: its interface's bytes less
	// the Ethernet, IP and UDP (or TCP) headers.
	EgressBytes int64   `json:"egressBytes"`
	EgressRatio float64 `json:"egressRatio"` // EgressBytes / image's stored size
	// DuplicateFraction is what each receiver got beyond one copy of the
	// image (averaged), less what the emulated loss dropped, over the
	// image's size; it includes the tool's own headers.
	DuplicateFraction float64 `json:"duplicateFraction"`
	// RcvbufDrops counts datagrams the receivers' kernels dropped for a
	// full socket buffer (UDP RcvbufErrors); QdiscDrops what tc dropped on
	// every link (a sender faster than the link, or a receiver link
	// carrying more than its rate).
	RcvbufDrops int64 `json:"rcvbufDrops"`
	QdiscDrops  int64 `json:"qdiscDrops"`
	// ReceiverCPUSeconds and SenderCPUSeconds are the user+system CPU
	// time of the receiving processes (summed) and of the sender process,
	// from each process's own accounting (wait4's rusage; the kernel's
	// softirq work for the bridge is not in them). HTTP's sender is a
	// process of its own (Go's file server, `shoal bench --http-root`).
	ReceiverCPUSeconds float64 `json:"receiverCPUSeconds"`
	SenderCPUSeconds   float64 `json:"senderCPUSeconds"`
	// The same per GiB of image: the sender's, and the receivers' mean
	// and largest (each receiver got one image).
	SenderCPUSecondsPerGiB       float64 `json:"senderCPUSecondsPerGiB"`
	ReceiverCPUSecondsPerGiBMean float64 `json:"receiverCPUSecondsPerGiBMean"`
	ReceiverCPUSecondsPerGiBMax  float64 `json:"receiverCPUSecondsPerGiBMax"`
	// Detail is what the tool itself reported (shoal: the receivers'
	// summed counters).
	Detail string `json:"detail,omitempty"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
}

// LateJoinResult compares a receiver that joined half way with one that was
// there from the start.
type LateJoinResult struct {
	OnTimeSeconds float64 `json:"onTimeSeconds"`
	LateSeconds   float64 `json:"lateSeconds"` // from its start to its end
	JoinedAfter   float64 `json:"joinedAfterSeconds"`
	Ratio         float64 `json:"ratio"`
	OK            bool    `json:"ok"`
	Error         string  `json:"error,omitempty"`
}

// Report is everything a bench run measured.
type Report struct {
	SizeBytes   int64 `json:"sizeBytes"`
	StoredBytes int64 `json:"storedBytes"`
	// RateBitsPerSec is the links' rate; with Unlimited, the nominal rate
	// the link fractions are of (no tc holds the links to it).
	RateBitsPerSec int64     `json:"rateBitsPerSec"`
	Unlimited      bool      `json:"unlimited,omitempty"`
	MTU            int       `json:"mtu,omitempty"`
	Shaping        string    `json:"shaping,omitempty"`
	Started        time.Time `json:"started"`
	// Ceilings are the raw multicast blasts of unlimited runs, one per
	// receiver count.
	Ceilings []CeilingResult `json:"ceilings,omitempty"`
	// Write is the write baseline: dd of the image into the targets'
	// directory, the part of every receiver's CPU that is the platform's.
	Write           *WriteBaseline  `json:"write,omitempty"`
	Results         []Result        `json:"results"`
	LateJoin        *LateJoinResult `json:"lateJoin,omitempty"`
	ToolVersions    map[string]string
	srcSum          [32]byte
	src, repo, name string
}

func (res Result) line() string {
	s := fmt.Sprintf("%-8s rx=%d loss=%.1f%%: %7.2fs %6.3f Gbit/s  link %.3f  ceiling %.3f  egress %.3f  dup %.3f  drops rcvbuf %d qdisc %d  cpu rx %.1fs tx %.1fs, s/GiB tx %.2f rx mean %.2f max %.2f",
		res.Tool, res.Receivers, float64(res.LossPermille)/10, res.Seconds, res.BitsPerSec/1e9, res.LinkFraction, res.CeilingFraction,
		res.EgressRatio, res.DuplicateFraction, res.RcvbufDrops, res.QdiscDrops, res.ReceiverCPUSeconds, res.SenderCPUSeconds,
		res.SenderCPUSecondsPerGiB, res.ReceiverCPUSecondsPerGiBMean, res.ReceiverCPUSecondsPerGiBMax)
	if !res.OK {
		s += "  FAILED: " + res.Error
	}
	if res.Detail != "" {
		s += "\n    " + res.Detail
	}
	return s
}

// WriteTable prints the results as a table, the ceilings first.
func (r *Report) WriteTable(w io.Writer) error {
	links := fmt.Sprintf("links %.0f Mbit/s (%s)", float64(r.RateBitsPerSec)/1e6, shapingName(r.Shaping))
	if r.Unlimited {
		links = fmt.Sprintf("links unlimited (no tc; nominal %.0f Mbit/s)", float64(r.RateBitsPerSec)/1e6)
	}
	fmt.Fprintf(w, "image %d MiB (%d bytes stored), %s, MTU %d\n\n", r.SizeBytes>>20, r.StoredBytes, links, max(r.MTU, 1500))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tool\treceivers\tloss %\tseconds\tGbit/s\tlink fraction\tceiling fraction\ttx CPU s/GiB\trx CPU s/GiB mean\tmax\tegress/size\tduplicate\tok\t")
	for _, c := range r.Ceilings {
		frac := "-"
		if best := r.ceilingFor(c.Receivers); best > 0 && c.OK {
			frac = fmt.Sprintf("%.3f", c.BitsPerSec/best)
		}
		fmt.Fprintf(tw, "ceiling/%s\t%d\t%.1f\t%.2f\t%.3f\t%.3f\t%s\t%.2f\t%.2f\t%.2f\t-\t-\t%s\t\n", c.Method, c.Receivers, 0.0, c.Seconds, c.BitsPerSec/1e9, c.BitsPerSec/float64(r.RateBitsPerSec), frac,
			c.SenderCPUSecondsPerGiB, c.ReceiverCPUSecondsPerGiBMean, c.ReceiverCPUSecondsPerGiBMax, okText(c.OK, c.Error))
	}
	for _, res := range r.Results {
		ceiling := "-"
		if r.Unlimited {
			ceiling = fmt.Sprintf("%.3f", res.CeilingFraction)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.2f\t%.3f\t%.3f\t%s\t%.2f\t%.2f\t%.2f\t%.3f\t%.3f\t%s\t\n", res.Tool, res.Receivers, float64(res.LossPermille)/10,
			res.Seconds, res.BitsPerSec/1e9, res.LinkFraction, ceiling, res.SenderCPUSecondsPerGiB, res.ReceiverCPUSecondsPerGiBMean,
			res.ReceiverCPUSecondsPerGiBMax, res.EgressRatio, res.DuplicateFraction, okText(res.OK, res.Error))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if wb := r.Write; wb != nil && wb.Error == "" {
		fmt.Fprintf(w, "\nwrite baseline: dd of the image into a new file beside the targets: %.2f s, %.2f CPU s/GiB; receivers' CPU above it (s/GiB, mean):", wb.Seconds, wb.CPUSecondsPerGiB)
		for _, res := range r.Results {
			if res.OK {
				fmt.Fprintf(w, " %s rx=%d loss=%.1f%% %.2f;", res.Tool, res.Receivers, float64(res.LossPermille)/10, res.ReceiverCPUSecondsPerGiBMean-wb.CPUSecondsPerGiB)
			}
		}
		fmt.Fprintln(w)
	}
	if len(r.Ceilings) > 0 {
		fmt.Fprintln(w, "\nceiling: UDP multicast datagrams of MTU-28 bytes, no protocol, blasted by iperf2 (one per system call) and with UDP_SEGMENT (runs per call, as shoal sends); Gbit/s is UDP payload at the slowest receiver; the ceiling fraction is over the faster")
	}
	for _, c := range r.Ceilings {
		fmt.Fprintf(w, "  %s, %d receivers, %d-byte datagrams: sent %.3f Gbit/s, slowest receiver got %.3f Gbit/s (lost %.1f%%)\n",
			c.Method, c.Receivers, c.DatagramBytes, c.SentBitsPerSec/1e9, c.BitsPerSec/1e9, 100*c.LossFraction)
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

func okText(ok bool, errText string) string {
	if ok {
		return "yes"
	}
	s := "NO: " + errText
	if len(s) > 60 {
		s = s[:60] + "..."
	}
	return s
}

// shapingName is a report's shaping; reports from before it was recorded had tbf.
func shapingName(shaping string) string {
	if shaping == "" {
		return "tbf"
	}
	return shaping
}

// WriteJSON writes the report as JSON to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
