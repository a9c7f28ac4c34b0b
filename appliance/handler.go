package appliance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"sync"
	"time"

	"github.com/cloudbox/cloudbox/appliance/state"
)

// contentSecurityPolicy allows the panel to load only its own resources and
// forbids framing.
const contentSecurityPolicy = "default-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"

// handlerConfig is what the HTTP handler shows; it is immutable.
type handlerConfig struct {
	version    string
	board      string
	node       *state.Node
	started    time.Time
	now        func() time.Time
	components map[string]StatusFunc
	// overlay is shown by the overlay API, the community page and the
	// metrics; nil means the daemon has no overlay (as a non-member).
	overlay overlaySource
	// dns is shown by the DNS API and the metrics; nil means no DNS.
	dns dnsSource
	// catalog is shown by the services API and page; nil means none.
	catalog catalogSource
	// mdns adds its counters to the metrics; nil means none.
	mdns *mdnsService
	// gateway is shown by the proxy API, the gateway page, the PAC file
	// and the metrics; nil means none.
	gateway *gatewayService
	// update is shown by the update API and page; nil means none.
	update *updateService
	// storage serves the shared folders and the vault; nil means none.
	storage *storageService
	// streams is live streaming: API, pages, metrics; nil means none.
	streams *streamService
	// voip is shown by the calls API and page; nil means none.
	voip *voipService
	// stateDir is the state directory, whose file system the dashboard
	// shows; sysRoot is where /proc and /sys are read ("" means "/").
	stateDir, sysRoot string
	// auth holds the accounts and sessions; required.
	auth *authService
	// https serves the panel over HTTPS and holds the box's certificate
	// authority; required (its address is empty when HTTPS is off).
	https *httpsService
	// logs holds the daemon's recent log records; nil shows none.
	logs *logRing
	// restart asks the daemon to restart (after a restore); nil for none.
	restart func()
	logger  *slog.Logger
}

// handler serves the API, metrics and panel. It is immutable after
// newHandler and safe for concurrent use.
type handler struct {
	cfg    handlerConfig
	mux    *http.ServeMux
	root   http.Handler // mux behind CrossOriginProtection
	panel  *panel
	static map[string]staticFile
	// inviteMu serializes invitations, which reserve addresses.
	inviteMu sync.Mutex
}

