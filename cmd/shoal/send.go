package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-project/shoal/imaging/mcast"
	"github.com/shoal-project/shoal/imaging/sign"
	"github.com/shoal-project/shoal/internal/progress"
	"github.com/shoal-project/shoal/internal/units"
)

const sendUsage = "shoal send --repo DIR|URL --name NAME [--iface IF] [--rate 500Mbit] [--fec K+M] [--min-receivers N] [--max-wait 60s]"

// mcastFlags are the flags send and receive share.
type mcastFlags struct {
	iface   string
	control string
	stats   string
}

func (m *mcastFlags) register(fs interface {
	StringVar(*string, string, string, string)
}) {
	fs.StringVar(&m.iface, "iface", "", "network interface for multicast (default: the system's choice)")
	fs.StringVar(&m.control, "control", mcast.DefaultControl.String(), "control group and port (announces, requests, statuses)")
	fs.StringVar(&m.stats, "stats", "", "write the final figures as JSON to this file")
}

func (m *mcastFlags) open(ctx context.Context) (net.PacketConn, *net.Interface, netip.AddrPort, error) {
	ctrl, err := netip.ParseAddrPort(m.control)
	if err != nil {
		return nil, nil, ctrl, usageErr("--control %q: %v", m.control, err)
	}
	var ifi *net.Interface
	if m.iface != "" {
		if ifi, err = net.InterfaceByName(m.iface); err != nil {
			return nil, nil, ctrl, fmt.Errorf("--iface: %w", err)
		}
	}
	c, err := mcast.ListenGroup(ctx, ifi, ctrl, mcast.GroupOptions{})
	return c, ifi, ctrl, err
}

func writeStats(path string, v any) error {
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// parseRate parses a rate such as 500Mbit, 1Gbit, 200M or 1e9 (bits per second).

// parseFEC parses K+M: K data blocks per group, M parity blocks sent with them.
func parseFEC(s string) (k, m int, err error) {
	a, b, ok := strings.Cut(s, "+")
	if ok {
		k, err = strconv.Atoi(a)
		if err == nil {
			m, err = strconv.Atoi(b)
		}
	}
	if !ok || err != nil || k < 1 || k > 128 || m < 0 || m > k {
		return 0, 0, fmt.Errorf("fec %q: want K+M with 1 <= K <= 128 and 0 <= M <= K, e.g. 64+2", s)
	}
	return k, m, nil
}

func runSend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("send", stderr, sendUsage)
	repoArg := fs.String("repo", "", "repository directory or http(s) URL")
	name := fs.String("name", "", "image name")
	pubPath := fs.String("pub", "", "check the manifest's signature with this public key before sending")
	var mf mcastFlags
	mf.register(fs)
	def := mcast.DefaultSenderConfig()
	data := fs.String("data", def.Data.String(), "data group and port")
	rate := fs.String("rate", "500Mbit", "highest sending rate, counted on the link (lowered while receivers report heavy loss)")
	fec := fs.String("fec", fmt.Sprintf("%d+%d", def.GroupBlocks, def.ParityBlocks), "Reed-Solomon groups K+M: K blocks per group, M parity blocks sent with each in the first pass (repairs are always parity)")
	minRx := fs.Int("min-receivers", def.MinReceivers, "wait for this many receivers (up to --max-wait) before sending")
	maxWait := fs.Duration("max-wait", def.MaxWait, "longest wait for --min-receivers; also ends the session when no receiver is heard for that long")
	linger := fs.Duration("linger", def.Linger, "quiet time after every receiver is done before ending")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile here (for debugging)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *repoArg == "" || *name == "" || len(pos) != 0 {
		fs.Usage()
		return usageErr("send: --repo and --name are required, and nothing else")
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	rateBits, err := units.ParseRate(*rate)
	if err != nil {
		return usageErr("send: %v", err)
	}
	k, m, err := parseFEC(*fec)
	if err != nil {
		return usageErr("send: %v", err)
	}
	dataGroup, err := netip.ParseAddrPort(*data)
	if err != nil {
		return usageErr("send: --data %q: %v", *data, err)
	}
	var pub ed25519.PublicKey // the receivers check it; send only when asked
	if *pubPath != "" {
		if pub, err = sign.LoadPublic(*pubPath); err != nil {
			return fmt.Errorf("send: %w", err)
		}
	}
	repo, img, err := loadImage(ctx, *repoArg, *name, pub)
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	conn, ifi, ctrl, err := mf.open(ctx)
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	defer conn.Close()
	term := progress.IsTerminal(stderr)
	st, err := mcast.Send(ctx, conn, mcast.SenderConfig{
		Image: img, Source: mcast.RepoSource{Repo: repo, Image: img},
		Data: dataGroup, Control: ctrl, RateBitsPerSec: rateBits, BlockBytes: mcast.BlockBytesForInterface(ifi),
		GroupBlocks: k, ParityBlocks: m, MinReceivers: *minRx, MaxWait: *maxWait, Linger: *linger,
		Logger: slog.Default(),
		Progress: func(s mcast.SenderStats) {
			if term {
				fmt.Fprintf(stderr, "\r\033[Ksend %s: chunk %d/%d, %s sent (%s repairs), %d/%d receivers done, %.0f Mbit/s",
					*name, s.Chunk, s.Chunks, progress.Bytes(s.SentBytes), progress.Bytes(s.RepairBytes), s.Done, s.Receivers, float64(s.RateBitsPerSec)/1e6)
			}
		},
	})
	if term {
		fmt.Fprintln(stderr)
	}
	if werr := writeStats(mf.stats, st); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		return fmt.Errorf("send %s: %w", *name, err)
	}
	fmt.Fprintf(stdout, "sent image %s (%s) in %s: %s on the wire for %s stored (%.3fx), %d receivers done, %d dropped\n",
		*name, img.ID.String()[:16], st.Elapsed.Round(time.Millisecond), progress.Bytes(st.SentBytes), progress.Bytes(img.Manifest.StoredBytes),
		float64(st.SentBytes)/float64(max(img.Manifest.StoredBytes, 1)), st.Done, st.Dropped)
	return nil
}
