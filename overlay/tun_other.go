//go:build !linux

package overlay

import (
	"fmt"

	"golang.zx2c4.com/wireguard/tun"
)

// createTUN fails: the overlay's interface configuration is Linux only.
func createTUN(name string, mtu int) (tun.Device, error) {
	return nil, fmt.Errorf("creating %s: %w", name, ErrUnsupported)
}
