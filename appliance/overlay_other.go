//go:build !linux

package appliance

import (
	"fmt"

	"github.com/cloudbox/cloudbox/overlay"
)

// checkTUN fails: the overlay runs on Linux only.
func checkTUN(name string) error {
	return fmt.Errorf("creating TUN device %s: %w", name, overlay.ErrUnsupported)
}
