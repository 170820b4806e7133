package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/pprof"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/imaging/mcast"
	"github.com/shoal-project/shoal/internal/progress"
)

const receiveUsage = "shoal receive --name NAME [--state DIR | --pub PREFIX.pub | --insecure-unsigned] [--iface IF] TARGET"

func runReceive(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("receive", stderr, receiveUsage)
	name := fs.String("name", "", "image to receive (empty: the first one announced)")
	var vf verifyFlags
	vf.register(fs)
	var mf mcastFlags
	mf.register(fs)
	joinTimeout := fs.Duration("timeout", 5*time.Minute, "longest wait for a sender's announce (0: for ever)")
	def := mcast.DefaultReceiverConfig()
	senderTimeout := fs.Duration("sender-timeout", def.SenderTimeout, "give up when the sender is silent that long")
	buffer := fs.Int("buffer-chunks", def.BufferChunks, "chunks held in memory (assembling or waiting for the disk)")
	noGRO := fs.Bool("no-gro", def.NoGRO, "read data datagrams one by one even where the kernel could coalesce them (UDP GRO)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile here (for debugging)")
	var tf targetFlags
	tf.register(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return usageErr("receive: one TARGET is required")
	}
	target := pos[0]
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
	pub, err := vf.key(cmdLog(stderr))
	if err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	conn, ifi, ctrl, err := mf.open(ctx)
	if err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	defer conn.Close()
	// The target: the same life cycle as `shoal image apply`'s.
	tg := imaging.NewTarget(target, tf.options(stderr))
	term := progress.IsTerminal(stderr)
	st, err := mcast.Receive(ctx, conn, mcast.ReceiverConfig{
		Name: *name, Pub: pub, Iface: ifi, Control: ctrl,
		JoinTimeout: *joinTimeout, SenderTimeout: *senderTimeout, BufferChunks: *buffer, NoGRO: *noGRO,
		OpenData: func(ctx context.Context, g netip.AddrPort) (net.PacketConn, error) {
			return mcast.ListenGroup(ctx, ifi, g, mcast.GroupOptions{})
		},
		Open: func(img *imaging.Image) (mcast.Sink, error) {
			w, err := tg.Open(img)
			if err != nil {
				return nil, err
			}
			return w, nil
		},
		Logger: slog.Default(),
		Progress: func(s mcast.ReceiverStats) {
			if term {
				fmt.Fprintf(stderr, "\r\033[Kreceive: %d/%d chunks, %s written, %s received (%s duplicate)",
					s.ChunksDone, s.Chunks, progress.Bytes(s.WrittenBytes), progress.Bytes(s.ReceivedBytes), progress.Bytes(s.DuplicateBytes))
			}
		},
	})
	if term {
		fmt.Fprintln(stderr)
	}
	if cerr := tg.Close(); err == nil {
		err = cerr
	}
	// The figures are written whatever happened; failing to write them
	// never undoes a complete disk.
	if werr := writeStats(mf.stats, st); werr != nil && err == nil {
		err = fmt.Errorf("--stats: %w", werr)
	}
	if err != nil {
		return fmt.Errorf("receive to %s: %w; %s", target, err, tg.Outcome())
	}
	fmt.Fprintf(stdout, "received image %s to %s in %s: %d chunks verified, %s received (%s duplicate)%s\n",
		st.Image.String()[:16], target, st.Elapsed.Round(time.Millisecond), st.Chunks, progress.Bytes(st.ReceivedBytes), progress.Bytes(st.DuplicateBytes), reused(tg.Scanned()))
	return nil
}
