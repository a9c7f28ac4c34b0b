//go:build router

package appliance

import "net/http"

// settingsReset is not in the router profile: a router is reset with
// OpenWrt's own tools (firstboot, or removing the package's state).
func (h *handler) settingsReset(w http.ResponseWriter, r *http.Request) {
	h.notFound(w, r)
}

// applyFactoryReset: routers are reset with OpenWrt's tools, not through a
// marker in the state directory.
func applyFactoryReset(string) (bool, error) { return false, nil }
