package overlay

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/device"
)

// WireGuard's messages that mean a handshake message was refused. They are
// counted as HandshakesRejected; wireguard-go has no counters of its own.
var rejectedHandshakeFormats = map[string]bool{
	"Received invalid initiation message from %s": true,
	"Received invalid response message from %s":   true,
	"Received packet with invalid mac1":           true,
	"Could not decrypt invalid cookie response":   true,
	"Failed to decode initiation message":         true,
	"Failed to decode response message":           true,
	"Failed to decode cookie reply":               true,
}

// errorLogInterval is how often one kind of WireGuard error is logged at
// most; a peer without a path would otherwise log every packet.
const errorLogInterval = 10 * time.Second

// wireGuardLogger routes wireguard-go's log lines to slog as the "wireguard"
// event: verbose lines at Debug, errors at Warn (each kind at most once per
// errorLogInterval).
func (e *Engine) wireGuardLogger() *device.Logger {
	var mu sync.Mutex
	last := make(map[string]time.Time)
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			if rejectedHandshakeFormats[format] {
				e.hsRejected.Add(1)
			}
			if e.log.Enabled(context.Background(), slog.LevelDebug) {
				e.log.Debug("wireguard", "msg", fmt.Sprintf(format, args...))
			}
		},
		Errorf: func(format string, args ...any) {
			if rejectedHandshakeFormats[format] {
				e.hsRejected.Add(1)
			}
			mu.Lock()
			now := time.Now()
			quiet := now.Sub(last[format]) < errorLogInterval
			if !quiet {
				last[format] = now
			}
			mu.Unlock()
			if !quiet {
				e.log.Warn("wireguard", "msg", fmt.Sprintf(format, args...))
			}
		},
	}
}
