package image

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/cloudbox/cloudbox/boards"
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

// goEnv is the environment for cross-compiling to board b: static binaries,
// no VCS stamping, nothing from the build host's C toolchain.
func goEnv(b boards.Board) []string {
	env := append(os.Environ(), "GOOS=linux", "GOARCH="+b.GOARCH, "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if b.GOARM != "" {
		env = append(env, "GOARM="+b.GOARM)
	}
	return env
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
	args := []string{"build", "-o", dir + string(filepath.Separator), "-trimpath",
		"-tags", "gokrazy,netgo,osusergo", "-ldflags", ldflags}
	for _, name := range sortedKeys(programs) {
		args = append(args, programs[name])
	}
	cmd := exec.CommandContext(ctx, cfg.goCmd(), args...)
	cmd.Dir = cfg.SourceDir
	cmd.Env = goEnv(b)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("compiling programs for %s: %w: %s", b.Name, err, strings.TrimSpace(stderr.String()))
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

// goEnvVar returns one variable of `go env`, run in dir.
func goEnvVar(ctx context.Context, goCmd, dir, name string) (string, error) {
	cmd := exec.CommandContext(ctx, goCmd, "env", name)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// findSourceDir returns the root of the cloudbox module containing the
// working directory.
func findSourceDir(ctx context.Context, goCmd string) (string, error) {
	gomod, err := goEnvVar(ctx, goCmd, "", "GOMOD")
	if err != nil {
		return "", fmt.Errorf("locating the cloudbox source tree: %w", err)
	}
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the cloudbox source tree: run cloudbox from its checkout or pass the source directory")
	}
	return filepath.Dir(gomod), nil
}
