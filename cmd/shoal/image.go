package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shoal-project/shoal/imaging"
	"github.com/shoal-project/shoal/internal/progress"
)

const imageUsage = `usage:
  shoal image create  --repo DIR --name NAME [--state DIR | --sign PREFIX.key | --unsigned] [--chunk-size 4MiB] SRC
  shoal image inspect --repo DIR|URL --name NAME
  shoal image verify  --repo DIR|URL --name NAME [--state DIR | --pub PREFIX.pub | --insecure-unsigned]
  shoal image apply   --repo DIR|URL --name NAME [--state DIR | --pub PREFIX.pub | --insecure-unsigned] TARGET

By default images are signed with, and checked against, the site's key in
the state directory (--state, default /var/lib/shoal for root).`

func runImage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, imageUsage)
		return usageErr("image: want create, inspect, verify or apply")
	}
	switch args[0] {
	case "create":
		return runImageCreate(ctx, args[1:], stdout, stderr)
	case "inspect":
		return runImageInspect(ctx, args[1:], stdout, stderr)
	case "verify":
		return runImageVerify(ctx, args[1:], stdout, stderr)
	case "apply":
		return runImageApply(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintln(stderr, imageUsage)
		return nil
	}
	fmt.Fprintln(stderr, imageUsage)
	return usageErr("image: unknown subcommand %q", args[0])
}

func newFlagSet(name string, stderr io.Writer, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: "+usage)
		fs.PrintDefaults()
	}
	return fs
}

func runImageCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("image create", stderr, "shoal image create --repo DIR --name NAME [--state DIR | --sign PREFIX.key | --unsigned] [--chunk-size 4MiB] SRC")
	repo := fs.String("repo", "", "repository directory (created if missing)")
	name := fs.String("name", "", "image name")
	var sf signFlags
	sf.register(fs)
	chunk := int64(imaging.DefaultChunkBytes)
	fs.Var(bytesFlag{&chunk}, "chunk-size", "logical chunk size (default 4MiB)")
	grow := fs.String("grow", "auto", "partition that grows on a larger disk: auto (the last, if it fills the source), none, or a number")
	allBlocks := fs.Bool("all-blocks", false, "store every block, also those an ext2/3/4 or FAT file system does not use (by default they are left out: not stored, sent or written)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *repo == "" || *name == "" || len(pos) != 1 {
		fs.Usage()
		return usageErr("image create: --repo, --name and one SRC are required")
	}
	if strings.Contains(*repo, "://") {
		return usageErr("image create: --repo must be a local directory, not %s", *repo)
	}
	opts := imaging.CreateOptions{ChunkSizeBytes: chunk, Grow: *grow, AllBlocks: *allBlocks}
	if opts.SignKey, err = sf.privateKey(cmdLog(stderr)); err != nil {
		return fmt.Errorf("image create: %w", err)
	}
	total := int64(0)
	if st, err := os.Stat(pos[0]); err == nil && st.Mode().IsRegular() {
		total = st.Size()
	}
	bar := progress.New(stderr, "create", total)
	opts.Progress = bar.Add
	start := time.Now()
	img, stats, err := imaging.Create(ctx, pos[0], *repo, *name, opts)
	bar.Finish()
	if err != nil {
		return fmt.Errorf("image create: %w", err)
	}
	el := time.Since(start)
	m := img.Manifest
	fmt.Fprintf(stdout, "created image %s in %s\n", m.Name, *repo)
	fmt.Fprintf(stdout, "  id            %s\n", img.ID)
	fmt.Fprintf(stdout, "  content hash  %s\n", m.ContentHash)
	fmt.Fprintf(stdout, "  serial        %d\n", m.Serial)
	fmt.Fprintf(stdout, "  source        %s read in %s (%.0f MB/s)\n", progress.Bytes(stats.SourceBytes), el.Round(time.Millisecond), float64(stats.SourceBytes)/1e6/el.Seconds())
	fmt.Fprintf(stdout, "  data          %s in %d chunks, stored as %s (%d new chunks, %s new)\n",
		progress.Bytes(m.DataBytes), len(img.Chunks), progress.Bytes(m.StoredBytes), stats.NewChunks, progress.Bytes(stats.NewStoredBytes))
	if stats.FreeBytes > 0 {
		fmt.Fprintf(stdout, "  free blocks   %s left out (not stored, sent or written; --all-blocks keeps them)\n", progress.Bytes(stats.FreeBytes))
	}
	fmt.Fprintf(stdout, "  signed        %v\n", img.Sig != nil)
	return nil
}

