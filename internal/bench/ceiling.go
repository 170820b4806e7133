// ceiling.go: the platform's ceiling: iperf2 blasting raw UDP multicast through the same namespaces.
package bench

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-project/shoal/internal/netlab"
)

// CeilingNeed are the programs the ceiling run needs (Debian's iperf is
// iperf2, which does multicast UDP).
var CeilingNeed = []string{"iperf"}

// Ceiling methods.
const (
	CeilingIperf = "iperf2"
	CeilingGSO   = "gso"
)

// ceilingGroup is the multicast group the blast goes to.
const ceilingGroup = "239.1.2.3"

// CeilingResult is the platform's ceiling for a receiver count: iperf2
// sending UDP multicast datagrams of the tools' size (MTU - 28) as fast as
// it can for Seconds, with no protocol, from node 0 to every receiver, on
// the unlimited LAN the tools run on.
type CeilingResult struct {
	// Method is how it was blasted: CeilingIperf (one datagram per system
	// call) or CeilingGSO (runs of datagrams per UDP_SEGMENT send, as
	// shoal's sender does). A tool's ceiling fraction is over the faster.
	Method        string  `json:"method"`
	Receivers     int     `json:"receivers"`
	DatagramBytes int     `json:"datagramBytes"`
	Seconds       float64 `json:"seconds"`
	// SentBitsPerSec is the UDP payload the sender sent (its report);
	// BitsPerSec the payload the slowest receiver got (the ceiling), and
	// ReceiverBitsPerSec each receiver's.
	SentBitsPerSec     float64   `json:"sentBitsPerSec"`
	BitsPerSec         float64   `json:"bitsPerSec"`
	ReceiverBitsPerSec []float64 `json:"receiverBitsPerSec"`
	// LossFraction is the slowest receiver's lost datagrams over those sent.
	LossFraction float64 `json:"lossFraction"`
	// CPU (wait4's rusage) per GiB the sender sent and each receiver got.
	SenderCPUSecondsPerGiB       float64 `json:"senderCPUSecondsPerGiB"`
	ReceiverCPUSecondsPerGiBMean float64 `json:"receiverCPUSecondsPerGiBMean"`
	ReceiverCPUSecondsPerGiBMax  float64 `json:"receiverCPUSecondsPerGiBMax"`
	OK                           bool    `json:"ok"`
	Error                        string  `json:"error,omitempty"`
}

// iperfReport is one line of iperf2's CSV report (-y C).
type iperfReport struct {
	seconds     float64
	bytes       int64
	bitsPerSec  float64
	lost, total int64 // UDP server reports only
}

var intervalField = regexp.MustCompile(`^(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$`)

// parseIperfCSV reads the last report line of iperf2's `-y C` output:
// time,local addr,port,remote addr,port,id,START-END,bytes,bits/s and, from
// a UDP server, jitter,lost,total,percent,out of order.
func parseIperfCSV(out string) (iperfReport, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		f := strings.Split(strings.TrimSpace(lines[i]), ",")
		for j, field := range f {
			m := intervalField.FindStringSubmatch(field)
			if m == nil || j+2 >= len(f) {
				continue
			}
			var rep iperfReport
			from, err1 := strconv.ParseFloat(m[1], 64)
			to, err2 := strconv.ParseFloat(m[2], 64)
			b, err3 := strconv.ParseInt(f[j+1], 10, 64)
			bps, err4 := strconv.ParseFloat(f[j+2], 64)
			if err := errors.Join(err1, err2, err3, err4); err != nil {
				return iperfReport{}, fmt.Errorf("iperf report %q: %w", lines[i], err)
			}
			rep.seconds, rep.bytes, rep.bitsPerSec = to-from, b, bps
			if j+5 < len(f) {
				rep.lost, _ = strconv.ParseInt(f[j+4], 10, 64)
				rep.total, _ = strconv.ParseInt(f[j+5], 10, 64)
			}
			return rep, nil
		}
	}
	return iperfReport{}, fmt.Errorf("no iperf report in %q", lastLines(out, 3))
}