func newHandler(cfg handlerConfig) (*handler, error) {
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.logs == nil {
		cfg.logs = newLogRing()
	}
	if cfg.auth == nil || cfg.https == nil {
		return nil, errors.New("the handler needs its accounts and certificate authority")
	}
	h := &handler{cfg: cfg, mux: http.NewServeMux()}
	var err error
	if h.static, err = loadStatic(); err != nil {
		return nil, err
	}
	if h.panel, err = newPanel(h.staticURL); err != nil {
		return nil, err
	}

	// Patterns carry no method: handlers check it, so that a wrong method
	// under /api/v1/ gets a JSON error and the catch-all "/" does not
	// conflict with method-specific patterns.
	// Who may use what: see auth.go. The list is in README too.
	member := func(f http.HandlerFunc) http.HandlerFunc { return h.apiAuth(roleMember, f) }
	admin := func(f http.HandlerFunc) http.HandlerFunc { return h.apiAuth(roleAdmin, f) }
	h.mux.Handle("/api/v1/status", apiGetOnly(h.optionalAuth(h.status)))
	h.mux.Handle("/api/v1/overlay/peers", member(apiGetOnly(h.overlayPeers)))
	h.mux.Handle("/api/v1/overlay/revoke", admin(h.overlayRevoke))
	h.mux.Handle("/api/v1/dns", member(apiGetOnly(h.dnsInfo)))
	h.mux.Handle("/api/v1/overlay/join", admin(h.overlayJoin))
	h.mux.Handle("/api/v1/services", member(h.apiServices))
	h.mux.Handle("/api/v1/proxy", member(apiGetOnly(h.proxyInfo)))
	h.mux.Handle("/api/v1/proxy/credentials", member(h.proxyCredential))
	h.mux.Handle("/api/v1/tls", member(apiGetOnly(h.tlsAPI)))
	h.mux.Handle("/api/v1/logs", admin(apiGetOnly(h.logsAPI)))
	h.mux.Handle("/api/v1/settings", member(h.settingsAPI))
	h.mux.Handle("/api/v1/backup", admin(h.backupAPI))
	h.mux.Handle("/api/v1/restore", admin(h.restoreAPI))
	h.mux.Handle("/api/v1/update", member(apiGetOnly(h.updateInfo)))
	h.mux.Handle("/api/v1/update/releases", admin(h.releaseUpload))
	h.mux.Handle("/api/v1/storage", member(apiGetOnly(h.apiStorage)))
	h.mux.Handle("/api/v1/storage/vault", member(h.apiVault))
	h.mux.Handle("/api/v1/storage/vault/read", member(apiGetOnly(h.apiVaultRead)))
	h.mux.Handle("/api/v1/storage/links", member(h.apiLinks))
	h.voipRoutes(member, admin)
	h.storageRoutes(member, admin)
	h.mux.HandleFunc("/api/v1/", apiNotFound)
	h.mux.Handle("/metrics", member(getOnly(h.metrics)))
	h.mux.Handle("/healthz", getOnly(healthz))
	h.mux.Handle("/static/", getOnly(h.serveStatic))
	h.mux.HandleFunc("/login", h.login)
	h.mux.Handle("/logout", h.pageAuth(roleMember, h.logout))
	h.mux.HandleFunc("/setup", h.setup)
	h.mux.Handle("/setup/account", h.wizardAuth(h.setupAccount))
	h.mux.Handle("/setup/box", h.wizardAuth(h.setupBox))
	h.mux.Handle("/setup/community", h.wizardAuth(h.setupCommunity))
	h.mux.Handle("/setup/progress", getOnly(h.pageAuth(roleMember, h.setupProgress)))
	h.mux.Handle("/{$}", getOnly(h.pageAuth(roleMember, h.dashboard)))
	h.mux.Handle("/community", getOnly(h.pageAuth(roleMember, h.community)))
	h.mux.Handle("/community/join", h.pageAuth(roleAdmin, h.communityJoin))
	h.mux.Handle("/community/invite", h.pageAuth(roleAdmin, h.communityInvite))
	h.mux.Handle("/services", getOnly(h.pageAuth(roleMember, h.servicesPage)))
	h.mux.Handle("/services/edit", h.pageAuth(roleMember, h.servicesForm))
	h.mux.Handle("/proxy.pac", getOnly(h.pacFile))
	h.mux.Handle("/wpad.dat", getOnly(h.pacFile))
	h.mux.Handle("/ca.crt", getOnly(h.caCertificate))
	h.mux.Handle("/ca.pem", getOnly(h.caCertificate))
	h.mux.Handle("/certificate", getOnly(h.optionalAuth(h.certificatePage)))
	h.mux.HandleFunc("/lang", h.setLanguage)
	h.mux.Handle("/logs", getOnly(h.pageAuth(roleAdmin, h.logsPage)))
	h.mux.Handle("/settings", getOnly(h.pageAuth(roleMember, h.settingsPage)))
	h.mux.Handle("/settings/box", h.pageAuth(roleAdmin, h.settingsBox))
	h.mux.Handle("/settings/backup", h.pageAuth(roleAdmin, h.settingsBackup))
	h.mux.Handle("/settings/restore", h.pageAuth(roleAdmin, h.settingsRestore))
	h.mux.Handle("/settings/reset", h.pageAuth(roleAdmin, h.settingsReset))
	h.mux.Handle("/settings/network", h.pageAuth(roleAdmin, h.settingsNetwork))
	h.mux.Handle("/setup/restore", h.wizardAuth(h.setupRestore))
	h.mux.Handle("/gateway", getOnly(h.pageAuth(roleMember, h.gatewayPage)))
	h.mux.Handle("/gateway/credential", h.pageAuth(roleMember, h.gatewayCredential))
	h.mux.Handle("/updates", getOnly(h.pageAuth(roleMember, h.updatesPage)))
	h.mux.HandleFunc("/dav/", h.dav)
	h.mux.Handle("/s/{token}", getOnly(h.shareLink))
	h.mux.Handle("/storage", getOnly(h.pageAuth(roleMember, h.storagePage)))
	h.mux.Handle("/storage/files", getOnly(h.pageAuth(roleMember, h.filesPage)))
	h.streamRoutes()
	h.mux.Handle("/accounts", getOnly(h.pageAuth(roleMember, h.accountsPage)))
	h.mux.Handle("/accounts/edit", h.pageAuth(roleMember, h.accountsEdit))
	for _, p := range navItems {
		if p.Soon {
			h.mux.Handle(p.Path, getOnly(h.pageAuth(roleMember, h.soon(p))))
		}
	}
	h.mux.HandleFunc("/", h.optionalAuth(h.notFound))
	// Every state-changing request from another web site is refused
	// (Sec-Fetch-Site, Origin); sessions add their CSRF token on top.
	h.root = http.NewCrossOriginProtection().Handler(h.mux)
	return h, nil
}

