package imaging

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
)

// ErrRollback is wrapped by CheckNotOlder when a manifest is older than
// one already seen: a signed but superseded image offered again.
var ErrRollback = errors.New("image rollback")

// CheckNotOlder returns an error wrapping ErrRollback when m's serial is
// lower than minSerial, the highest serial of this image the caller has
// accepted before. The same serial again is fine (the same image applied
// again). Check it only on a manifest whose signature was verified: the
// serial is under the signature.
func CheckNotOlder(m *Manifest, minSerial uint64) error {
	if m.Serial < minSerial {
		return fmt.Errorf("%w: image %q has serial %d, older than serial %d already seen", ErrRollback, m.Name, m.Serial, minSerial)
	}
	return nil
}

// nextSerial returns one more than the highest serial of any manifest in
// the repository that names image name (1 when there is none). A manifest
// that cannot be read is logged and skipped: a serial too low is refused
// by the machines that saw a higher one, never accepted.
func nextSerial(repoDir, name string, log *slog.Logger) (uint64, error) {
	paths, err := filepath.Glob(filepath.Join(repoDir, "images", "*", "manifest.json"))
	if err != nil {
		return 0, fmt.Errorf("repository %s: %w", repoDir, err)
	}
	var highest uint64
	for _, p := range paths {
		b, err := readFileMax(p, MaxManifestBytes)
		if err != nil {
			log.Warn("image create: existing manifest unreadable, its serial not counted", "path", p, "err", err)
			continue
		}
		var head struct {
			Name   string `json:"name"`
			Serial uint64 `json:"serial"`
		}
		if err := json.Unmarshal(b, &head); err != nil {
			log.Warn("image create: existing manifest undecodable, its serial not counted", "path", p, "err", err)
			continue
		}
		if head.Name == name {
			highest = max(highest, head.Serial)
		}
	}
	if highest == ^uint64(0) {
		return 0, fmt.Errorf("image %q: serial %d is the largest there is", name, highest)
	}
	return highest + 1, nil
}