// ceiling blasts for cfg.CeilingDuration from node 0 to n receivers.
func (r *Report) ceiling(ctx context.Context, cfg Config, n int) (res CeilingResult) {
	res = CeilingResult{Method: CeilingIperf, Receivers: n, DatagramBytes: cfg.MTU - 28}
	err := func() error {
		ctx, cancel := context.WithTimeout(ctx, cfg.CeilingDuration+30*time.Second)
		defer cancel()
		lan, err := netlab.New(ctx, cfg.lanConfig(n+1))
		if err != nil {
			return err
		}
		defer lan.Close()
		size := strconv.Itoa(res.DatagramBytes)
		// 4 MiB socket buffers: net.core.rmem_max here; shoal asks for
		// 8 MiB (forced), udpcast and uftp for less.
		var sinks []*proc
		defer func() {
			for _, p := range sinks {
				p.stop()
			}
		}()
		for i := range n {
			p, err := start(lan.Nodes[1+i].Command(ctx, "iperf", "-s", "-u", "-B", ceilingGroup+"%eth0", "-l", size, "-w", "4M", "-y", "C"),
				fmt.Sprintf("iperf sink %d", i))
			if err != nil {
				return err
			}
			sinks = append(sinks, p)
		}
		time.Sleep(300 * time.Millisecond) // let the sinks join
		// Binding the source address picks eth0 for the multicast.
		tx, err := start(lan.Nodes[0].Command(ctx, "iperf", "-c", ceilingGroup, "-B", lan.Nodes[0].IP.String(), "-u", "-b", "100G",
			"-T", "1", "-l", size, "-w", "4M", "-y", "C", "-t", strconv.FormatFloat(cfg.CeilingDuration.Seconds(), 'f', 1, 64)), "iperf blaster")
		if err != nil {
			return err
		}
		if err := tx.wait(ctx); err != nil {
			return err
		}
		sent, err := parseIperfCSV(tx.out.String())
		if err != nil {
			return fmt.Errorf("iperf blaster: %w", err)
		}
		res.Seconds, res.SentBitsPerSec = sent.seconds, sent.bitsPerSec
		got := make([]iperfReport, n)
		for i, p := range sinks {
			// The sink reports when the blast's last datagrams (or a
			// signal) end its stream.
			for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if got[i], err = parseIperfCSV(p.out.String()); err == nil {
					break
				}
			}
			p.signal(syscall.SIGINT)
			select {
			case <-p.done:
			case <-time.After(3 * time.Second):
			}
			p.stop()
			if got[i], err = parseIperfCSV(p.out.String()); err != nil {
				return fmt.Errorf("iperf sink %d: %w", i, err)
			}
		}
		res.BitsPerSec = -1
		for i, g := range got {
			var loss float64
			if g.total > 0 {
				loss = float64(g.lost) / float64(g.total)
			}
			res.addReceiver(g.bitsPerSec, loss, sinks[i].cpu, g.bytes, n)
		}
		return res.finishSender(tx.cpu, sent.bytes)
	}()
	return res.done(err)
}

// addReceiver counts one of n receivers: its rate, its loss and its
// process's own CPU over the bytes it got. The slowest is the ceiling.
func (res *CeilingResult) addReceiver(bitsPerSec, lossFraction float64, cpu time.Duration, gotBytes int64, n int) {
	res.ReceiverBitsPerSec = append(res.ReceiverBitsPerSec, bitsPerSec)
	if res.BitsPerSec < 0 || bitsPerSec < res.BitsPerSec {
		res.BitsPerSec, res.LossFraction = bitsPerSec, lossFraction
	}
	perRx := perGiB(cpu, gotBytes)
	res.ReceiverCPUSecondsPerGiBMean += perRx / float64(n)
	res.ReceiverCPUSecondsPerGiBMax = max(res.ReceiverCPUSecondsPerGiBMax, perRx)
}

// finishSender counts the sender's CPU over what it sent, once every
// receiver was added.
func (res *CeilingResult) finishSender(cpu time.Duration, sentBytes int64) error {
	res.SenderCPUSecondsPerGiB = perGiB(cpu, sentBytes)
	resetCPU()
	if res.BitsPerSec <= 0 {
		return fmt.Errorf("ceiling: receivers got %v bit/s", res.ReceiverBitsPerSec)
	}
	return nil
}

// done records the run's outcome.
func (res CeilingResult) done(err error) CeilingResult {
	res.OK = err == nil
	if err != nil {
		res.Error = err.Error()
	}
	return res
}
