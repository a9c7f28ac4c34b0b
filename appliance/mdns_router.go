//go:build router

package appliance

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
)

// mdnsService stands in for mDNS, which the router profile leaves out: it
// costs about 0.4 MB on mipsle, and OpenWrt routers announce their LAN
// with umdns already. The community's services stay reachable by DNS-SD
// in the community zone (dnsproxy); LAN services are not published to the
// catalog from a router.
type mdnsService struct {
	cfg MDNSConfig
	log *slog.Logger
}

func openMDNS(cfg MDNSConfig, _ string, _, _ string, _ *catalogService, _ func() map[string][]netip.AddrPort,
	_ func() <-chan struct{}, log *slog.Logger) *mdnsService {
	return &mdnsService{cfg: cfg, log: log.With("component", "mdns")}
}

// run says once that mDNS is not available, unless it is turned off.
func (m *mdnsService) run(context.Context) error {
	if !m.cfg.Disabled {
		m.log.Info("mdns not in the router profile", "instead", "umdns")
	}
	return nil
}

func (m *mdnsService) status(context.Context) ComponentStatus {
	return ComponentStatus{OK: true, Detail: map[string]string{"state": "disabled", "reason": "not in the router profile"}}
}

func (m *mdnsService) writeMetrics(*bytes.Buffer) {}
