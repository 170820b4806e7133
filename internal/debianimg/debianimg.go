// debianimg.go is the package's API: Build returns the cached image of a variant, building it (and the shared root filesystem) when missing.
package debianimg

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Variant says where the image's UEFI boot loader lies.
type Variant string

const (
	// Removable has GRUB at \EFI\BOOT\BOOTX64.EFI (boots on any UEFI
	// machine) and BIOS GRUB.
	Removable Variant = "removable"
	// VendorOnly has GRUB only at \EFI\debian\grubx64.efi (UEFI boots it
	// only through a firmware boot entry) and BIOS GRUB.
	VendorOnly Variant = "vendor"
)

// Variants are the variants Build knows.
var Variants = []Variant{Removable, VendorOnly}

// ParseVariant parses "removable" or "vendor".
func ParseVariant(s string) (Variant, error) {
	for _, v := range Variants {
		if string(v) == s {
			return v, nil
		}
	}
	return "", fmt.Errorf("debianimg: variant %q: want removable or vendor", s)
}

// LoginPrompt is a regexp (also plain text: it has no special characters)
// that matches the prompt of the image's serial getty on ttyS0.
const LoginPrompt = Hostname + " login: "

// DefaultCacheDir is where Build keeps the images, outside any clone.
const DefaultCacheDir = "/var/cache/shoal/debian"

// recipeVersion changes whenever the code that makes the image changes in
// a way the recipe hash cannot see (the steps themselves).
const recipeVersion = "debianimg-1"

// Tools are the programs Build runs (Debian packages mmdebstrap, gdisk,
// e2fsprogs, dosfstools, mtools, grub-common, coreutils); it also needs GRUB's
// module trees GRUBPCDir (grub-pc-bin) and GRUBEFIDir (grub-efi-amd64-bin).
var Tools = []string{"mmdebstrap", "sgdisk", "mkfs.ext4", "mkfs.vfat", "mcopy", "mmd", "grub-mkimage", "chroot"}

// ErrNeedRoot means the image is not cached and building it needs root
// (mmdebstrap installs packages as root; the tree keeps their owners).
var ErrNeedRoot = errors.New("debianimg: building the image needs root")

// Options say which image to build and where to keep it.
type Options struct {
	Variant  Variant      // default Removable
	CacheDir string       // default DefaultCacheDir
	Mirror   string       // default DefaultMirror
	Logger   *slog.Logger // default slog.Default()
}

