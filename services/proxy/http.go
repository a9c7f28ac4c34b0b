package proxy

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Response bodies are fixed texts: they never name an address, internal or
// not.
var statusText = map[int]string{
	http.StatusBadRequest:                  "bad request: this is a proxy, send absolute-URI requests or CONNECT\n",
	http.StatusForbidden:                   "access denied by the gateway's rules\n",
	http.StatusProxyAuthRequired:           "proxy authentication required: use your community user name and credential\n",
	http.StatusTooManyRequests:             "too many connections or daily quota used up: try again later\n",
	http.StatusBadGateway:                  "the destination could not be reached\n",
	http.StatusNotImplemented:              "this gateway does not forward https:// URIs: use CONNECT (an https proxy setting)\n",
	http.StatusGatewayTimeout:              "the destination did not answer in time\n",
	http.StatusInternalServerError:         "internal error\n",
	http.StatusRequestHeaderFieldsTooLarge: "request header too large\n",
}

// fail answers with status and its fixed text.
func (p *Proxy) fail(w http.ResponseWriter, status int) {
	switch status {
	case http.StatusBadRequest:
		p.badRequests.Add(1)
	case http.StatusForbidden:
		p.denied.Add(1)
	case http.StatusProxyAuthRequired:
		w.Header().Set("Proxy-Authenticate", `Basic realm="cloudbox", charset="UTF-8"`)
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		p.upstreamErrs.Add(1)
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	io.WriteString(w, statusText[status])
}

// hopByHop are the fields a proxy must not forward (RFC 9110 §7.6.1), with
// the proxy authentication fields (§11.7) this gateway consumes or sets.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopByHop deletes the hop-by-hop fields of h, and those the
// Connection field names.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				delete(h, http.CanonicalHeaderKey(f))
			}
		}
	}
	for _, f := range hopByHop {
		delete(h, f)
	}
}

// serveHTTP is the handler of the HTTP listeners.
func (p *Proxy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	p.wg.Add(1) // the connection's goroutine holds a count, so Add is safe
	defer p.wg.Done()
	cc, _ := r.Context().Value(connKey{}).(*clientConn)
	if cc == nil {
		p.fail(w, http.StatusInternalServerError)
		return
	}
	u, status := p.httpUser(r, cc)
	if status != 0 {
		p.fail(w, status)
		return
	}
	if r.Method == http.MethodConnect {
		p.serveConnect(w, r, cc, u)
		return
	}
	if !r.URL.IsAbs() || (r.URL.Scheme != "http" && r.URL.Scheme != "https") || r.URL.Host == "" || r.URL.User != nil {
		p.fail(w, http.StatusBadRequest)
		return
	}
	port := r.URL.Port()
	if port == "" {
		port = "80"
		if r.URL.Scheme == "https" {
			port = "443"
		}
	}
	if status := p.checkTarget(r.URL.Hostname(), port, false, false); status != 0 {
		p.fail(w, status)
		return
	}
	if r.URL.Scheme == "https" && p.transport == nil {
		p.fail(w, http.StatusNotImplemented)
		return
	}
	p.requests.Add(1)
	u.requests.Add(1)

	h := r.Header
	removeHopByHop(h)
	h["Via"] = append(h["Via"], p.via(r.ProtoMajor, r.ProtoMinor))
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = nil // keep the Transport from adding its own
	}
	delete(h, "Expect") // net/http has answered 100-continue to the client
	out := &http.Request{
		Method:        r.Method,
		URL:           r.URL,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          r.Body,
		ContentLength: r.ContentLength,
		Host:          r.Host,
	}
	if r.ContentLength == 0 {
		out.Body = nil
	}
	var resp *http.Response
	var err error
	done := func(bool) {}
	if r.URL.Scheme == "http" {
		resp, done, err = p.upstream.roundTrip(r.Context(), out, net.JoinHostPort(r.URL.Hostname(), port))
	} else {
		resp, err = p.transport.RoundTrip(out.WithContext(r.Context()))
	}
	if err != nil {
		if r.Context().Err() == nil {
			p.fail(w, upstreamStatus(err))
		}
		return
	}
	defer resp.Body.Close()
	rh := w.Header()
	removeHopByHop(resp.Header)
	for k, v := range resp.Header {
		rh[k] = v
	}
	rh["Via"] = append(rh["Via"], p.via(resp.ProtoMajor, resp.ProtoMinor))
	for _, k := range []string{"Content-Type", "Date"} {
		if _, ok := rh[k]; !ok {
			rh[k] = nil // net/http would add them
		}
	}
	w.WriteHeader(resp.StatusCode)
	var n int64
	var cerr error
	if resp.ContentLength >= 0 || r.Method == http.MethodHead {
		n, cerr = io.Copy(w, resp.Body)
	} else {
		n, cerr = copyFlushing(w, resp.Body) // streams of unknown length go out as they come
	}
	done(cerr == nil)
	p.logAccess(u, r.Method, r.URL.Hostname(), r.URL.String(), resp.StatusCode, r.ContentLength, n)
}

