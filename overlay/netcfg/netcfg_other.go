//go:build !linux

package netcfg

import (
	"context"
	"fmt"
)

// Apply configures the interface; on this platform it always fails.
func Apply(ctx context.Context, cfg Config) error {
	return fmt.Errorf("configuring %s: %w", cfg.Name, ErrUnsupported)
}
