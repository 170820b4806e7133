package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/mcast/fresh"
	"github.com/shoal-project/shoal/imaging/session"
	"github.com/shoal-project/shoal/internal/progress"
	"github.com/shoal-project/shoal/internal/units"
)

const fetchUsage = "shoal fetch --repo URL --name NAME [--state DIR | --pub PREFIX.pub | --insecure-unsigned] [--iface IF] [--relay stream|after] (--key-file FILE | --insecure-no-key) TARGET"

// runFetch runs the peer session (imaging/session): it gets the image from
// a peer on the LAN that is downloading it, or downloads it and relays it
// to the peers that ask.
func runFetch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("fetch", stderr, fetchUsage)
	repoArg := fs.String("repo", "", "image server: repository http(s) URL (or directory)")
	name := fs.String("name", "", "image name")
	var vf verifyFlags
	vf.register(fs)
	def := session.DefaultConfig()
	ifaceName := fs.String("iface", "", "network interface of the LAN (default: the first one with an IPv4 broadcast address)")
	relay := fs.String("relay", def.Relay, "when leading: stream (relay each chunk once verified) or after (once the whole download succeeded)")
	key := fs.String("key", "", "refused: a key on a command line ends up in scripts and process lists; use --key-file")
	keyFile := fs.String("key-file", "", "file holding the session key: control messages carry its HMAC and unauthenticated ones are dropped")
	insecure := fs.Bool("insecure-no-key", false, "run without a key: anyone on the LAN can stall or redirect the session (never write a byte: chunks are verified)")
	control := fs.String("control", "", "control multicast group (default: subnet broadcast on --port)")
	port := fs.Int("port", def.ControlPort, "UDP port of announces, requests and takeovers")
	dataPort := fs.Int("data-port", def.DataPort, "port of the data sessions' groups (data on the next port)")
	rateStr := fs.String("rate", fmt.Sprintf("%gMbit", float64(def.RateBitsPerSec)/1e6), "highest multicast rate when leading")
	var c session.Config
	fs.DurationVar(&c.AnnounceInterval, "announce-interval", def.AnnounceInterval, "time between announces, requests and takeover claims")
	fs.DurationVar(&c.ListenWindow, "listen", def.ListenWindow, "listen this long (plus up to a quarter) for a leader before leading")
	fs.DurationVar(&c.LeaderTimeout, "leader-timeout", 0, fmt.Sprintf("a leader silent this long is gone (takeover) (default %d x --announce-interval: %v)", def.LeaderTimeout/def.AnnounceInterval, def.LeaderTimeout))
	fs.DurationVar(&c.ElectionWindow, "election", def.ElectionWindow, "how long takeover claims are collected")
	fs.DurationVar(&c.DataTimeout, "data-timeout", def.DataTimeout, "fall back to the server when the multicast data stops this long")
	fs.DurationVar(&c.GatherQuiet, "gather", def.GatherQuiet, "leading a short pass (a delta): hold it until no follower joined for this long (negative: never)")
	fs.DurationVar(&c.GatherMax, "gather-max", def.GatherMax, "the longest such hold; followers wait for it that much past --data-timeout")
	fs.DurationVar(&c.Linger, "linger", def.Linger, "when leading with the whole image, stay this long after the last request")
	fs.DurationVar(&c.ServerTimeout, "server-timeout", def.ServerTimeout, "give up when the server gives nothing for this long")
	fs.DurationVar(&c.ServerRetry, "server-retry", def.ServerRetry, "wait between tries of a failing server")
	fs.IntVar(&c.Workers, "workers", def.Workers, "chunks fetched from the server at once")
	nodeID := fs.Uint("node-id", 0, "this node's ID (default: random)")
	statsPath := fs.String("stats", "", "write the final status as JSON to this file")
	var tf targetFlags
	tf.register(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *repoArg == "" || *name == "" || len(pos) != 1 {
		fs.Usage()
		return usageErr("fetch: --repo, --name and one TARGET are required")
	}
	target := pos[0]
	sessionKey, err := fetchKey(*key, *keyFile, *insecure)
	if err != nil {
		return err
	}
	if *relay != session.RelayStream && *relay != session.RelayAfter {
		return usageErr("fetch: --relay %q: want stream or after", *relay)
	}
	if c.RateBitsPerSec, err = units.ParseRate(*rateStr); err != nil {
		return usageErr("fetch: --rate: %v", err)
	}
	if *control != "" {
		if c.Control, err = netip.ParseAddrPort(*control); err != nil {
			return usageErr("fetch: --control %q: %v", *control, err)
		}
	}
	pub, err := vf.key(cmdLog(stderr))
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	if *ifaceName != "" {
		if c.Iface, err = net.InterfaceByName(*ifaceName); err != nil {
			return fmt.Errorf("fetch: --iface: %w", err)
		}
	}
	// The session's clock is the server's, learnt from its answers
	// (control messages are judged fresh against it).
	clock := fresh.NewServerClock()
	var repo imaging.Repo
	if strings.HasPrefix(*repoArg, "http://") || strings.HasPrefix(*repoArg, "https://") {
		repo, err = imaging.NewHTTPRepo(*repoArg, &http.Client{Transport: clock.Transport(imaging.NewTransport())})
	} else {
		repo, err = imaging.OpenRepo(*repoArg)
	}
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	c.Clock = clock.Now
	c.Server, c.Name, c.Pub, c.Relay = repo, *name, pub, *relay
	c.Key = sessionKey
	if c.Key == nil {
		slog.Warn("INSECURE: --insecure-no-key: control messages are not authenticated; anyone on the LAN can stall or redirect this session (not write to the target: every chunk is verified)")
	}
	c.ControlPort, c.DataPort, c.NodeID = *port, *dataPort, uint32(*nodeID)
	c.Logger = slog.Default()
	// The target: the same life cycle as `shoal image apply`'s.
	tg := imaging.NewTarget(target, tf.options(stderr))
	c.Open = tg.Open
	term := progress.IsTerminal(stderr)
	c.Progress = func(s session.Status) {
		if term {
			fmt.Fprintf(stderr, "\r\033[Kfetch: %s (epoch %d): %d/%d chunks, %s from the server, %s from peers, %s to peers",
				s.Role, s.Epoch, s.ChunksDone, s.Chunks, progress.Bytes(s.BytesFromServer), progress.Bytes(s.BytesFromPeers), progress.Bytes(s.BytesToPeers))
		}
	}
	st, err := session.Run(ctx, c)
	if term {
		fmt.Fprintln(stderr)
	}
	if cerr := tg.Close(); err == nil {
		err = cerr
	}
	// The status is written whatever happened; failing to write it
	// never undoes a complete disk.
	if werr := writeStats(*statsPath, st); werr != nil && err == nil {
		err = fmt.Errorf("--stats: %w", werr)
	}
	if err != nil {
		return fmt.Errorf("fetch %s to %s: %w; %s", *name, target, err, tg.Outcome())
	}
	fmt.Fprintf(stdout, "fetched image %s to %s in %s: %d chunks verified, %s from the server, %s from peers, %s multicast to peers (led %d, takeovers %d, fallbacks %d)%s\n",
		*name, target, st.Elapsed.Round(time.Millisecond), st.Chunks, progress.Bytes(st.BytesFromServer), progress.Bytes(st.BytesFromPeers),
		progress.Bytes(st.BytesToPeers), st.Led, st.Takeovers, st.Fallbacks, reused(tg.Scanned()))
	return nil
}

// fetchKey reads the session key from --key-file; --key is refused (a key
// typed on a command line ends up in scripts and process lists), and no
// key at all needs --insecure-no-key.
func fetchKey(key, keyFile string, insecure bool) ([]byte, error) {
	switch {
	case key != "":
		return nil, usageErr("fetch: --key is refused: a key on a command line ends up in scripts and process lists; put it in a file and pass --key-file FILE")
	case keyFile != "" && insecure:
		return nil, usageErr("fetch: --key-file and --insecure-no-key exclude each other")
	case keyFile == "" && !insecure:
		return nil, usageErr("fetch: a session key is required: --key-file FILE (or --insecure-no-key to let anyone on the LAN stall or redirect the session)")
	case insecure:
		return nil, nil
	}
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("fetch: --key-file: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("fetch: --key-file %s is empty", keyFile)
	}
	return b, nil
}
