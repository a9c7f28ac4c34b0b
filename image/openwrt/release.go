package openwrt

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cloudbox/cloudbox/services/update"
)

// BuildRelease builds a router's release in the directory out (which must
// not exist or be empty): the router profile of cloudboxd for cfg.Board,
// stamped with cfg.Version (compiled unless cfg.Binary names one), as the
// release's only artifact, update.DaemonArtifact, in the chunked manifest
// format of package update, unsigned (sign it with update.SignDir, `cloudbox
// release sign`). m gives the manifest's channel (zero means
// update.DefaultChannel), min_version, downgrade, rollout spread and chunk
// size (zero means update.DefaultChunkSize); its board, version, date
// (cfg.SourceDateEpoch) and artifacts are set here. The update agent of a
// router installs it as its new cloudboxd (appliance/routerinstall.go).
// On error out is removed if BuildRelease created it.
func BuildRelease(ctx context.Context, cfg Config, m update.Manifest, out string) (*update.Manifest, error) {
	if out == "" {
		return nil, errors.New("no output directory given: pass --out DIR")
	}
	if ents, err := os.ReadDir(out); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("release directory %s is not empty: choose a new one", out)
	}
	if v, err := update.ParseVersion(cfg.Version); err != nil || v.IsDev() {
		return nil, fmt.Errorf("invalid release version %q: use numbers like 1.4.2", cfg.Version)
	}
	if err := cfg.setDefaults(ctx); err != nil {
		return nil, err
	}
	bin := cfg.Binary
	if bin == "" {
		work, err := os.MkdirTemp("", "cloudbox-router-release-")
		if err != nil {
			return nil, fmt.Errorf("creating work directory: %w", err)
		}
		defer os.RemoveAll(work)
		bin = filepath.Join(work, "cloudboxd")
		if err := BuildDaemon(ctx, cfg, bin); err != nil {
			return nil, err
		}
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("reading cloudboxd: %w", err)
	}
	_, statErr := os.Stat(out)
	created := errors.Is(statErr, os.ErrNotExist)
	m.Board, m.Version, m.Date = cfg.Board.Name, cfg.Version, time.Unix(cfg.SourceDateEpoch, 0).UTC()
	m.Channel = cmp.Or(m.Channel, update.DefaultChannel)
	written, err := update.WriteRelease(out, m, []update.Input{{Name: update.DaemonArtifact, Data: data}})
	if err != nil {
		if created {
			os.RemoveAll(out)
		}
		return nil, fmt.Errorf("writing release: %w", err)
	}
	cfg.Logger.Info("release written", "dir", out, "board", cfg.Board.Name, "version", cfg.Version, "bytes", len(data))
	return written, nil
}
