package appliance

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/appliance/state"
	"github.com/cloudbox/cloudbox/overlay"
	"github.com/cloudbox/cloudbox/overlay/community"
	"github.com/cloudbox/cloudbox/overlay/membership"
	"github.com/cloudbox/cloudbox/overlay/roster"
	"github.com/google/go-cmp/cmp"
)

// fakeOverlay is an overlaySource with a fixed view.
type fakeOverlay struct {
	v         overlayView
	revokeErr error

	joinErr error

	mu      sync.Mutex
	revoked []string // node IDs and reasons
	joined  []string // tokens
}

func (f *fakeOverlay) view() overlayView { return f.v }

func (f *fakeOverlay) requestJoin(token string) (string, error) {
	if f.joinErr != nil {
		return "", f.joinErr
	}
	f.mu.Lock()
	f.joined = append(f.joined, token)
	f.mu.Unlock()
	return "testnet", nil
}

func (f *fakeOverlay) revoke(nodeID, reason string) (roster.MemberInfo, error) {
	if f.revokeErr != nil {
		return roster.MemberInfo{}, f.revokeErr
	}
	for _, m := range f.v.Members {
		if m.NodeID == nodeID {
			f.mu.Lock()
			f.revoked = append(f.revoked, nodeID+" "+reason)
			f.mu.Unlock()
			return m.MemberInfo, nil
		}
	}
	return roster.MemberInfo{}, errNoSuchMember
}

// runningOverlay returns the view of a box "b1" in a community of four:
// b2 direct, b3 relayed through b2, b4 not known to the engine yet.
func runningOverlay() *fakeOverlay {
	ep := func(s string) []netip.AddrPort { return []netip.AddrPort{netip.MustParseAddrPort(s)} }
	member := func(name string, n byte, self bool) roster.MemberInfo {
		return roster.MemberInfo{
			Name:      name,
			NodeID:    name + "-id",
			NodeKey:   [32]byte{n},
			IPv4:      netip.AddrFrom4([4]byte{198, 18, 0, n}),
			IPv6:      netip.MustParseAddr(fmt.Sprintf("fd00:1:2::%d", n)),
			Endpoints: ep(fmt.Sprintf("192.0.2.%d:51820", n)),
			Self:      self,
		}
	}
	b1 := member("b1", 1, true)
	b1.Groups = []string{"admin"}
	return &fakeOverlay{v: overlayView{
		Running:     true,
		State:       "running",
		Community:   "testnet",
		CommunityID: "abcdefghijklmnop",
		IPv4Range:   netip.MustParsePrefix("198.18.0.0/15"),
		IPv6Range:   netip.MustParsePrefix("fd00:1:2::/48"),
		IPv4:        netip.MustParsePrefix("198.18.0.1/15"),
		IPv6:        netip.MustParsePrefix("fd00:1:2::1/48"),
		Admin:       true,
		Members: []memberView{
			{MemberInfo: b1},
			{MemberInfo: member("b2", 2, false), HasLive: true, Live: overlay.PeerStatus{
				Name: "b2", Endpoint: "direct 192.0.2.2:51820", Direct: true, RTT: 1500 * time.Microsecond,
				RxBytes: 2048, TxBytes: 1536, LastHandshake: testStart.Add(-30 * time.Second),
			}},
			{MemberInfo: member("b3", 3, false), HasLive: true, Live: overlay.PeerStatus{
				Name: "b3", Endpoint: "relay via b2", Via: "b2", RxBytes: 10,
			}},
			{MemberInfo: member("b4", 4, false)},
		},
		Engine: overlay.Stats{TUNPacketsOut: 7},
		Roster: roster.Stats{Members: 4, JoinsAccepted: 3, JoinsRefused: map[roster.Reason]uint64{roster.ReasonInviteUsed: 2}},
	}}
}

// newOverlayHandler returns a test handler that shows src.
func newOverlayHandler(t *testing.T, src overlaySource) *handler {
	t.Helper()
	h, _ := newTestHandler(t, "b1")
	h.cfg.overlay = src
	return h
}

