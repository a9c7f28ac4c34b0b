package appliance

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"
)

// maxCredentialRequest bounds the (ignored) body of POST
// /api/v1/proxy/credentials.
const maxCredentialRequest = 4 << 10

// errNoGateway is the answer of the gateway endpoints of a daemon without
// the gateway component (handler tests).
const errNoGateway = "the gateway component is not running on this box"

// CredentialInfo is the body of the answer of POST
// /api/v1/proxy/credentials: a proxy credential for the member who asked.
type CredentialInfo struct {
	User       string    `json:"user"`
	Credential string    `json:"credential"`
	Box        string    `json:"box_id"`
	Expires    time.Time `json:"expires"`
	// LocalProxy is this box's local proxy port, PAC its proxy
	// auto-config file, both at the address the request reached.
	LocalProxy string `json:"local_proxy,omitempty"`
	PAC        string `json:"pac"`
	// Example is a command that uses the credential.
	Example string `json:"example"`
}

// localAddr returns the address of this box that r reached.
func localAddr(r *http.Request) netip.Addr {
	la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(la.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// hostOf returns how a client writes the host local in a URL.
func hostOf(r *http.Request, local netip.Addr) string {
	if local.IsValid() && !local.IsUnspecified() {
		if local.Is6() {
			return "[" + local.String() + "]"
		}
		return local.String()
	}
	h, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		return r.Host
	}
	return h
}

// credentialFor issues a credential to the principal of r.
func (h *handler) credentialFor(r *http.Request) (CredentialInfo, error) {
	p, _ := who(r)
	tok, exp, err := h.cfg.gateway.issue(p.account)
	if err != nil {
		return CredentialInfo{}, err
	}
	local := localAddr(r)
	host := hostOf(r, local)
	c := CredentialInfo{User: p.account, Credential: tok, Box: h.cfg.node.ID(), Expires: exp,
		PAC: "http://" + host + "/proxy.pac"}
	proxyURL := ""
	v := h.cfg.gateway.view()
	if _, port, err := net.SplitHostPort(v.Local.Addr); err == nil {
		c.LocalProxy = "http://" + host + ":" + port
		proxyURL = c.LocalProxy
	} else if v.Running {
		proxyURL = "http://" + host + ":" + strconv.Itoa(int(v.HTTPPort))
	}
	if proxyURL != "" {
		c.Example = fmt.Sprintf("curl -x %s -U '%s:%s' https://example.org/", proxyURL, p.account, tok)
	}
	return c, nil
}

// proxyInfo answers GET /api/v1/proxy.
func (h *handler) proxyInfo(w http.ResponseWriter, r *http.Request) {
	if h.cfg.gateway == nil {
		writeJSON(w, http.StatusServiceUnavailable, errorResponse{Error: errNoGateway})
		return
	}
	writeJSON(w, http.StatusOK, h.cfg.gateway.view())
}

// proxyCredential answers POST /api/v1/proxy/credentials: a new proxy
// credential for the account of the request, valid on every gateway that
// serves this box's users.
func (h *handler) proxyCredential(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, errorResponse{
			Error: fmt.Sprintf("method %s not allowed on %s; use POST", r.Method, r.URL.Path),
		})
		return
	}
	io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, maxCredentialRequest))
	if h.cfg.gateway == nil {
		writeJSON(w, http.StatusServiceUnavailable, errorResponse{Error: errNoGateway})
		return
	}
	c, err := h.credentialFor(r)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorResponse{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

// pacFile serves the proxy auto-config file, at /proxy.pac and at
// /wpad.dat for WPAD. It is public: it names gateways and ranges, no
// secret.
func (h *handler) pacFile(w http.ResponseWriter, r *http.Request) {
	if h.cfg.gateway == nil {
		http.Error(w, errNoGateway, http.StatusServiceUnavailable)
		return
	}
	b, err := h.cfg.gateway.pac(localAddr(r))
	if err != nil {
		h.cfg.logger.Error("rendering the pac file failed", "error", err)
		http.Error(w, "the proxy auto-config file could not be made; the error is in the cloudboxd log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-ns-proxy-autoconfig")
	w.Header().Set("Cache-Control", "max-age=60")
	w.Write(b)
}

// gatewayPage shows this box's gateway, the community's gateways and how
// to use them.
func (h *handler) gatewayPage(w http.ResponseWriter, r *http.Request) {
	h.renderGateway(w, r, http.StatusOK, nil, "")
}

func (h *handler) renderGateway(w http.ResponseWriter, r *http.Request, code int, cred *CredentialInfo, credErr string) {
	var v GatewayInfo
	if h.cfg.gateway != nil {
		v = h.cfg.gateway.view()
	} else {
		v.State = errNoGateway
	}
	host := hostOf(r, localAddr(r))
	var users []gatewayUserRow
	if v.Stats != nil {
		for _, u := range v.Stats.Users {
			row := gatewayUserRow{User: u.User, Box: u.Box, Conns: u.Conns, Requests: u.Requests,
				Up: formatBytes(u.BytesUp), Down: formatBytes(u.BytesDown), Quota: formatBytes(uint64(max(u.QuotaUsed, 0)))}
			if u.QuotaLimit > 0 {
				row.Quota += " of " + formatBytes(uint64(u.QuotaLimit))
			}
			users = append(users, row)
		}
	}
	h.render(w, code, h.panel.gateway, struct {
		pageData
		Gateway    GatewayInfo
		Users      []gatewayUserRow
		PAC        string
		Credential *CredentialInfo
		CredErr    string
	}{h.pageFor(r, "Gateway", "/gateway"), v, users, "http://" + host + "/proxy.pac", cred, credErr})
}

// gatewayUserRow is a user of this box's gateway as the page shows it.
type gatewayUserRow struct {
	User, Box       string
	Conns           int
	Requests        uint64
	Up, Down, Quota string
}

// gatewayCredential handles the page's form that issues a credential.
func (h *handler) gatewayCredential(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, fmt.Sprintf("method %s not allowed; use POST", r.Method), http.StatusMethodNotAllowed)
		return
	}
	if h.cfg.gateway == nil {
		h.renderGateway(w, r, http.StatusServiceUnavailable, nil, errNoGateway)
		return
	}
	c, err := h.credentialFor(r)
	if err != nil {
		h.renderGateway(w, r, http.StatusInternalServerError, nil, err.Error())
		return
	}
	h.renderGateway(w, r, http.StatusOK, &c, "")
}

