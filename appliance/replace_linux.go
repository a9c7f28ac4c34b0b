package appliance

import (
	"fmt"
	"os"
	"syscall"
)

// execBinary replaces the process with path, keeping its arguments and
// environment.
func execBinary(path string) error {
	if err := syscall.Exec(path, os.Args, os.Environ()); err != nil {
		return fmt.Errorf("starting %s: %w", path, err)
	}
	return nil
}
