// Package imagetest makes the random images that the transport and session
// tests send: random bytes (incompressible), with an optional run of zeros
// (not stored) and a compressible stretch, made into a repository by
// imaging.Create.
package imagetest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoal-project/shoal/imaging"
)

// Options says what to make. Zero values: name "test", a new repository in
// a temporary directory, no zero run, nothing compressible, unsigned.
type Options struct {
	Name         string
	RepoDir      string
	SizeBytes    int64
	ChunkBytes   int64
	ZeroRun      bool               // one chunk of zeros in the middle
	Compressible bool               // one chunk of text a quarter in
	SignKey      ed25519.PrivateKey // sign the manifest
}

// Image is what New made.
type Image struct {
	Name    string
	Src     string // the raw disk file
	Disk    []byte // its bytes
	RepoDir string
	Repo    imaging.Repo
	Image   *imaging.Image
}

// New makes the image, failing the test on any error.
func New(t testing.TB, o Options) *Image {
	t.Helper()
	if o.Name == "" {
		o.Name = "test"
	}
	dir := t.TempDir()
	if o.RepoDir == "" {
		o.RepoDir = filepath.Join(dir, "repo")
	}
	disk := make([]byte, o.SizeBytes)
	if _, err := rand.Read(disk); err != nil {
		t.Fatal(err)
	}
	if o.ZeroRun {
		clear(disk[o.SizeBytes/2 : o.SizeBytes/2+o.ChunkBytes])
	}
	if o.Compressible {
		copy(disk[o.SizeBytes/4:o.SizeBytes/4+o.ChunkBytes], bytes.Repeat([]byte("shoal "), int(o.ChunkBytes/6)))
	}
	src := filepath.Join(dir, o.Name+".raw")
	if err := os.WriteFile(src, disk, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := imaging.Create(ctx, src, o.RepoDir, o.Name, imaging.CreateOptions{ChunkSizeBytes: o.ChunkBytes, SignKey: o.SignKey}); err != nil {
		t.Fatalf("imaging.Create: %v", err)
	}
	repo := imaging.DirRepo(o.RepoDir)
	var pub ed25519.PublicKey
	if o.SignKey != nil {
		pub = o.SignKey.Public().(ed25519.PublicKey)
	}
	img, err := imaging.LoadImage(ctx, repo, o.Name, pub)
	if err != nil {
		t.Fatalf("imaging.LoadImage: %v", err)
	}
	return &Image{Name: o.Name, Src: src, Disk: disk, RepoDir: o.RepoDir, Repo: repo, Image: img}
}