// writeGatewayMetrics adds the gateway's and the local port's metrics.
func (h *handler) writeGatewayMetrics(w io.Writer) {
	g := h.cfg.gateway
	if g == nil {
		return
	}
	if px := g.current(); px != nil {
		px.WriteMetrics(w)
	}
	v := g.view()
	healthy := 0
	for _, e := range v.Gateways {
		if e.Healthy {
			healthy++
		}
	}
	fmt.Fprintf(w, "# HELP cloudbox_gateway_healthy Healthy gateways of the community.\n# TYPE cloudbox_gateway_healthy gauge\ncloudbox_gateway_healthy %d\n", healthy)
	for _, m := range []struct {
		name, typ, help string
		v               any
	}{
		{"local_connections_active", "gauge", "Connections open on the local proxy port.", v.Local.Active},
		{"local_forwarded_total", "counter", "Connections the local proxy port relayed to a gateway.", v.Local.Forwarded},
		{"local_dial_failures_total", "counter", "Dials to a gateway that failed.", v.Local.DialFailures},
		{"local_failovers_total", "counter", "Connections relayed to another gateway than the first choice.", v.Local.Failovers},
		{"local_refused_total", "counter", "Connections refused (source, too many, no gateway).", v.Local.Refused},
	} {
		fmt.Fprintf(w, "# HELP cloudbox_gateway_%s %s\n# TYPE cloudbox_gateway_%s %s\ncloudbox_gateway_%s %v\n", m.name, m.help, m.name, m.typ, m.name, m.v)
	}
}