func (o Options) withDefaults() (Options, error) {
	if o.Variant == "" {
		o.Variant = Removable
	}
	if _, err := ParseVariant(string(o.Variant)); err != nil {
		return o, err
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir
	}
	if strings.ContainsAny(o.CacheDir, "'\n") {
		return o, fmt.Errorf("debianimg: cache directory %q: no quotes or newlines, please", o.CacheDir)
	}
	if o.Mirror == "" {
		o.Mirror = DefaultMirror
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// rootRecipe is everything that decides the root filesystem.
func rootRecipe(o Options) []string {
	r := []string{recipeVersion, "suite " + Suite, "mirror " + o.Mirror, "root " + RootUUID,
		fmt.Sprint("root sectors ", RootSectors), "args " + strings.Join(mmdebstrapArgs("", "TREE", o.Mirror), " "),
		"mkfs " + strings.Join(mkfsArgs("TREE", "FS"), " ")}
	r = append(r, sortedFiles(setupFiles())...)
	r = append(r, sortedFiles(configFiles())...)
	r = append(r, "keep "+strings.Join(keepModules, " "), "initrd "+strings.Join(initrdModules, " "))
	return r
}

// imageRecipe is everything that decides the image of a variant.
func imageRecipe(o Options, grubVersion string) []string {
	dirs, file := efiPaths(o.Variant)
	return []string{"root " + hash(rootRecipe(o)), "variant " + string(o.Variant), "grub " + grubVersion,
		"pc " + grubScript("pc"), "efi " + grubScript("efi"), "modules " + strings.Join(grubModules, " ") + " + " + strings.Join(grubPCModules, " "),
		"layout " + strings.Join(sgdiskArgs("DISK"), " "), "esp " + strings.Join(dirs, " ") + " " + file}
}

func sortedFiles(files map[string]string) []string {
	var out []string
	for k, v := range files {
		out = append(out, "file "+k+"\n"+v)
	}
	sort.Strings(out)
	return out
}

func hash(recipe []string) string {
	h := sha256.New()
	for _, r := range recipe {
		fmt.Fprintf(h, "%d:%s\n", len(r), r)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Path returns where Build keeps the image o describes, without building
// it. It runs grub-mkimage --version (the host's GRUB is in the recipe).
func Path(ctx context.Context, o Options) (string, error) {
	o, err := o.withDefaults()
	if err != nil {
		return "", err
	}
	ver, err := output(ctx, "grub-mkimage", "--version")
	if err != nil {
		return "", err
	}
	return filepath.Join(o.CacheDir, fmt.Sprintf("%s-%s.img", o.Variant, hash(imageRecipe(o, ver)))), nil
}

// rootPath is where the root filesystem shared by both variants is kept.
func rootPath(o Options) string {
	return filepath.Join(o.CacheDir, fmt.Sprintf("rootfs-%s.ext4", hash(rootRecipe(o))))
}

// CheckTools reports the first of Tools or GRUB's module trees that is
// missing, with the package that brings it.
func CheckTools() error {
	for _, t := range Tools {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("debianimg: %s not found (./build.sh deps installs it): %w", t, err)
		}
	}
	for dir, pkg := range map[string]string{GRUBPCDir: "grub-pc-bin", GRUBEFIDir: "grub-efi-amd64-bin"} {
		for _, f := range []string{"kernel.img", "normal.mod"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				return fmt.Errorf("debianimg: GRUB modules (apt-get install %s): %w", pkg, err)
			}
		}
	}
	return nil
}

// Build returns the path of the cached image of o.Variant, building it
// first when it is not in o.CacheDir. The first build takes minutes
// (mmdebstrap); the other variant reuses its root filesystem; a cached
// image is returned at once. Concurrent builds (in other processes too)
// wait for one another on a lock file; an image appears only complete
// (renamed into place).
func Build(ctx context.Context, o Options) (string, error) {
	o, err := o.withDefaults()
	if err != nil {
		return "", err
	}
	if err := CheckTools(); err != nil {
		return "", err
	}
	path, err := Path(ctx, o)
	if err != nil {
		return "", err
	}
	if exists(path) {
		return path, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("%w: %s is not cached", ErrNeedRoot, path)
	}
	unlock, err := lockDir(ctx, o.CacheDir, o.Logger)
	if err != nil {
		return "", err
	}
	defer unlock()
	if exists(path) { // built while we waited
		return path, nil
	}
	cleanStale(o.CacheDir, o.Logger)
	start := time.Now()
	root := rootPath(o)
	if !exists(root) {
		err := buildFile(o.CacheDir, root, func(tmp, work string) error {
			tree, err := buildTree(ctx, o.Logger, work, o.Mirror)
			if err != nil {
				return err
			}
			o.Logger.Info("debianimg: mkfs.ext4 -d", "sizeBytes", RootSectors*sectorBytes)
			return mkRootFS(ctx, tree, tmp, RootSectors*sectorBytes)
		})
		if err != nil {
			return "", err
		}
		o.Logger.Info("debianimg: root filesystem cached", "path", root, "took", time.Since(start).Round(time.Second))
	}
	err = buildFile(o.CacheDir, path, func(tmp, work string) error {
		return buildImage(ctx, o, root, tmp, work)
	})
	if err != nil {
		return "", err
	}
	o.Logger.Info("debianimg: image cached", "variant", o.Variant, "path", path, "took", time.Since(start).Round(time.Second))
	return path, nil
}

// buildImage writes the image of o to out from the root filesystem at
// root, using work for its other parts.
func buildImage(ctx context.Context, o Options, root, out, work string) error {
	log := o.Logger
	log.Info("debianimg: grub-mkimage", "targets", "i386-pc x86_64-efi")
	core, err := mkCoreImage(ctx, work, GRUBPCDir)
	if err != nil {
		return err
	}
	efi, err := mkEFIImage(ctx, work, GRUBEFIDir)
	if err != nil {
		return err
	}
	esp := filepath.Join(work, "esp.fat")
	log.Info("debianimg: ESP", "variant", o.Variant)
	if err := mkESP(ctx, esp, efi, o.Variant); err != nil {
		return err
	}
	log.Info("debianimg: assemble disk", "sizeBytes", DiskBytes)
	return assembleDisk(ctx, out, filepath.Join(GRUBPCDir, "boot.img"), core, esp, root)
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("debianimg: %s %s: %w\n%s", name, strings.Join(args, " "), err, tail(out, 4000))
	}
	return nil
}

func output(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return "", fmt.Errorf("debianimg: %s %s: %w", name, strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func truncate(path string, sizeBytes int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(sizeBytes); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
