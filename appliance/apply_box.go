//go:build !router

package appliance

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/cloudbox/cloudbox/boards"
)

// openInstaller returns the installer of a box, or nil and why not (empty
// in host mode).
func openInstaller(cfg UpdateConfig, dir, board, version string, healthy func(context.Context) error, _ func(string), log *slog.Logger) (releaseInstaller, string) {
	disk, ok, err := openSlotDisk()
	if !ok {
		return nil, ""
	}
	if err != nil {
		log.Warn("updates cannot be installed", "error", err)
		return nil, fmt.Sprintf("updates cannot be installed: %v", err)
	}
	trial := trialTime(cfg)
	patterns := []string{"vmlinuz"}
	if b, err := boards.Lookup(board); err == nil {
		patterns = b.KernelFiles
	}
	return &installer{
		installState: installState{stateFile: filepath.Join(dir, installFile), now: time.Now, log: log},
		disk:         disk, running: version, trial: trial,
		slotFile: func(p string) bool {
			for _, pat := range patterns {
				if ok, _ := filepath.Match(pat, filepath.FromSlash(p)); ok {
					return true
				}
			}
			return false
		},
		reboot:        func(tryboot bool, why string) error { return rebootBox(tryboot, board == "rpi", why) },
		healthy:       healthy,
		markCommitted: markTrialCommitted,
	}, ""
}

// slot is the running root partition.
func (in *installer) slot() int { return in.disk.Active }