// ServeHTTP sets the security headers on every response and dispatches.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	// Not "no-referrer": under it browsers send "Origin: null" on the
	// panel's own form posts, and over plain HTTP (no Sec-Fetch-Site)
	// CrossOriginProtection then refuses them.
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("X-Frame-Options", "DENY")
	if h.httpsRedirect(w, r) {
		return
	}
	h.root.ServeHTTP(w, r)
}

// statusResponse is the body of GET /api/v1/status.
type statusResponse struct {
	Version    string                     `json:"version"`
	Board      string                     `json:"board"`
	NodeName   string                     `json:"node_name"`
	NodeID     string                     `json:"node_id"`
	UptimeS    int64                      `json:"uptime_s"`
	Components map[string]ComponentStatus `json:"components"`
}

func (h *handler) snapshot(r *http.Request) statusResponse {
	return statusResponse{
		Version:    h.cfg.version,
		Board:      h.cfg.board,
		NodeName:   h.cfg.node.Name,
		NodeID:     h.cfg.node.ID(),
		UptimeS:    int64(h.uptime() / time.Second),
		Components: collectStatus(r.Context(), h.cfg.components),
	}
}

func (h *handler) uptime() time.Duration {
	return max(h.cfg.now().Sub(h.cfg.started), 0)
}

// status answers GET /api/v1/status; without an account it leaves out the
// components' details and errors, which name addresses and files.
func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	s := h.snapshot(r)
	if _, ok := who(r); !ok {
		for name, c := range s.Components {
			s.Components[name] = ComponentStatus{OK: c.OK}
		}
	}
	writeJSON(w, http.StatusOK, s)
}

func healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintln(w, "ok")
}

// errorResponse is the body of every error under /api/v1/.
type errorResponse struct {
	Error string `json:"error"`
}

func apiNotFound(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusNotFound, errorResponse{
		Error: fmt.Sprintf("no API endpoint %s; see GET /api/v1/status", r.URL.Path),
	})
}

// allowedMethods is the Allow header of every read-only endpoint: all but
// the POST ones (/api/v1/overlay/revoke, /api/v1/overlay/join,
// /api/v1/proxy/credentials).
const allowedMethods = "GET, HEAD"

func isGet(r *http.Request) bool { return r.Method == http.MethodGet || r.Method == http.MethodHead }

// apiGetOnly answers methods other than GET and HEAD with a JSON 405.
func apiGetOnly(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !isGet(r) {
			w.Header().Set("Allow", allowedMethods)
			writeJSON(w, http.StatusMethodNotAllowed, errorResponse{
				Error: fmt.Sprintf("method %s not allowed on %s; use GET", r.Method, r.URL.Path),
			})
			return
		}
		next(w, r)
	}
}

// getOnly answers methods other than GET and HEAD with a plain 405.
func getOnly(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !isGet(r) {
			w.Header().Set("Allow", allowedMethods)
			http.Error(w, fmt.Sprintf("method %s not allowed; use GET", r.Method), http.StatusMethodNotAllowed)
			return
		}
		next(w, r)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(errorResponse{Error: "encoding response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// decodeJSONPost reads the JSON body of a POST into v: it answers a wrong
// method (405), content type (415), a body over limit bytes (413) or one
// that does not decode strictly into v (400, showing example) itself and
// then returns false.
func decodeJSONPost(w http.ResponseWriter, r *http.Request, limit int64, v any, example string) bool {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, errorResponse{
			Error: fmt.Sprintf("method %s not allowed on %s; use POST", r.Method, r.URL.Path),
		})
		return false
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeJSON(w, http.StatusUnsupportedMediaType, errorResponse{
			Error: "send the request as Content-Type: application/json, e.g. " + example,
		})
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		writeJSON(w, http.StatusRequestEntityTooLarge, errorResponse{Error: fmt.Sprintf("request body over %d bytes", limit)})
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if derr := dec.Decode(v); err != nil || derr != nil {
		writeJSON(w, http.StatusBadRequest, errorResponse{Error: "want " + example})
		return false
	}
	return true
}
