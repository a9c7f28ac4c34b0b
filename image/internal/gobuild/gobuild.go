// Package gobuild runs the go command for the image and package builders:
// cross-compiling for a board with the flags that make a binary depend only
// on the sources, the toolchain and the settings, and locating the cloudbox
// source tree and the toolchain. It does not decide what to build.
package gobuild

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/cloudbox/cloudbox/boards"
)

// Build runs `go build` with args in dir, cross-compiling static binaries
// for board b with VCS stamping off. goCmd empty means "go" from PATH. The
// error carries the compiler's output.
func Build(ctx context.Context, goCmd, dir string, b boards.Board, args ...string) error {
	cmd := exec.CommandContext(ctx, orGo(goCmd), append([]string{"build"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), b.GoEnv()...), "GOFLAGS=-buildvcs=false")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("compiling for %s: %w: %s", b.Name, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// EnvVar returns one variable of `go env`, run in dir.
func EnvVar(ctx context.Context, goCmd, dir, name string) (string, error) {
	cmd := exec.CommandContext(ctx, orGo(goCmd), "env", name)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// SourceDir returns the root of the cloudbox module containing the working
// directory.
func SourceDir(ctx context.Context, goCmd string) (string, error) {
	gomod, err := EnvVar(ctx, goCmd, "", "GOMOD")
	if err != nil {
		return "", fmt.Errorf("locating the cloudbox source tree: %w", err)
	}
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the cloudbox source tree: run cloudbox from its checkout or pass the source directory")
	}
	return filepath.Dir(gomod), nil
}

func orGo(goCmd string) string {
	if goCmd == "" {
		return "go"
	}
	return goCmd
}
