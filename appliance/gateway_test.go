package appliance

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/services"
	"github.com/cloudbox/cloudbox/services/proxy"
	"github.com/google/go-cmp/cmp"
)

// gwRecord is a catalog record of a gateway of box name at addr.
func gwRecord(typ, name string, addr string, port uint16, healthy bool) services.Record {
	return services.Record{Service: services.Service{Instance: "gateway (" + name + ")", Type: typ, Port: port,
		TXT: map[string]string{"load": "idle"}}, OwnerID: name + "-id", OwnerName: name,
		OwnerIPv4: netip.MustParseAddr(addr), Healthy: healthy, Builtin: true}
}

func TestOrderGateways(t *testing.T) {
	http := []services.Record{
		gwRecord(gatewayHTTPType, "far", "198.18.0.5", 3128, true),
		gwRecord(gatewayHTTPType, "sick", "198.18.0.6", 3128, false),
		gwRecord(gatewayHTTPType, "unknown", "198.18.0.7", 3128, true),
		gwRecord(gatewayHTTPType, "near", "198.18.0.8", 3128, true),
		gwRecord(gatewayHTTPType, "self", "198.18.0.1", 3128, true),
		gwRecord(gatewayHTTPType, "gone", "198.18.0.9", 3128, true),
	}
	socks := []services.Record{gwRecord(gatewaySOCKSType, "near", "198.18.0.8", 1080, true)}
	rtts := map[string]time.Duration{"far-id": 20 * time.Millisecond, "near-id": 2 * time.Millisecond, "gone-id": time.Millisecond}
	down := func(ap netip.AddrPort) bool { return ap.Addr() == netip.MustParseAddr("198.18.0.9") }
	for _, tc := range []struct {
		name   string
		selfID string
		down   func(netip.AddrPort) bool
		want   []string
	}{
		{"self first, then by RTT, unknown RTT, unhealthy last", "self-id", nil,
			[]string{"self", "gone", "near", "far", "unknown", "sick"}},
		{"a gateway that failed a dial goes after the others", "self-id", down,
			[]string{"self", "near", "far", "unknown", "gone", "sick"}},
		{"not a gateway itself", "client-id", down,
			[]string{"self", "near", "far", "unknown", "gone", "sick"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, e := range orderGateways(http, socks, tc.selfID, rtts, tc.down) {
				got = append(got, e.Box)
			}
			if tc.selfID != "self-id" {
				// "self" is only a name here: it has no RTT, so it sorts
				// with the unknown ones.
				tc.want = []string{"near", "far", "self", "unknown", "gone", "sick"}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("order (-want +got):\n%s", diff)
			}
		})
	}
	order := orderGateways(http, socks, "self-id", rtts, nil)
	if e := order[2]; e.Addr != "198.18.0.8:3128" || e.SOCKS != "198.18.0.8:1080" || e.RTTMs == nil || *e.RTTMs != 2 || e.Load != "idle" {
		t.Errorf("near = %+v", e)
	}
}

// testGateway returns a gateway component of node "b1-id" that is not
// sharing its uplink, whose catalog holds recs.
func testGateway(t *testing.T, h *handler, recs []services.Record, localAddr string) *gatewayService {
	t.Helper()
	var p atomic.Pointer[[]services.Record]
	p.Store(&recs)
	return testGatewayOf(t, h, &p, localAddr)
}

// testGatewayOf is testGateway with records that the test may change.
func testGatewayOf(t *testing.T, h *handler, recs *atomic.Pointer[[]services.Record], localAddr string) *gatewayService {
	t.Helper()
	return testGatewayCfg(t, h, recs, GatewayConfig{LocalAddr: localAddr}, "")
}

// testGatewayCfg is testGatewayOf with a configuration and the access
// log's directory.
func testGatewayCfg(t *testing.T, h *handler, recs *atomic.Pointer[[]services.Record], cfg GatewayConfig, logDir string) *gatewayService {
	t.Helper()
	community := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("fd00:1:2::/48")}
	var key [32]byte
	copy(key[:], h.cfg.node.PrivateKey.Bytes())
	return newGateway(cfg, gatewayDeps{
		nodeID: h.cfg.node.ID(), nodeName: "b1", key: key,
		community: func() []netip.Prefix { return community },
		changed:   func() <-chan struct{} { return nil },
		keys:      func(string) ([32]byte, bool) { return [32]byte{}, false },
		records: func(typ string) []services.Record {
			var out []services.Record
			for _, r := range *recs.Load() {
				if r.Type == typ {
					out = append(out, r)
				}
			}
			return out
		},
		rtts: func() map[string]time.Duration {
			return map[string]time.Duration{"gw2-id": 5 * time.Millisecond, "gw3-id": time.Millisecond}
		},
		wpadAddrs: func() ([]netip.Addr, bool) { return []netip.Addr{netip.MustParseAddr("192.0.2.1")}, false },
		domain:    "cb.home.arpa.",
		logDir:    logDir,
	}, slog.New(slog.DiscardHandler), time.Now)
}