func TestOverlayPeers(t *testing.T) {
	h := newOverlayHandler(t, runningOverlay())
	resp := do(t, h, "GET", "/api/v1/overlay/peers")
	if resp.StatusCode != http.StatusOK || mediaType(t, resp) != "application/json" {
		t.Fatalf("GET /api/v1/overlay/peers = %d %s, want 200 JSON", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var got []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	peer := func(name string, n int, self bool, groups []any) map[string]any {
		return map[string]any{
			"name": name, "node_id": name + "-id", "ipv4": fmt.Sprintf("198.18.0.%d", n), "ipv6": fmt.Sprintf("fd00:1:2::%d", n),
			"groups": groups, "self": self, "endpoints": []any{fmt.Sprintf("192.0.2.%d:51820", n)},
			"endpoint": "", "direct": false, "via": "", "rtt_ms": nil, "rx_bytes": 0.0, "tx_bytes": 0.0, "last_handshake": nil,
		}
	}
	b2 := peer("b2", 2, false, []any{})
	b2["endpoint"], b2["direct"], b2["rtt_ms"], b2["rx_bytes"], b2["tx_bytes"], b2["last_handshake"] =
		"direct 192.0.2.2:51820", true, 1.5, 2048.0, 1536.0, "2026-03-04T05:05:37Z"
	b3 := peer("b3", 3, false, []any{})
	b3["endpoint"], b3["via"], b3["rx_bytes"] = "relay via b2", "b2", 10.0
	want := []map[string]any{peer("b1", 1, true, []any{"admin"}), b2, b3, peer("b4", 4, false, []any{})}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("peers (-want +got):\n%s", diff)
	}

	for _, src := range []overlaySource{nil, &fakeOverlay{v: overlayView{State: "joining community \"x\"", Problem: "no member answered"}}} {
		h := newOverlayHandler(t, src)
		resp := do(t, h, "GET", "/api/v1/overlay/peers")
		var e errorResponse
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.HasPrefix(e.Error, "the overlay is not running (") {
			t.Errorf("GET /api/v1/overlay/peers while not running = %d %q, want 503 saying why", resp.StatusCode, e.Error)
		}
	}
	if resp := do(t, h, "POST", "/api/v1/overlay/peers"); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /api/v1/overlay/peers = %d Allow %q, want 405 GET, HEAD", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

func TestOverlayRevoke(t *testing.T) {
	const okBody = `{"node_id": "b3-id", "reason": "lost"}`
	for _, tc := range []struct {
		name        string
		method      string
		remote      string
		ctype, body string
		revokeErr   error
		wantCode    int
		wantErr     string
		wantRevoked []string
	}{
		{"revoked", "POST", "127.0.0.1:4000", "application/json", okBody, nil, http.StatusOK, "", []string{"b3-id lost"}},
		{"from IPv6 loopback", "POST", "[::1]:4000", "application/json; charset=utf-8", okBody, nil, http.StatusOK, "", []string{"b3-id lost"}},
		{"wrong method", "GET", "127.0.0.1:4000", "", "", nil, http.StatusMethodNotAllowed, "use POST", nil},
		{"from the network", "POST", "192.0.2.7:4000", "application/json", okBody, nil, http.StatusOK, "", []string{"b3-id lost"}},
		{"form post", "POST", "127.0.0.1:4000", "application/x-www-form-urlencoded", "node_id=b3-id", nil, http.StatusUnsupportedMediaType, "application/json", nil},
		{"no node id", "POST", "127.0.0.1:4000", "application/json", `{"reason": "x"}`, nil, http.StatusBadRequest, "node_id", nil},
		{"unknown field", "POST", "127.0.0.1:4000", "application/json", `{"node_id": "b3-id", "kind": "x"}`, nil, http.StatusBadRequest, "node_id", nil},
		{"long reason", "POST", "127.0.0.1:4000", "application/json", `{"node_id": "b3-id", "reason": "` + strings.Repeat("x", 65) + `"}`, nil, http.StatusBadRequest, "at most 64", nil},
		{"too large", "POST", "127.0.0.1:4000", "application/json", `{"node_id": "` + strings.Repeat("x", 5000) + `"}`, nil, http.StatusRequestEntityTooLarge, "over", nil},
		{"unknown member", "POST", "127.0.0.1:4000", "application/json", `{"node_id": "zz"}`, nil, http.StatusNotFound, "no such member", nil},
		{"not admin", "POST", "127.0.0.1:4000", "application/json", okBody, errNotAdmin, http.StatusForbidden, "root key", nil},
		{"self", "POST", "127.0.0.1:4000", "application/json", okBody, errRevokeSelf, http.StatusConflict, "itself", nil},
		{"not running", "POST", "127.0.0.1:4000", "application/json", okBody, errOverlayNotRunning, http.StatusServiceUnavailable, "not running", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := runningOverlay()
			src.revokeErr = tc.revokeErr
			h := newOverlayHandler(t, src)
			req := httptest.NewRequest(tc.method, "/api/v1/overlay/revoke", strings.NewReader(tc.body))
			req.RemoteAddr = tc.remote
			setHeaders(req, nil)
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			resp := rec.Result()
			if resp.StatusCode != tc.wantCode || mediaType(t, resp) != "application/json" {
				t.Errorf("= %d %s, want %d JSON", resp.StatusCode, resp.Header.Get("Content-Type"), tc.wantCode)
			}
			b := body(t, resp)
			if tc.wantErr != "" {
				var e errorResponse
				if err := json.Unmarshal([]byte(b), &e); err != nil || !strings.Contains(e.Error, tc.wantErr) {
					t.Errorf("body = %s, want an error mentioning %q", b, tc.wantErr)
				}
			} else if want := `{"revoked":{"name":"b3","node_id":"b3-id"}}` + "\n"; b != want {
				t.Errorf("body = %q, want %q", b, want)
			}
			if diff := cmp.Diff(tc.wantRevoked, src.revoked); diff != "" {
				t.Errorf("revoked (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOverlayMetrics(t *testing.T) {
	h := newOverlayHandler(t, runningOverlay())
	text := body(t, do(t, h, "GET", "/metrics"))
	for _, want := range []string{
		`cloudbox_overlay_up 1`,
		`cloudbox_overlay_packets_total{dir="in"} 0`,
		`cloudbox_overlay_bytes_total{dir="out"} 0`,
		`cloudbox_overlay_handshakes_total{dir="in"} 0`,
		`cloudbox_overlay_drops_total{reason="unknown_peer"} 0`,
		`cloudbox_overlay_drops_total{reason="handshake_rejected"} 0`,
		`cloudbox_overlay_tun_packets_total 7`,
		`cloudbox_overlay_peers 3`,
		`cloudbox_overlay_peers_direct 1`,
		`cloudbox_overlay_peers_relayed 1`,
		`cloudbox_overlay_members 4`,
		`cloudbox_overlay_roster_joins_accepted_total 3`,
		`cloudbox_overlay_roster_joins_refused_total{reason="invite-used"} 2`,
		`cloudbox_overlay_roster_joins_refused_total{reason="rate-limited"} 0`,
		`cloudbox_overlay_roster_snapshots_fetched_total 0`,
	} {
		if !strings.Contains(text, "\n"+want+"\n") {
			t.Errorf("metrics do not contain %s", want)
		}
	}
	checkMetricsFormat(t, text)

	h = newOverlayHandler(t, &fakeOverlay{v: overlayView{State: "disabled"}})
	text = body(t, do(t, h, "GET", "/metrics"))
	if !strings.Contains(text, "\ncloudbox_overlay_up 0\n") || strings.Contains(text, "cloudbox_overlay_peers") {
		t.Errorf("metrics of a stopped overlay = %s, want cloudbox_overlay_up 0 and nothing else of the overlay", text)
	}
	checkMetricsFormat(t, text)
}

func TestCommunityPage(t *testing.T) {
	h := newOverlayHandler(t, runningOverlay())
	resp := do(t, h, "GET", "/community")
	if resp.StatusCode != http.StatusOK || mediaType(t, resp) != "text/html" {
		t.Fatalf("GET /community = %d %s, want 200 HTML", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	html := body(t, resp)
	for _, want := range []string{
		`<a href="/community" aria-current="page">Community</a>`,
		"<strong>testnet</strong>",
		"198.18.0.1", "fd00:1:2::1", "198.18.0.0/15", "fd00:1:2::/48",
		"Members (4)",
		`<span class="comp-name">b2</span><span class="badge ok">Direct</span>`,
		"direct 192.0.2.2:51820", "1.5 ms", "2.0 KiB", "1.5 KiB",
		`<time datetime="2026-03-04T05:05:37Z">1m 12s ago</time>`,
		`<span class="comp-name">b3</span><span class="badge relay">Relayed</span>`, "relay via b2",
		`<span class="comp-name">b4</span><span class="badge bad">No path</span>`, "no path yet",
		`<span class="badge self">This box</span>`, "admin",
	} {
		if !strings.Contains(html, want) {
			t.Errorf("community page does not contain %q", want)
		}
	}
	if strings.Contains(html, "<script") || strings.Contains(html, "coming soon</span></h1>") {
		t.Error("community page has a script or is a placeholder")
	}

	for _, tc := range []struct {
		name string
		src  overlaySource
		want []string
	}{
		{"no overlay", nil, []string{"not part of a community yet", "cloudbox community init", "cloudboxd --join TOKEN"}},
		{"broken membership", &fakeOverlay{v: overlayView{State: "not a member", NotMember: true, Problem: "loading x: malformed <1>"}},
			[]string{"not part of a community yet", "loading x: malformed &lt;1&gt;"}},
		{"joining", &fakeOverlay{v: overlayView{State: `joining community "testnet"`, Problem: "no member answered yet"}},
			[]string{"not running: joining community &#34;testnet&#34;", "no member answered yet"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			html := body(t, do(t, newOverlayHandler(t, tc.src), "GET", "/community"))
			for _, want := range tc.want {
				if !strings.Contains(html, want) {
					t.Errorf("community page does not contain %q:\n%s", want, html)
				}
			}
		})
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestUsableEndpoint(t *testing.T) {
	community := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("fd00:1:2::/48")}
	for addr, want := range map[string]bool{
		"192.0.2.7": true, "2001:db8::7": true, "127.0.0.1": false, "::1": false, "fe80::1": false,
		"169.254.1.1": false, "198.18.0.3": false, "fd00:1:2::3": false, "0.0.0.0": false, "ff02::1": false,
	} {
		if got := usableEndpoint(netip.MustParseAddr(addr), community); got != want {
			t.Errorf("usableEndpoint(%s) = %v, want %v", addr, got, want)
		}
	}
}

// testCommunity founds a community in a temporary store and returns its
// founder's roster.
func testCommunity(t *testing.T) (*roster.Roster, membership.Community) {
	t.Helper()
	store, err := membership.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var key [32]byte
	rand.Read(key[:])
	admin, own, err := community.Init(store, "testnet", netip.MustParsePrefix("198.18.0.0/15"), "b1", key, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := roster.New(roster.Config{Community: admin.Community(), Self: own})
	if err != nil {
		t.Fatal(err)
	}
	return r, admin.Community()
}

func TestRosterHandler(t *testing.T) {
	r, c := testCommunity(t)
	self := []netip.Addr{netip.MustParseAddr("198.18.0.1"), c.NodeIPv6([32]byte{1})}
	h := rosterHandler(r, http.NotFoundHandler(), nil, nil, self, []netip.Prefix{c.IPv4, c.IPv6()})
	for _, tc := range []struct {
		name          string
		method, path  string
		local, remote string
		wantCode      int
		wantType      string
	}{
		{"snapshot over the overlay, IPv4", "GET", roster.SnapshotPath, "198.18.0.1:51820", "198.18.0.2:40000", http.StatusOK, "application/octet-stream"},
		{"snapshot over the overlay, IPv6", "GET", roster.SnapshotPath, netip.AddrPortFrom(self[1], 51820).String(), "[" + c.NodeIPv6([32]byte{2}).String() + "]:40000", http.StatusOK, "application/octet-stream"},
		{"snapshot over the overlay, IPv4-mapped", "GET", roster.SnapshotPath, "[::ffff:198.18.0.1]:51820", "[::ffff:198.18.0.2]:40000", http.StatusOK, "application/octet-stream"},
		{"snapshot from the underlay", "GET", roster.SnapshotPath, "192.0.2.1:51820", "192.0.2.2:40000", http.StatusForbidden, "application/json"},
		{"snapshot to the overlay address from outside", "GET", roster.SnapshotPath, "198.18.0.1:51820", "192.0.2.2:40000", http.StatusForbidden, "application/json"},
		{"snapshot to another address", "GET", roster.SnapshotPath, "198.18.0.9:51820", "198.18.0.2:40000", http.StatusForbidden, "application/json"},
		{"join from the underlay", "GET", roster.JoinPath, "192.0.2.1:51820", "192.0.2.2:40000", http.StatusMethodNotAllowed, "application/json"},
		{"join with garbage", "POST", roster.JoinPath, "192.0.2.1:51820", "192.0.2.2:40000", http.StatusBadRequest, "application/json"},
		{"elsewhere", "GET", "/", "192.0.2.1:51820", "192.0.2.2:40000", http.StatusNotFound, "application/json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader("{}"))
			req.RemoteAddr = tc.remote
			local := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(tc.local))
			req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, local))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if got := rec.Result(); got.StatusCode != tc.wantCode || mediaType(t, got) != tc.wantType {
				t.Errorf("= %d %s, want %d %s: %s", got.StatusCode, got.Header.Get("Content-Type"), tc.wantCode, tc.wantType, rec.Body)
			}
		})
	}
}

func TestJoinRefused(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&roster.StatusError{StatusCode: http.StatusConflict, Message: "used"}, true},
		{&roster.StatusError{StatusCode: http.StatusForbidden, Message: "expired"}, true},
		{&roster.StatusError{StatusCode: http.StatusBadRequest, Message: "bad"}, true},
		{fmt.Errorf("x: %w", membership.ErrWrongCommunity), true},
		{&roster.StatusError{StatusCode: http.StatusTooManyRequests, Message: "slow down"}, false},
		{&roster.StatusError{StatusCode: http.StatusServiceUnavailable, Message: "full"}, false},
		{errors.New("connection refused"), false},
	} {
		if got := joinRefused(fmt.Errorf("joining: %w", tc.err)); got != tc.want {
			t.Errorf("joinRefused(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// overlayComponent runs Run with cfg until its status answers and returns
// the "overlay" component, then stops Run.
func overlayComponent(t *testing.T, cfg Config) ComponentStatus {
	t.Helper()
	baseline := runtime.NumGoroutine()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listener = ln
	ctx, cancel := context.WithCancel(t.Context())
	wait := runAsync(t, ctx, cfg)
	tr := &http.Transport{}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := authedGet(client, "http://"+ln.Addr().String()+"/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var st statusResponse
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := wait(); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	tr.CloseIdleConnections()
	waitGoroutines(t, baseline)
	return st.Components["overlay"]
}

// nodeKey returns the public key of the node identity in dir, creating it.
func nodeKey(t *testing.T, dir string) [32]byte {
	t.Helper()
	n, err := state.Open(t.Context(), state.Config{Dir: dir, Name: "box"})
	if err != nil {
		t.Fatal(err)
	}
	return [32]byte(n.PrivateKey.PublicKey().Bytes())
}

func TestRunOverlayOff(t *testing.T) {
	for _, tc := range []struct {
		name      string
		setup     func(t *testing.T, dir string)
		overlay   OverlayConfig
		wantState string
		wantErr   string
	}{
		{"not a member", func(*testing.T, string) {}, OverlayConfig{}, "not a member: run `cloudbox community init", ""},
		{"disabled", func(*testing.T, string) {}, OverlayConfig{Disabled: true}, "disabled", ""},
		{"unreadable membership", func(t *testing.T, dir string) {
			if err := os.MkdirAll(filepath.Join(dir, OverlayDir), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, OverlayDir, membership.MembershipFile), []byte("junk"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, OverlayConfig{JoinToken: "ignored"}, "not a member", "membership.bin: parsing membership: malformed"},
		{"membership of another node key", func(t *testing.T, dir string) {
			nodeKey(t, dir)
			store, err := membership.Open(filepath.Join(dir, OverlayDir))
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := community.Init(store, "testnet", netip.MustParsePrefix("198.18.0.0/15"), "other", [32]byte{9}, time.Now(), nil); err != nil {
				t.Fatal(err)
			}
		}, OverlayConfig{}, "not a member", "is for node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			st := overlayComponent(t, Config{StateDir: dir, Overlay: tc.overlay})
			if st.OK || !strings.HasPrefix(st.Detail["state"], tc.wantState) || !strings.Contains(st.Error, tc.wantErr) {
				t.Errorf("overlay component = %+v, want not ok, state %q..., error containing %q", st, tc.wantState, tc.wantErr)
			}
		})
	}
}

func TestRunJoinTokenErrors(t *testing.T) {
	c, root, err := membership.NewCommunity("testnet", netip.MustParsePrefix("198.18.0.0/15"), nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	inv, err := membership.NewInvitation(root, c, membership.InviteOptions{
		Name: "late", IPv4: netip.MustParseAddr("198.18.0.9"), Expires: now.Add(time.Hour),
		Bootstrap: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:51820")},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		token   string
		now     func() time.Time
		wantErr *regexp.Regexp
	}{
		{"garbage", "garbage", nil, regexp.MustCompile(`^join token: parsing invitation: malformed: .*ask for a new one$`)},
		{"truncated", inv.Token()[:100], nil, regexp.MustCompile(`^join token: parsing invitation: malformed`)},
		{"expired", inv.Token(), func() time.Time { return now.Add(2 * time.Hour) },
			regexp.MustCompile(`^join token: redeeming invitation for "late": invitation expired at .*; ask an administrator of community "testnet" for a new one$`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			baseline := runtime.NumGoroutine()
			var logs syncBuffer
			err := runAsync(t, t.Context(), Config{
				StateDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", Now: tc.now,
				Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
				Overlay: OverlayConfig{JoinToken: tc.token},
			})()
			if err == nil || !tc.wantErr.MatchString(err.Error()) {
				t.Errorf("Run = %v, want an error matching %s", err, tc.wantErr)
			}
			if strings.Contains(logs.String(), "http listening") {
				t.Error("Run listened before it checked the token")
			}
			waitGoroutines(t, baseline)
		})
	}
}
