//go:build router

package appliance

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// openInstaller returns the installer of a router: its releases replace
// the running cloudboxd (routerinstall.go). exec stops the daemon and
// replaces the process with a binary.
func openInstaller(cfg UpdateConfig, dir, board, version string, healthy func(context.Context) error, exec func(string), log *slog.Logger) (releaseInstaller, string) {
	bin, err := routerBinary()
	if err != nil {
		return nil, fmt.Sprintf("updates cannot be installed: %v", err)
	}
	self, _ := os.Executable()
	return &binaryInstaller{
		installState: installState{stateFile: filepath.Join(dir, installFile), now: time.Now, log: log},
		bin:          bin, self: self, running: version, trial: trialTime(cfg), healthy: healthy, exec: exec,
	}, ""
}