var pacRoute = regexp.MustCompile(`return "(PROXY [^"]*)";`)

func TestPACFile(t *testing.T) {
	h, _ := newTestHandler(t, "b1")
	if resp := do(t, h, "GET", "/proxy.pac", "Authorization", ""); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET /proxy.pac without a gateway component = %d, want 503", resp.StatusCode)
	}
	recs := []services.Record{
		gwRecord(gatewayHTTPType, "gw2", "198.18.0.2", 3128, true),
		gwRecord(gatewayHTTPType, "gw3", "198.18.0.3", 3128, true),
		gwRecord(gatewayHTTPType, "gw4", "198.18.0.4", 3128, false),
	}
	g := testGateway(t, h, recs, "")
	g.localAddr = &net.TCPAddr{IP: net.IPv4zero, Port: 3129} // as if listening
	h.cfg.gateway = g
	for _, path := range []string{"/proxy.pac", "/wpad.dat"} {
		// Public: no credentials, and no secret in it.
		resp := do(t, h, "GET", path, "Authorization", "")
		b := body(t, resp)
		if resp.StatusCode != http.StatusOK || mediaType(t, resp) != "application/x-ns-proxy-autoconfig" {
			t.Fatalf("GET %s = %d %s, want 200 application/x-ns-proxy-autoconfig", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		m := pacRoute.FindStringSubmatch(b)
		// httptest's requests reach 192.0.2.1 (the recorder's local
		// address is unset, so the box's own entries are left out).
		want := "PROXY 198.18.0.3:3128; PROXY 198.18.0.2:3128; DIRECT"
		if m == nil || m[1] != want {
			t.Errorf("GET %s routes %q, want %q:\n%s", path, m, want, b)
		}
		for _, direct := range []string{`dnsDomainIs(host, ".cb.home.arpa")`, `isInNet(host, "198.18.0.0", "255.254.0.0")`} {
			if !strings.Contains(b, direct) {
				t.Errorf("GET %s lacks %s:\n%s", path, direct, b)
			}
		}
	}
	// A client that reached the box at 192.0.2.1 gets its local port
	// first, and the box's own gateway before that when it serves.
	b, err := g.pac(netip.MustParseAddr("192.0.2.1"))
	if m := pacRoute.FindSubmatch(b); err != nil || m == nil || string(m[1]) != "PROXY 192.0.2.1:3129; PROXY 198.18.0.3:3128; PROXY 198.18.0.2:3128; DIRECT" {
		t.Errorf("pac(192.0.2.1) = %s, %v", m, err)
	}
	// A gateway that failed a dial goes last.
	g.mark(netip.MustParseAddrPort("198.18.0.3:3128"), false)
	b, _ = g.pac(netip.Addr{})
	if m := pacRoute.FindSubmatch(b); m == nil || string(m[1]) != "PROXY 198.18.0.2:3128; PROXY 198.18.0.3:3128; DIRECT" {
		t.Errorf("pac after a failed dial routes %s", m)
	}
	if hosts, _ := g.zonePart(); len(hosts) != 1 || hosts[0].Name != "wpad" || hosts[0].Addrs[0] != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("zonePart = %+v, want wpad -> 192.0.2.1", hosts)
	}
}

