package proxy

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// authConfig is a gateway of box "gw" serving the users of box "home",
// with loopback destinations allowed.
func authConfig(home box) Config {
	return Config{
		Keys:                keysOf(home),
		NodeID:              "gw",
		AllowedDestinations: loopback,
		AnyPort:             true,
	}
}

func TestCurlThroughProxy(t *testing.T) {
	home := newBox(t, "home")
	plain, tlsOrigin := newOrigin(t, false), newOrigin(t, true)
	_, httpAddr, socksAddr := startProxy(t, authConfig(home))
	alice := "alice:" + home.issue(t, "alice", time.Hour)
	small := strings.Repeat("s", 100)

	t.Run("http", func(t *testing.T) {
		r := curl(t, "-x", "http://"+httpAddr, "-U", alice, "-D", "-",
			"-H", "Connection: X-Secret", "-H", "X-Secret: 1", "-H", "X-Kept: 2", plain.URL+"/small")
		if r.code != 200 || !strings.HasSuffix(r.body, small) {
			t.Fatalf("got %d %q (exit %d), want 200 and 100 bytes", r.code, r.body, r.exit)
		}
		if !strings.Contains(r.body, "Via: 1.1 cloudbox") {
			t.Errorf("response has no Via: 1.1 cloudbox:\n%s", r.body)
		}
		if strings.Contains(r.body, "X-Origin-Private") {
			t.Errorf("response kept a field the origin's Connection named:\n%s", r.body)
		}
		h, _ := plain.lastHeader()
		if h.Get("X-Secret") != "" || h.Get("Proxy-Authorization") != "" || h.Get("X-Kept") != "2" {
			t.Errorf("origin got header %v: want X-Kept, no X-Secret or Proxy-Authorization", h)
		}
		if got := h.Get("Via"); got != "1.1 cloudbox" {
			t.Errorf("origin got Via %q, want %q", got, "1.1 cloudbox")
		}
	})
	t.Run("connect-tls", func(t *testing.T) {
		r := curl(t, "-k", "-x", "http://"+httpAddr, "-U", alice, tlsOrigin.URL+"/small")
		if r.code != 200 || r.body != small {
			t.Fatalf("got %d %q (exit %d), want 200 and 100 bytes", r.code, r.body, r.exit)
		}
	})
	t.Run("socks5", func(t *testing.T) {
		url := fmt.Sprintf("http://localhost:%d/big?n=300000", plain.port())
		r := curl(t, "--socks5-hostname", socksAddr, "-U", alice, url)
		if r.code != 200 || len(r.body) != 300000 {
			t.Fatalf("got %d and %d bytes (exit %d), want 200 and 300000", r.code, len(r.body), r.exit)
		}
	})
	t.Run("socks5-tls", func(t *testing.T) {
		r := curl(t, "-k", "--socks5-hostname", socksAddr, "-U", alice, tlsOrigin.URL+"/small")
		if r.code != 200 || r.body != small {
			t.Fatalf("got %d %q (exit %d)", r.code, r.body, r.exit)
		}
	})
}

func TestCurlRefused(t *testing.T) {
	home, stranger := newBox(t, "home"), newBox(t, "stranger")
	plain := newOrigin(t, false)
	_, httpAddr, socksAddr := startProxy(t, authConfig(home))
	good := home.issue(t, "alice", time.Hour)
	forged := Credential{User: "alice", Box: "home", Expires: time.Now().Add(time.Hour)}
	forgedTok, err := forged.Sign(stranger.priv) // "home" credential, wrong key
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, user string
	}{
		{"none", ""},
		{"wrong password", "alice:wrong"},
		{"other user's name", "bob:" + good},
		{"expired", "alice:" + home.issue(t, "alice", -time.Minute)},
		{"forged", "alice:" + forgedTok},
		{"unknown box", "alice:" + stranger.issue(t, "alice", time.Hour)},
		{"tampered", "alice:" + tamper(good)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"-x", "http://" + httpAddr, plain.URL + "/small"}
			if tc.user != "" {
				args = append(args, "-U", tc.user)
			}
			if r := curl(t, args...); r.code != 407 {
				t.Errorf("http: got %d, want 407", r.code)
			}
			if tc.user == "" {
				return
			}
			r := curl(t, "--socks5-hostname", socksAddr, "-U", tc.user, plain.URL+"/small")
			if r.exit == 0 || r.code == 200 {
				t.Errorf("socks5: curl succeeded (%d), want an authentication failure", r.code)
			}
		})
	}
	if _, hits := plain.lastHeader(); hits != 0 {
		t.Errorf("origin got %d requests, want 0", hits)
	}
}

