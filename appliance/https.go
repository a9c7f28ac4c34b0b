package appliance

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultHTTPSAddr is the address of the panel over HTTPS on a box.
const DefaultHTTPSAddr = ":443"

// httpsCookie marks a browser that has used the panel over HTTPS, which
// proves that it trusts the box's certificate: its page requests over
// plain HTTP are redirected to HTTPS from then on. Browsers that never
// did stay on HTTP (the first visit, before the authority is installed).
const httpsCookie = "cloudbox_https"

// httpsService serves the panel and API over HTTPS with the certificate
// of the box's own authority.
type httpsService struct {
	// Immutable after newHTTPS; handler is set before run starts.
	ca       *certAuthority
	addr     string       // "" when HTTPS is off and ln is nil
	ln       net.Listener // from Config.HTTPSListener, or nil
	handler  http.Handler
	shutdown time.Duration
	logger   *slog.Logger

	// bound is the address HTTPS listens on once it does ("" before).
	bound atomic.Pointer[string]
	// failed is why HTTPS does not serve, nil while it does.
	failed atomic.Pointer[error]
}

func newHTTPS(ca *certAuthority, addr string, ln net.Listener, shutdown time.Duration, logger *slog.Logger) *httpsService {
	return &httpsService{ca: ca, addr: addr, ln: ln, shutdown: shutdown, logger: logger}
}

// enabled reports whether the box serves HTTPS.
func (s *httpsService) enabled() bool { return s != nil && (s.addr != "" || s.ln != nil) }

// listening returns the address HTTPS listens on, "" before it does or
// when it is off.
func (s *httpsService) listening() string {
	if s == nil {
		return ""
	}
	if p := s.bound.Load(); p != nil {
		return *p
	}
	return ""
}

// run serves HTTPS until ctx is done; it returns nil at once when HTTPS is
// off. When it cannot listen or serve, it logs why, reports it in its
// status and returns nil: the panel stays reachable over HTTP.
func (s *httpsService) run(ctx context.Context) error {
	if !s.enabled() {
		return nil
	}
	if err := s.serve(ctx); err != nil {
		s.failed.Store(&err)
		s.logger.Error("https failed, the panel answers over http only", "error", err)
	}
	return nil
}

// status reports whether HTTPS serves.
func (s *httpsService) status(context.Context) ComponentStatus {
	switch {
	case !s.enabled():
		return ComponentStatus{OK: true, Detail: map[string]string{"https": "off"}}
	case s.failed.Load() != nil:
		return ComponentStatus{Error: (*s.failed.Load()).Error() + "; the panel answers over HTTP only (free the port or change --https, then restart cloudboxd)"}
	}
	return ComponentStatus{OK: true, Detail: map[string]string{"addr": s.listening(), "ca_sha256": s.ca.fingerprint()}}
}

// stayOnHTTP are the paths never redirected to HTTPS: machines fetch them
// over HTTP (the PAC file, whose URL browsers and systems have configured;
// health checks; Prometheus; the CA certificate itself, needed before
// HTTPS can be trusted) and API clients configured with an http:// URL
// keep working (a redirect would drop their POST bodies).
var stayOnHTTP = []string{"/api/", "/proxy.pac", "/wpad.dat", "/healthz", "/metrics", "/ca.crt", "/ca.pem", "/certificate", "/static/"}

// httpsRedirect sends a browser that has used HTTPS before (httpsCookie)
// from a page over HTTP to the same page over HTTPS, and marks browsers on
// HTTPS with the cookie. It reports whether it answered r.
func (h *handler) httpsRedirect(w http.ResponseWriter, r *http.Request) bool {
	hs := h.cfg.https
	if r.TLS != nil {
		http.SetCookie(w, &http.Cookie{Name: httpsCookie, Value: "1", Path: "/", HttpOnly: true,
			SameSite: http.SameSiteLaxMode, MaxAge: 365 * 24 * 3600})
		return false
	}
	if !hs.enabled() || !isGet(r) {
		return false
	}
	if c, err := r.Cookie(httpsCookie); err != nil || c.Value != "1" {
		return false
	}
	for _, p := range stayOnHTTP {
		if strings.HasPrefix(r.URL.Path, p) {
			return false
		}
	}
	u := h.httpsURL(r)
	if u == "" {
		return false
	}
	http.Redirect(w, r, u+r.URL.RequestURI(), http.StatusFound)
	return true
}

// httpsURL returns the HTTPS origin of the host r was sent to, e.g.
// "https://box.local:8443", or "" when HTTPS is off or not listening.
func (h *handler) httpsURL(r *http.Request) string {
	bound := h.cfg.https.listening()
	if bound == "" || r.Host == "" {
		return ""
	}
	_, port, err := net.SplitHostPort(bound)
	if err != nil {
		return ""
	}
	host := r.Host
	if hh, _, err := net.SplitHostPort(r.Host); err == nil {
		host = hh
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		host = "[" + host + "]"
	}
	if port == "443" {
		return "https://" + host
	}
	return "https://" + host + ":" + port
}

// caCertificate serves the authority's certificate: DER as
// application/x-x509-ca-cert at /ca.crt (what phones and Windows install),
// PEM at /ca.pem (curl --cacert, Firefox, Linux).
func (h *handler) caCertificate(w http.ResponseWriter, r *http.Request) {
	ca := h.cfg.https.ca
	w.Header().Set("Cache-Control", "no-cache")
	if strings.HasSuffix(r.URL.Path, ".pem") {
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Header().Set("Content-Disposition", `attachment; filename="cloudbox-`+h.cfg.node.Name+`-ca.pem"`)
		w.Write(ca.certPEM())
		return
	}
	w.Header().Set("Content-Type", "application/x-x509-ca-cert")
	w.Header().Set("Content-Disposition", `attachment; filename="cloudbox-`+h.cfg.node.Name+`-ca.crt"`)
	w.Write(ca.caDER())
}

// tlsAPI answers GET /api/v1/tls.
func (h *handler) tlsAPI(w http.ResponseWriter, r *http.Request) {
	in := h.cfg.https.ca.info()
	in.HTTPS = h.cfg.https.listening()
	writeJSON(w, http.StatusOK, in)
}

// certificatePage shows how to trust the box: the authority's fingerprint,
// the downloads and the steps for each system. Anyone may read it, before
// setup too: it is how a browser comes to trust the box.
func (h *handler) certificatePage(w http.ResponseWriter, r *http.Request) {
	in := h.cfg.https.ca.info()
	h.render(w, http.StatusOK, h.panel.certificate, struct {
		pageData
		Info     tlsInfo
		HTTPSURL string
		OnHTTPS  bool
	}{h.pageFor(r, "HTTPS certificate", ""), in, h.httpsURL(r), r.TLS != nil})
}

// tlsAddrs returns the box's addresses for its certificate: those of its
// interfaces that are up (LAN and overlay).
func tlsAddrs() []netip.Addr {
	var out []netip.Addr
	for _, p := range upAddrPrefixes() {
		out = append(out, p.Addr().Unmap())
	}
	return out
}
