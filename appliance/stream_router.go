//go:build router

package appliance

import (
	"bytes"
	"context"
	"log/slog"
	"net"

	"github.com/cloudbox/cloudbox/services"
)

// Live streaming is not in the router profile: pion's WebRTC stack alone is
// bigger than a router's whole budget (issue: the router profile leaves out
// the streaming SFU). These stand in for stream.go and streamapi.go.

// streamService is absent in the router profile; its methods do nothing.
type streamService struct{}

func openStream(StreamConfig, string, string, *overlayService, *slog.Logger) *streamService {
	return &streamService{}
}

func (*streamService) run(context.Context) error           { return nil }
func (*streamService) close()                              {}
func (*streamService) setHTTPAddr(net.Addr)                {}
func (*streamService) builtinServices() []services.Service { return nil }

func (*streamService) status(context.Context) ComponentStatus {
	return ComponentStatus{OK: true}
}

func (h *handler) streamRoutes()                      {}
func (h *handler) writeStreamMetrics(b *bytes.Buffer) {}