func TestDeniedDestinations(t *testing.T) {
	home := newBox(t, "home")
	plain := newOrigin(t, false)
	alice := "alice:" + home.issue(t, "alice", time.Hour)

	t.Run("port", func(t *testing.T) {
		// Loopback allowed, but CONNECT only to the default port 443.
		cfg := authConfig(home)
		cfg.AnyPort = false
		p, httpAddr, socksAddr := startProxy(t, cfg)
		r := curl(t, "-p", "-x", "http://"+httpAddr, "-U", alice, plain.URL+"/small")
		if r.code != 403 {
			t.Errorf("CONNECT to port %d: got %d, want 403", plain.port(), r.code)
		}
		r = curl(t, "--socks5-hostname", socksAddr, "-U", alice, plain.URL+"/small")
		if r.exit == 0 {
			t.Errorf("socks5 to port %d: curl succeeded, want refusal", plain.port())
		}
		if s := p.Stats(); s.Denied != 2 {
			t.Errorf("Stats().Denied = %d, want 2", s.Denied)
		}
	})
	t.Run("address", func(t *testing.T) {
		// Loopback denied (the default rules): by address and by a name
		// that resolves to it, checked at dial time.
		cfg := authConfig(home)
		cfg.AllowedDestinations = nil
		_, httpAddr2, socksAddr2 := startProxy(t, cfg)
		denyAll(t, plain, httpAddr2, socksAddr2, alice)
	})
	if _, hits := plain.lastHeader(); hits != 0 {
		t.Errorf("origin got %d requests, want 0", hits)
	}
}

func denyAll(t *testing.T, plain *origin, httpAddr2, socksAddr2, alice string) {
	for _, url := range []string{plain.URL + "/small", fmt.Sprintf("http://localhost:%d/small", plain.port())} {
		r := curl(t, "-x", "http://"+httpAddr2, "-U", alice, url)
		if r.code != 403 {
			t.Errorf("GET %s: got %d, want 403", url, r.code)
		}
		if strings.Contains(r.body, "127.0.0.1") || strings.Contains(r.body, "::1") {
			t.Errorf("403 body leaks an address: %q", r.body)
		}
		r = curl(t, "-p", "-x", "http://"+httpAddr2, "-U", alice, url)
		if r.code != 403 {
			t.Errorf("CONNECT %s: got %d, want 403", url, r.code)
		}
		r = curl(t, "--socks5-hostname", socksAddr2, "-U", alice, url)
		if r.exit == 0 {
			t.Errorf("socks5 %s: curl succeeded, want refusal", url)
		}
	}
}

