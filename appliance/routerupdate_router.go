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
	stateFile := filepath.Join(dir, installFile)
	trial := trialTime(cfg)
	return &binaryInstaller{
		installState: installState{stateFile: stateFile, now: time.Now, log: log},
		bin:          bin, self: self, running: version, trial: trial, healthy: healthy, exec: exec,
		watchdog: func(v string) error {
			// After the trial time plus a margin: a trial that merely
			// fails its health check rolls back by itself at two thirds.
			return startTrialWatchdog(trial+10*time.Second, stateFile, v, os.Getpid(), bin)
		},
	}, ""
}