func TestProxyAPI(t *testing.T) {
	h, node := newTestHandler(t, "b1")
	if resp := do(t, h, "GET", "/api/v1/proxy"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET /api/v1/proxy without a gateway component = %d, want 503", resp.StatusCode)
	}
	h.cfg.gateway = testGateway(t, h, []services.Record{gwRecord(gatewayHTTPType, "gw2", "198.18.0.2", 3128, true)}, "")

	if resp := do(t, h, "GET", "/api/v1/proxy", "Authorization", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/proxy anonymously = %d, want 401", resp.StatusCode)
	}
	resp := do(t, h, "GET", "/api/v1/proxy")
	var info GatewayInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/proxy = %d %v", resp.StatusCode, err)
	}
	if info.Enabled || info.Running || len(info.Gateways) != 1 || info.Gateways[0].Box != "gw2" || info.Local.Uses != "gw2" {
		t.Errorf("GET /api/v1/proxy = %+v", info)
	}

	if resp := do(t, h, "GET", "/api/v1/proxy/credentials"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /api/v1/proxy/credentials = %d, want 405", resp.StatusCode)
	}
	if resp := post(t, h, "/api/v1/proxy/credentials", "application/json", "{}", "Authorization", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST /api/v1/proxy/credentials anonymously = %d, want 401", resp.StatusCode)
	}
	resp = post(t, h, "/api/v1/proxy/credentials", "application/json", "{}")
	var c CredentialInfo
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/v1/proxy/credentials = %d %v", resp.StatusCode, err)
	}
	var pub [32]byte
	copy(pub[:], node.PrivateKey.PublicKey().Bytes())
	keys := func(id string) ([32]byte, bool) { return pub, id == node.ID() }
	cred, err := proxy.VerifyCredential(c.Credential, keys, time.Now())
	if err != nil || cred.User != "api-token-file" || c.User != cred.User || cred.Box != node.ID() {
		t.Errorf("credential %+v does not verify with the box's key: %v", cred, err)
	}
	if d := time.Until(cred.Expires); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("credential expires in %v, want 30 days", d)
	}

	// The panel page lists the gateways and issues credentials too.
	resp = do(t, h, "GET", "/gateway")
	page := body(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "<code>198.18.0.2:3128</code>") || !strings.Contains(page, "/proxy.pac") {
		t.Errorf("GET /gateway = %d:\n%s", resp.StatusCode, page)
	}
	resp = post(t, h, "/gateway/credential", "application/x-www-form-urlencoded", "")
	page = body(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "cbp1_") {
		t.Errorf("POST /gateway/credential = %d, no credential:\n%s", resp.StatusCode, page)
	}

	// Metrics of the local port.
	if m := body(t, do(t, h, "GET", "/metrics")); !strings.Contains(m, "cloudbox_gateway_healthy 1\n") ||
		!strings.Contains(m, "cloudbox_gateway_local_forwarded_total 0\n") {
		t.Errorf("metrics lack the gateway's:\n%s", m)
	}
}

// TestLocalPort: the local port relays to the first gateway that answers:
// the best one refuses connections, so the next one serves and the first
// goes to the end of the list; without gateways it answers 502.
func TestLocalPort(t *testing.T) {
	h, _ := newTestHandler(t, "b1")
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().(*net.TCPAddr)
	dead.Close() // connections to it are refused
	alive, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer alive.Close()
	go func() {
		for {
			c, err := alive.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				io.WriteString(c, "alive got "+line)
			}()
		}
	}()
	rec := func(name string, port int) services.Record {
		r := gwRecord(gatewayHTTPType, name, "198.18.0.9", uint16(port), true)
		r.Addr = netip.MustParseAddr("127.0.0.1")
		return r
	}
	var recs atomic.Pointer[[]services.Record]
	recs.Store(&[]services.Record{rec("gw3", deadAddr.Port), rec("gw2", alive.Addr().(*net.TCPAddr).Port)})
	g := testGatewayOf(t, h, &recs, "127.0.0.1:0")
	runGateway(t, g)
	var addr string
	deadline := time.Now().Add(5 * time.Second)
	for addr = g.view().Local.Addr; addr == ""; addr = g.view().Local.Addr {
		if time.Now().After(deadline) {
			t.Fatal("the local port does not listen after 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ask := func() string {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "hello\n")
		b, _ := io.ReadAll(c)
		return string(b)
	}
	if got := ask(); got != "alive got hello\n" {
		t.Errorf("first answer %q, want the alive gateway's", got)
	}
	v := g.view()
	if v.Local.Failovers != 1 || v.Local.DialFailures != 1 || v.Local.Forwarded != 1 || v.Local.Uses != "gw2" || v.Local.LastUsed != "gw2" {
		t.Errorf("after a failover: %+v", v.Local)
	}
	if got := ask(); got != "alive got hello\n" {
		t.Errorf("second answer %q", got)
	}
	if v := g.view(); v.Local.DialFailures != 1 || v.Local.Failovers != 1 {
		t.Errorf("the dead gateway was tried again at once: %+v", v.Local)
	}

	recs.Store(&[]services.Record{})
	g.mu.Lock()
	g.order = nil
	g.mu.Unlock()
	if got := ask(); !strings.HasPrefix(got, "HTTP/1.1 502 Bad Gateway\r\n") {
		t.Errorf("without gateways the local port answers %q, want 502", got)
	}
}

// runGateway runs g until the test ends, then checks that it stops cleanly
// within 5 s.
func runGateway(t *testing.T, g *gatewayService) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- g.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("run did not return within 5s of cancel")
		}
	})
}
