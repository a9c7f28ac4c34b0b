package image

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/cloudbox/cloudbox/boards"
	"github.com/cloudbox/cloudbox/image/internal/gobuild"
)

// programs are the Go main packages of an image, by the name of the binary
// they produce. gokrazy's helpers are pinned as tools in go.mod.
var programs = map[string]string{
	"init":      "./image/init",
	"cloudboxd": "./cmd/cloudboxd",
	"dhcp":      "github.com/gokrazy/gokrazy/cmd/dhcp",
	"ntp":       "github.com/gokrazy/gokrazy/cmd/ntp",
	"randomd":   "github.com/gokrazy/gokrazy/cmd/randomd",
}

// buildPrograms compiles every program for board b into dir. The flags make
// the output depend only on the sources, the toolchain and these settings:
// -trimpath, no build ID, version and build time from the config.
func buildPrograms(ctx context.Context, cfg *Config, b boards.Board, dir string) error {
	ldflags := strings.Join([]string{
		"-s", "-w", "-buildid=",
		"-X", "main.buildTimestamp=" + cfg.buildTimestamp(),
		"-X", "github.com/cloudbox/cloudbox/internal/buildinfo.Version=" + cfg.Version,
		"-X", "github.com/cloudbox/cloudbox/internal/buildinfo.Board=" + b.Name,
		cfg.LDFlags,
	}, " ")
	args := []string{"-o", dir + string(filepath.Separator), "-trimpath",
		"-tags", "gokrazy,netgo,osusergo", "-ldflags", ldflags}
	for _, name := range sortedKeys(programs) {
		args = append(args, programs[name])
	}
	if err := gobuild.Build(ctx, cfg.GoCmd, cfg.SourceDir, b, args...); err != nil {
		return fmt.Errorf("compiling the image's programs: %w", err)
	}
	return nil
}

// moduleDir returns the directory of a module pinned in go.mod, downloading
// it into the module cache if needed.
func moduleDir(ctx context.Context, cfg *Config, path string) (string, error) {
	cmd := exec.CommandContext(ctx, cfg.goCmd(), "mod", "download", "-json", path)
	cmd.Dir = cfg.SourceDir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("downloading module %s: %w: %s", path, err, strings.TrimSpace(stderr.String()+stdout.String()))
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(stdout.Bytes(), &info); err != nil {
		return "", fmt.Errorf("reading go mod download output for %s: %w", path, err)
	}
	if info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("module %s not available: %s", path, info.Error)
	}
	return info.Dir, nil
}