// via returns this gateway's entry of the Via field.
func (p *Proxy) via(major, minor int) string {
	if major == 1 && minor == 1 {
		return "1.1 " + p.cfg.Via
	}
	return strconv.Itoa(major) + "." + strconv.Itoa(minor) + " " + p.cfg.Via
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyFlushing copies src to w, flushing after every read. Its error is
// nil when src ended with io.EOF.
func copyFlushing(w http.ResponseWriter, src io.Reader) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	rc := http.NewResponseController(w)
	var n int64
	for {
		m, err := src.Read(*bp)
		if m > 0 {
			if _, werr := w.Write((*bp)[:m]); werr != nil {
				return n, werr
			}
			n += int64(m)
			if ferr := rc.Flush(); ferr != nil {
				return n, ferr
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// upstreamStatus maps a dial or round-trip error to a response status.
func upstreamStatus(err error) int {
	var ne net.Error
	switch {
	case errors.Is(err, ErrDeniedDestination):
		return http.StatusForbidden
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// checkTarget applies the port rule and, for address literals, the
// destination rule (names are checked when dialled). It returns 0 or the
// status to answer.
func (p *Proxy) checkTarget(host, port string, tunnel, socks bool) int {
	if host == "" {
		return http.StatusBadRequest
	}
	pn, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return http.StatusBadRequest
	}
	if !p.pol.portAllowed(uint16(pn), tunnel, socks) {
		return http.StatusForbidden
	}
	if ip, err := netip.ParseAddr(host); err == nil && !p.pol.destAllowed(ip) {
		return http.StatusForbidden
	}
	return 0
}

// httpUser authenticates the request's Proxy-Authorization and binds its
// user to the connection. It returns the user, or the status to answer.
func (p *Proxy) httpUser(r *http.Request, cc *clientConn) (*user, int) {
	var u *user
	switch hdr := r.Header.Get("Proxy-Authorization"); {
	case p.cfg.Keys == nil:
		u = p.userFor("", "")
	case hdr != "" && hdr == cc.authHdr && p.cfg.Now().Before(cc.authExp):
		u = cc.authUser
	default:
		name, token, ok := parseBasic(hdr)
		if !ok {
			p.authFailures.Add(1)
			return nil, http.StatusProxyAuthRequired
		}
		var err error
		if u, err = p.authenticate(name, token); err != nil {
			p.authFailures.Add(1)
			return nil, http.StatusProxyAuthRequired
		}
		cc.authHdr, cc.authUser, cc.authExp = hdr, u, p.credExpiry(name, token)
	}
	if err := cc.bind(u); err != nil {
		return nil, http.StatusTooManyRequests
	}
	if p.overQuota(u) {
		return nil, http.StatusTooManyRequests
	}
	return u, 0
}

// credExpiry returns the expiry of a credential that authenticate accepted.
func (p *Proxy) credExpiry(name, token string) time.Time {
	if c, ok := p.creds.get(cacheKey(name, token)); ok {
		return c.Expires
	}
	return time.Time{} // no cache: verify every time
}

// parseBasic decodes "Basic base64(user:password)" (RFC 7617).
func parseBasic(h string) (name, password string, ok bool) {
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") || len(rest) > 4096 {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return "", "", false
	}
	name, password, ok = strings.Cut(string(raw), ":")
	if !ok || name == "" {
		return "", "", false
	}
	return name, password, true
}

// serveConnect opens a tunnel (RFC 9110 §9.3.6).
func (p *Proxy) serveConnect(w http.ResponseWriter, r *http.Request, cc *clientConn, u *user) {
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		p.fail(w, http.StatusBadRequest)
		return
	}
	if status := p.checkTarget(host, port, true, false); status != 0 {
		p.fail(w, status)
		return
	}
	dst, err := p.dialer.DialContext(r.Context(), "tcp", r.Host) // Timeout: DialTimeout
	if err != nil {
		p.fail(w, upstreamStatus(err))
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		dst.Close()
		p.fail(w, http.StatusInternalServerError)
		return
	}
	_, err = io.WriteString(cc.Conn, "HTTP/1.1 200 Connection established\r\n\r\n")
	if n := brw.Reader.Buffered(); n > 0 && err == nil { // sent before our answer
		b, _ := brw.Reader.Peek(n)
		_, err = dst.Write(b)
	}
	if err != nil {
		conn.Close()
		dst.Close()
		return
	}
	// The tunnel runs on a goroutine of its own, so that net/http's
	// connection goroutine and its buffers go away now.
	p.wg.Go(func() {
		defer conn.Close()
		defer dst.Close()
		upN, downN := p.tunnel(cc, dst, u)
		p.logAccess(u, http.MethodConnect, host, r.Host, http.StatusOK, upN, downN)
	})
}