// loadImage opens --repo and loads --name, checking the signature with
// pub when it is not nil.
func loadImage(ctx context.Context, repoArg, name string, pub ed25519.PublicKey) (imaging.Repo, *imaging.Image, error) {
	repo, err := imaging.OpenRepo(repoArg)
	if err != nil {
		return nil, nil, err
	}
	img, err := imaging.LoadImage(ctx, repo, name, pub)
	if err != nil {
		return nil, nil, err
	}
	return repo, img, nil
}

func runImageInspect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("image inspect", stderr, "shoal image inspect --repo DIR|URL --name NAME")
	repo := fs.String("repo", "", "repository directory or http(s) URL")
	name := fs.String("name", "", "image name")
	asJSON := fs.Bool("json", false, "print the manifest itself")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *repo == "" || *name == "" || len(pos) != 0 {
		fs.Usage()
		return usageErr("image inspect: --repo and --name are required")
	}
	_, img, err := loadImage(ctx, *repo, *name, nil)
	if err != nil {
		return fmt.Errorf("image inspect: %w", err)
	}
	if *asJSON {
		_, err := stdout.Write(img.Raw)
		return err
	}
	m := img.Manifest
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "name\t%s\n", m.Name)
	fmt.Fprintf(tw, "id\t%s\n", img.ID)
	fmt.Fprintf(tw, "content hash\t%s\n", m.ContentHash)
	fmt.Fprintf(tw, "format version\t%d\n", m.Version)
	fmt.Fprintf(tw, "serial\t%d\n", m.Serial)
	fmt.Fprintf(tw, "signed\t%v\n", img.Sig != nil)
	fmt.Fprintf(tw, "disk size\t%s (%d bytes)\n", progress.Bytes(m.DiskSizeBytes), m.DiskSizeBytes)
	fmt.Fprintf(tw, "target needs\t%s table, %d-byte sectors, at least %s (%d bytes)\n", m.Target.Table, m.Target.LogicalSectorBytes, progress.Bytes(m.Target.MinSizeBytes), m.Target.MinSizeBytes)
	if m.Table.DiskGUID != "" {
		fmt.Fprintf(tw, "disk GUID\t%s\n", m.Table.DiskGUID)
	}
	fmt.Fprintf(tw, "data\t%s in %d chunks of up to %s, stored as %s\n", progress.Bytes(m.DataBytes), len(img.Chunks), progress.Bytes(m.ChunkSizeBytes), progress.Bytes(m.StoredBytes))
	tw.Flush()
	if len(m.Table.Partitions) > 0 {
		fmt.Fprintln(stdout, "\npartitions:")
		tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  #\tstart LBA\tsize\ttype\tname\tflags")
		for _, p := range m.Table.Partitions {
			var flags []string
			if p.Grow {
				flags = append(flags, "grow")
			}
			if p.Bootable {
				flags = append(flags, "bootable")
			}
			if p.Attributes != 0 {
				flags = append(flags, fmt.Sprintf("attrs=%#x", p.Attributes))
			}
			fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\t%s\t%s\n", p.Number, p.StartLBA, progress.Bytes(p.SizeBytes), p.Type, p.Name, strings.Join(flags, ","))
		}
		tw.Flush()
	}
	fmt.Fprintln(stdout, "\nregions:")
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  kind\toffset\tsize\tchunks\tstored\tfree")
	for _, r := range m.Regions {
		kind := r.Kind
		if r.Kind == imaging.RegionPartition {
			kind = fmt.Sprintf("partition %d", r.Partition)
		}
		var stored int64
		for _, c := range r.Chunks {
			stored += c.StoredBytes
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%d\t%s\t%s\n", kind, r.OffsetBytes, progress.Bytes(r.SizeBytes), len(r.Chunks), progress.Bytes(stored), progress.Bytes(r.FreeBytes()))
	}
	return tw.Flush()
}

func runImageVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("image verify", stderr, "shoal image verify --repo DIR|URL --name NAME [--state DIR | --pub PREFIX.pub | --insecure-unsigned]")
	repoArg := fs.String("repo", "", "repository directory or http(s) URL")
	name := fs.String("name", "", "image name")
	var vf verifyFlags
	vf.register(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *repoArg == "" || *name == "" || len(pos) != 0 {
		fs.Usage()
		return usageErr("image verify: --repo and --name are required")
	}
	pub, err := vf.key(cmdLog(stderr))
	if err != nil {
		return fmt.Errorf("image verify: %w", err)
	}
	repo, img, err := loadImage(ctx, *repoArg, *name, pub)
	if err != nil {
		return fmt.Errorf("image verify: %w", err)
	}
	bar := progress.New(stderr, "verify", img.Manifest.DataBytes)
	st, err := imaging.Verify(ctx, img, repo, imaging.ApplyOptions{Progress: bar.Add})
	bar.Finish()
	if err != nil {
		return fmt.Errorf("image verify %s: %w", *name, err)
	}
	sig := "not signed"
	switch {
	case pub != nil:
		sig = "signature good"
	case img.Sig != nil:
		sig = "signed, signature NOT checked (--insecure-unsigned)"
	default:
		sig = "not signed, accepted with --insecure-unsigned"
	}
	fmt.Fprintf(stdout, "image %s OK: %d chunks, %s of data (%s stored) verified; %s\n", *name, st.Chunks, progress.Bytes(st.DataBytes), progress.Bytes(st.StoredBytes), sig)
	return nil
}

func runImageApply(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("image apply", stderr, "shoal image apply --repo DIR|URL --name NAME [--state DIR | --pub PREFIX.pub | --insecure-unsigned] TARGET")
	repoArg := fs.String("repo", "", "repository directory or http(s) URL")
	name := fs.String("name", "", "image name")
	var vf verifyFlags
	vf.register(fs)
	workers := fs.Int("workers", 0, "chunks in flight (default: 2 per CPU, at least 4)")
	var tf targetFlags
	tf.register(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *repoArg == "" || *name == "" || len(pos) != 1 {
		fs.Usage()
		return usageErr("image apply: --repo, --name and one TARGET are required")
	}
	target := pos[0]
	pub, err := vf.key(cmdLog(stderr))
	if err != nil {
		return fmt.Errorf("image apply: %w", err)
	}
	repo, img, err := loadImage(ctx, *repoArg, *name, pub)
	if err != nil {
		return fmt.Errorf("image apply: %w", err)
	}
	slog.Debug("applying", "image", *name, "id", img.ID.String(), "target", target)
	tg := imaging.NewTarget(target, tf.options(stderr))
	bar := progress.New(stderr, "apply", img.Manifest.DataBytes)
	start := time.Now()
	err = tg.Apply(ctx, img, repo, imaging.ApplyOptions{Workers: *workers, Progress: bar.Add})
	bar.Finish()
	if cerr := tg.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("image apply %s to %s: %w; %s", *name, target, err, tg.Outcome())
	}
	el := time.Since(start)
	fmt.Fprintf(stdout, "applied image %s (%s) to %s: %s of data in %s (%.0f MB/s)%s\n", *name, img.ID.String()[:16], target,
		progress.Bytes(img.Manifest.DataBytes), el.Round(time.Millisecond), float64(img.Manifest.DataBytes)/1e6/el.Seconds(), reused(tg.Scanned()))
	return nil
}
