//go:build !router

package appliance

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
)

// resetMarker, in the state directory, asks the next start to erase the
// state: a factory reset. It is written before the restart and removed
// last, so a power cut in the middle of the erase finishes it at the next
// start.
const resetMarker = ".factory-reset"

// resetConfirm is what an administrator types to confirm a factory reset.
const resetConfirm = "reset"

// requestFactoryReset marks stateDir for erasure at the next start.
func requestFactoryReset(stateDir string) error {
	if err := atomicfile.Write(filepath.Join(stateDir, resetMarker), []byte("factory reset requested\n"), 0o600); err != nil {
		return fmt.Errorf("marking the factory reset: %w", err)
	}
	return nil
}

// applyFactoryReset erases everything in stateDir if a factory reset was
// requested; it runs at start, before anything reads the state, like
// applyRestore. It reports whether it erased the state.
func applyFactoryReset(stateDir string) (bool, error) {
	if fi, err := os.Stat(stateDir); err != nil || !fi.IsDir() {
		return false, nil // opening the state reports it
	}
	marker := filepath.Join(stateDir, resetMarker)
	if _, err := os.Lstat(marker); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("reading the factory reset marker: %w", err)
	}
	entries, err := os.ReadDir(stateDir)
	if err != nil {
		return false, fmt.Errorf("factory reset: %w", err)
	}
	for _, e := range entries {
		if e.Name() == resetMarker {
			continue
		}
		if err := os.RemoveAll(filepath.Join(stateDir, e.Name())); err != nil {
			return false, fmt.Errorf("factory reset: %w", err)
		}
	}
	if err := atomicfile.SyncDir(stateDir); err != nil {
		return false, fmt.Errorf("factory reset: %w", err)
	}
	if err := os.Remove(marker); err != nil {
		return false, fmt.Errorf("factory reset: %w", err)
	}
	return true, atomicfile.SyncDir(stateDir)
}
