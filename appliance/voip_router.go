//go:build router

package appliance

import (
	"context"
	"io"
	"log/slog"
	"net/http"

	"github.com/cloudbox/cloudbox/appliance/state"

	"github.com/cloudbox/cloudbox/services"
)

// Telephony is not in the router profile: the media relay and pion's WebRTC
// stack do not fit a router's budget (the router profile leaves out
// VoIP media). These stand in for voip.go and voipapi.go.

type voipService struct{}

func openVoIPOf(Config, *state.Node, *overlayService, *authService, *slog.Logger) *voipService {
	return &voipService{}
}

func (*voipService) run(context.Context) error           { return nil }
func (*voipService) builtinServices() []services.Service { return nil }

func (*voipService) status(context.Context) ComponentStatus {
	return ComponentStatus{OK: true}
}

func (h *handler) voipRoutes(member, admin func(http.HandlerFunc) http.HandlerFunc) {}
func (h *handler) writeVoIPMetrics(w io.Writer)                                     {}
