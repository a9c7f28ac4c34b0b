//go:build router

package appliance

import (
	"log/slog"
	"testing"
	"time"
)

// newTestHTTPS is the router profile's HTTPS for the handler's tests: off.
func newTestHTTPS(t *testing.T) *httpsService {
	t.Helper()
	ca, _ := openCertAuthority(certAuthorityConfig{})
	return newHTTPS(ca, "", nil, time.Second, slog.New(slog.DiscardHandler))
}
