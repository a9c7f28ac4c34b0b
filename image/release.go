package image

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cloudbox/cloudbox/boards"
	"github.com/cloudbox/cloudbox/internal/bootslot"
	"github.com/cloudbox/cloudbox/services/update"
)

// ReleaseConfig says what release to build. Zero values are documented per
// field.
type ReleaseConfig struct {
	// Board is the hardware profile; required.
	Board boards.Board
	// Version is the release version (numbers like 1.4.2); required.
	Version string
	// Out is the release directory to create; required. It must not exist
	// or be empty.
	Out string
	// Channel is the release channel; zero means update.DefaultChannel.
	Channel string
	// MinVersion is the oldest version that may update to this release;
	// zero means any.
	MinVersion string
	// Downgrade marks a release that boxes running newer versions may
	// install.
	Downgrade bool
	// Spread is the rollout spread; zero means every box installs at once.
	Spread time.Duration
	// ChunkSize is the chunk size; zero means update.DefaultChunkSize.
	ChunkSize int64
	// SourceDateEpoch, SourceDir, CABundle, ReleaseTrust, GoCmd and
	// Logger are as in Config. The release date is SourceDateEpoch. A
	// release with a ReleaseTrust hands the boxes that install it new
	// release keys.
	SourceDateEpoch int64
	SourceDir       string
	CABundle        string
	ReleaseTrust    string
	GoCmd           string
	Logger          *slog.Logger
	// AdminTokenFile and LDFlags are as in Config, for test releases.
	AdminTokenFile string
	LDFlags        string
}

// BuildRelease builds a release: the root squashfs and the boot files of the
// board (kernel, device trees, firmware, config.txt, the UEFI boot manager;
// not cmdline.txt or the boot entry, which name the box's own partitions
// and which the box writes itself), split into chunks under Out, with an
// unsigned manifest; sign it with update.SignDir. On error Out is removed if
// BuildRelease created it.
func BuildRelease(ctx context.Context, rc ReleaseConfig) (*update.Manifest, error) {
	if rc.Out == "" {
		return nil, errors.New("no output directory given: pass --out DIR")
	}
	if ents, err := os.ReadDir(rc.Out); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("release directory %s is not empty: choose a new one", rc.Out)
	}
	cfg := Config{Board: rc.Board, Out: filepath.Join(rc.Out, "unused.img"), Version: rc.Version,
		SourceDateEpoch: rc.SourceDateEpoch, SourceDir: rc.SourceDir, CABundle: rc.CABundle, ReleaseTrust: rc.ReleaseTrust, GoCmd: rc.GoCmd,
		AdminTokenFile: rc.AdminTokenFile, LDFlags: rc.LDFlags}
	if err := cfg.setDefaults(ctx); err != nil {
		return nil, err
	}
	if v, err := update.ParseVersion(rc.Version); err != nil || v.IsDev() {
		return nil, fmt.Errorf("invalid release version %q: use numbers like 1.4.2", rc.Version)
	}
	b := cfg.Board
	work, err := os.MkdirTemp("", "cloudbox-release-")
	if err != nil {
		return nil, fmt.Errorf("creating work directory: %w", err)
	}
	defer os.RemoveAll(work)
	binDir := filepath.Join(work, "bin")
	if err := buildPrograms(ctx, &cfg, b, binDir); err != nil {
		return nil, err
	}
	kernelDir, err := moduleDir(ctx, &cfg, b.KernelModule)
	if err != nil {
		return nil, err
	}
	var firmwareDir string
	if b.FirmwareModule != "" {
		if firmwareDir, err = moduleDir(ctx, &cfg, b.FirmwareModule); err != nil {
			return nil, err
		}
	}
	l, err := newLayout(b, DefaultSize, cfg.Hostname)
	if err != nil {
		return nil, err
	}
	files, err := bootFiles(b, l, kernelDir, firmwareDir)
	if err != nil {
		return nil, err
	}
	root, err := rootImage(&cfg, binDir, kernelDir)
	if err != nil {
		return nil, err
	}
	if root := int64(len(root)); root > boards.RootSize {
		return nil, fmt.Errorf("root filesystem is %d MiB, more than the %d MiB root slot", root>>20, boards.RootSize>>20)
	}
	inputs := []update.Input{{Name: update.RootArtifact, Data: root}}
	for _, f := range files {
		if boxSpecificBootFile[f.Path] || bootslot.PartOf(f.Path[:strings.IndexByte(f.Path, '/')+1]) != 0 {
			continue
		}
		inputs = append(inputs, update.Input{Name: "boot/" + f.Path, Data: f.Data})
	}
	created := false
	if _, err := os.Stat(rc.Out); errors.Is(err, os.ErrNotExist) {
		created = true
	}
	m, err := update.WriteRelease(rc.Out, update.Manifest{
		Board: b.Name, Version: rc.Version, Channel: cmp.Or(rc.Channel, update.DefaultChannel),
		MinVersion: rc.MinVersion, Downgrade: rc.Downgrade, Date: cfg.epoch(),
		SpreadSeconds: int64(rc.Spread / time.Second), ChunkSize: rc.ChunkSize,
	}, inputs)
	if err != nil {
		if created {
			os.RemoveAll(rc.Out)
		}
		return nil, fmt.Errorf("writing release: %w", err)
	}
	if rc.Logger != nil {
		rc.Logger.Info("release written", "dir", rc.Out, "board", b.Name, "version", rc.Version, "bytes", m.Size())
	}
	return m, nil
}

// boxSpecificBootFile names the boot files that depend on the box's disk
// (its partition UUIDs and active slot): a box installing a release writes
// them itself. The slot directories (a/, b/) are not in a release either:
// the box puts the release's kernel files into the slot it installs.
var boxSpecificBootFile = map[string]bool{
	"cmdline.txt":                 true,
	"loader/entries/gokrazy.conf": true,
}