func TestMalformedAndSources(t *testing.T) {
	cfg := Config{AllowedDestinations: loopback, AnyPort: true}
	t.Run("malformed", func(t *testing.T) { malformed(t, cfg) })
	t.Run("sources", func(t *testing.T) {
		// A gateway that serves only 192.0.2.0/24 closes loopback clients.
		cfg.AllowedSources = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
		p, httpAddr, _ := startProxy(t, cfg)
		c, err := net.DialTimeout("tcp", httpAddr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		io.WriteString(c, "GET http://127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		if n, err := c.Read(make([]byte, 1)); err == nil || n != 0 {
			t.Errorf("a client from a source not allowed got an answer")
		}
		if s := p.Stats(); s.ConnsRefused != 1 {
			t.Errorf("ConnsRefused = %d, want 1", s.ConnsRefused)
		}
	})
}

func malformed(t *testing.T, cfg Config) {
	_, httpAddr, _ := startProxy(t, cfg)
	for _, req := range []string{
		"GET /relative HTTP/1.1\r\nHost: example.org\r\n\r\n",
		"GET ftp://example.org/ HTTP/1.1\r\nHost: example.org\r\n\r\n",
		"CONNECT example.org HTTP/1.1\r\nHost: example.org\r\n\r\n",
		"GARBAGE\r\n\r\n",
	} {
		status, body := rawRequest(t, httpAddr, req)
		if status != 400 {
			t.Errorf("%q: got %d, want 400", req, status)
		}
		if strings.Contains(body, "127.0.0.1") {
			t.Errorf("%q: body leaks an address: %q", req, body)
		}
	}
}

// rawRequest sends req on a new connection and returns the status and body.
func rawRequest(t *testing.T, addr, req string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: reading response: %v", req, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// connectTunnel opens a CONNECT tunnel through addr as user and returns the
// connection and the proxy's status. The connection reads first what came
// with the proxy's answer.
func connectTunnel(t *testing.T, addr, target, userTok string) (net.Conn, int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	auth := base64.StdEncoding.EncodeToString([]byte(userTok))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n", target, target, auth)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		t.Fatalf("CONNECT: %v", err)
	}
	if resp.StatusCode != 200 {
		c.Close()
		return nil, resp.StatusCode
	}
	c.SetDeadline(time.Time{})
	return tunnelConn{c.(*net.TCPConn), br}, 200
}

// tunnelConn is a tunnel whose first bytes may have been read along with
// the CONNECT response.
type tunnelConn struct {
	*net.TCPConn
	br *bufio.Reader
}

func (c tunnelConn) Read(b []byte) (int, error) { return c.br.Read(b) }

// WriteTo hides the TCPConn's, which would skip what br holds.
func (c tunnelConn) WriteTo(w io.Writer) (int64, error) { return c.br.WriteTo(w) }

func TestConnectionLimit(t *testing.T) {
	home := newBox(t, "home")
	plain := newOrigin(t, false)
	cfg := authConfig(home)
	cfg.UserMaxConns = 2
	p, httpAddr, socksAddr := startProxy(t, cfg)
	alice := "alice:" + home.issue(t, "alice", time.Hour)
	bob := "bob:" + home.issue(t, "bob", time.Hour)
	target := plain.Listener.Addr().String()

	c1, st1 := connectTunnel(t, httpAddr, target, alice)
	c2, st2 := connectTunnel(t, httpAddr, target, alice)
	if st1 != 200 || st2 != 200 {
		t.Fatalf("first two tunnels: %d %d, want 200 200", st1, st2)
	}
	defer c2.Close()
	if _, st := connectTunnel(t, httpAddr, target, alice); st != 429 {
		t.Errorf("third tunnel: got %d, want 429", st)
	}
	if r := curl(t, "--socks5-hostname", socksAddr, "-U", alice, plain.URL+"/small"); r.exit == 0 {
		t.Errorf("third connection over socks5 succeeded")
	}
	if c3, st := connectTunnel(t, httpAddr, target, bob); st != 200 {
		t.Errorf("bob's tunnel: got %d, want 200 (the limit is per user)", st)
	} else {
		c3.Close()
	}
	c1.Close()
	// The slot comes back once the proxy notices the close.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, st := connectTunnel(t, httpAddr, target, alice)
		if st == 200 {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after closing a tunnel: still %d", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s := p.Stats(); s.LimitRefused < 2 {
		t.Errorf("LimitRefused = %d, want >= 2", s.LimitRefused)
	}
}

func TestBandwidthLimit(t *testing.T) {
	const rate = 2 << 20 // 2 MiB/s
	const size = 6 << 20
	home := newBox(t, "home")
	plain := newOrigin(t, false)
	cfg := authConfig(home)
	cfg.UserRate = rate
	_, httpAddr, socksAddr := startProxy(t, cfg)
	alice := "alice:" + home.issue(t, "alice", time.Hour)
	url := fmt.Sprintf("%s/big?n=%d", plain.URL, size)
	// Burst rate/8 first, then the rate: ~2.9 s.
	lo := time.Duration(float64(size-rate/8) / rate * float64(time.Second) * 0.9)
	hi := lo*3/2 + time.Second
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"http", []string{"-x", "http://" + httpAddr}},
		{"connect", []string{"-p", "-x", "http://" + httpAddr}},
		{"socks5", []string{"--socks5-hostname", socksAddr}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := curl(t, append(tc.args, "-U", alice, "-o", "/dev/null", url)...)
			if r.code != 200 {
				t.Fatalf("got %d (exit %d)", r.code, r.exit)
			}
			if r.took < lo || r.took > hi {
				t.Errorf("%d bytes at %d B/s took %v, want %v..%v", size, rate, r.took, lo, hi)
			}
			t.Logf("%d bytes in %v: %.2f MiB/s", size, r.took, float64(size)/r.took.Seconds()/(1<<20))
		})
	}
}

func TestDailyQuota(t *testing.T) {
	home := newBox(t, "home")
	plain := newOrigin(t, false)
	cfg := authConfig(home)
	cfg.UserDailyQuota = 1 << 20
	p, httpAddr, _ := startProxy(t, cfg)
	alice := "alice:" + home.issue(t, "alice", time.Hour)
	r := curl(t, "-x", "http://"+httpAddr, "-U", alice, "-o", "/dev/null", fmt.Sprintf("%s/big?n=%d", plain.URL, 2<<20))
	if r.exit == 0 {
		t.Errorf("a 2 MiB download with a 1 MiB quota completed")
	}
	if r := curl(t, "-x", "http://"+httpAddr, "-U", alice, plain.URL+"/small"); r.code != 429 {
		t.Errorf("after the quota: got %d, want 429", r.code)
	}
	s := p.Stats()
	if len(s.Users) != 1 || s.Users[0].User != "alice" || s.Users[0].QuotaUsed < 1<<20 {
		t.Errorf("Stats().Users = %+v, want alice with the quota used", s.Users)
	}
}

func TestSlowClientsCut(t *testing.T) {
	cfg := Config{HeaderTimeout: 300 * time.Millisecond, AllowedDestinations: loopback, AnyPort: true}
	_, httpAddr, socksAddr := startProxy(t, cfg)
	for _, tc := range []struct{ name, addr, partial string }{
		{"http", httpAddr, "GET http://127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "},
		{"socks5", socksAddr, "\x05\x01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", tc.addr, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			io.WriteString(c, tc.partial)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.Copy(io.Discard, c) // until the proxy closes
			if el := time.Since(start); el < 250*time.Millisecond || el > 2*time.Second {
				t.Errorf("cut after %v, want about 300 ms", el)
			}
		})
	}
}

func TestFederation(t *testing.T) {
	home, other, third := newBox(t, "home"), newBox(t, "other"), newBox(t, "third")
	keys := keysOf(home, other, third)
	limited := Credential{User: "carol", Box: "other", Expires: time.Now().Add(time.Hour), Gateways: []string{"elsewhere"}}
	limitedTok, err := limited.Sign(other.priv)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		policy Federation
		list   []string
		user   string
		token  string
		ok     bool
	}{
		{"community serves other", FederateCommunity, nil, "bob", other.issue(t, "bob", time.Hour), true},
		{"own serves own", FederateOwn, nil, "alice", home.issue(t, "alice", time.Hour), true},
		{"own refuses other", FederateOwn, nil, "bob", other.issue(t, "bob", time.Hour), false},
		{"list serves listed", FederateList, []string{"other"}, "bob", other.issue(t, "bob", time.Hour), true},
		{"list serves own", FederateList, []string{"other"}, "alice", home.issue(t, "alice", time.Hour), true},
		{"list refuses unlisted", FederateList, []string{"other"}, "dave", third.issue(t, "dave", time.Hour), false},
		{"gateway list without us", FederateCommunity, nil, "carol", limitedTok, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(Config{Keys: keys, NodeID: "home", Federation: tc.policy, FederatedBoxes: tc.list, LocalNets: []netip.Prefix{}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.authenticate(tc.user, tc.token)
			if (err == nil) != tc.ok {
				t.Errorf("authenticate: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestCachedCredentialOutlivesKey: a verified credential keeps working
// when its box drops out of the roster (offline, unknown to Keys).
func TestCachedCredentialOutlivesKey(t *testing.T) {
	home := newBox(t, "home")
	online := true
	keys := func(id string) ([32]byte, bool) {
		if !online {
			return [32]byte{}, false
		}
		return keysOf(home)(id)
	}
	p, err := New(Config{Keys: keys, LocalNets: []netip.Prefix{}})
	if err != nil {
		t.Fatal(err)
	}
	tok := home.issue(t, "alice", time.Hour)
	if _, err := p.authenticate("alice", tok); err != nil {
		t.Fatal(err)
	}
	online = false
	if _, err := p.authenticate("alice", tok); err != nil {
		t.Errorf("cached credential refused while its box is unknown: %v", err)
	}
	if _, err := p.authenticate("alice", home.issue(t, "alice", time.Hour)); err == nil {
		t.Errorf("a new credential of an unknown box was accepted")
	}

	// With a roster as Keys, a box it forgets was revoked: its cached
	// credentials stop working at once.
	online = true
	p, err = New(Config{Keys: keys, KeysAuthoritative: true, LocalNets: []netip.Prefix{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.authenticate("alice", tok); err != nil {
		t.Fatal(err)
	}
	online = false
	if _, err := p.authenticate("alice", tok); !errors.Is(err, ErrBadCredential) {
		t.Errorf("cached credential of a revoked box: %v, want ErrBadCredential", err)
	}
}

func TestMetrics(t *testing.T) {
	plain := newOrigin(t, false)
	p, httpAddr, _ := startProxy(t, Config{AllowedDestinations: loopback, AnyPort: true})
	for range 3 {
		if r := curl(t, "-x", "http://"+httpAddr, plain.URL+"/small"); r.code != 200 {
			t.Fatalf("got %d", r.code)
		}
	}
	var b bytes.Buffer
	if err := p.WriteMetrics(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cloudbox_proxy_requests_total 3\n", "cloudbox_proxy_connections_total 3\n", `cloudbox_proxy_bytes_total{direction="down"} `} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, b.String())
		}
	}
}

// TestUpstreamKeepAlive: requests of separate clients share one kept-alive
// connection to the destination, and one the destination closed is
// replaced without the client noticing.
func TestUpstreamKeepAlive(t *testing.T) {
	plain := newOrigin(t, false)
	_, httpAddr, _ := startProxy(t, Config{AllowedDestinations: loopback, AnyPort: true})
	get := func() {
		t.Helper()
		if r := curl(t, "-x", "http://"+httpAddr, plain.URL+"/small"); r.code != 200 || len(r.body) != 100 {
			t.Fatalf("got %d %q", r.code, r.body)
		}
	}
	for range 3 {
		get()
	}
	if n := plain.conns(); n != 1 {
		t.Errorf("origin saw %d connections for 3 sequential requests, want 1", n)
	}
	plain.CloseClientConnections()
	get()
	if n := plain.conns(); n != 2 {
		t.Errorf("origin saw %d connections, want 2 after it closed the first", n)
	}
}

// tamper changes one character of a token's signature, always to another
// one (replacing the end with a fixed string is a no-op when the token
// already ends with it).
func tamper(tok string) string {
	i := len(tok) - 10
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}
