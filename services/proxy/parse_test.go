package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCredentialRoundTrip(t *testing.T) {
	home := newBox(t, "home")
	want := Credential{User: "Núria", Box: "home", Expires: time.Unix(1900000000, 0), Gateways: []string{"gw1", "gw-2"}}
	tok, err := want.Sign(home.priv)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyCredential(tok, keysOf(home), time.Unix(1800000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("credential (-want +got):\n%s", diff)
	}
	if _, err := VerifyCredential(tok, keysOf(home), time.Unix(1900000000, 0)); !errors.Is(err, ErrExpired) {
		t.Errorf("at expiry: %v, want ErrExpired", err)
	}
}

func TestCredentialInvalid(t *testing.T) {
	home := newBox(t, "home")
	exp := time.Now().Add(time.Hour)
	for _, c := range []Credential{
		{User: "", Box: "home", Expires: exp},
		{User: "a:b", Box: "home", Expires: exp},
		{User: "tab\there", Box: "home", Expires: exp},
		{User: strings.Repeat("x", 65), Box: "home", Expires: exp},
		{User: "alice", Box: "", Expires: exp},
		{User: "alice", Box: "bad box", Expires: exp},
		{User: "alice", Box: "home", Expires: exp, Gateways: make([]string, 17)},
	} {
		if _, err := c.Sign(home.priv); !errors.Is(err, ErrBadCredential) {
			t.Errorf("Sign(%+v): %v, want ErrBadCredential", c, err)
		}
	}
	good := home.issue(t, "alice", time.Hour)
	for _, tok := range []string{"", "cbp1_", "cbp2_" + good[5:], good + "A", good + "AA", "cbp1_!!!!", strings.Repeat("A", 2000)} {
		if _, _, _, err := ParseCredential(tok); !errors.Is(err, ErrBadCredential) {
			t.Errorf("ParseCredential(%.40q): %v, want ErrBadCredential", tok, err)
		}
	}
}

func FuzzParseCredential(f *testing.F) {
	home := newBox(f, "home")
	f.Add(home.issue(f, "alice", time.Hour))
	tok, _ := Credential{User: "bob", Box: "b", Expires: time.Unix(1, 0), Gateways: []string{"g"}}.Sign(home.priv)
	f.Add(tok)
	f.Add("cbp1_AAAA")
	f.Fuzz(func(t *testing.T, tok string) {
		c, payload, sig, err := ParseCredential(tok)
		if err != nil {
			return
		}
		if len(sig) != 64 || checkUser(c.User) != nil || !validNodeID(c.Box) || len(c.Gateways) > maxGateways {
			t.Fatalf("accepted an invalid credential %+v", c)
		}
		again, err := c.marshal()
		if err != nil || !bytes.Equal(again, payload) {
			t.Fatalf("payload does not round-trip: %v", err)
		}
	})
}

func TestParseBasic(t *testing.T) {
	for _, tc := range []struct {
		in, name, pass string
		ok             bool
	}{
		{"Basic YWxpY2U6c2VjcmV0", "alice", "secret", true},
		{"basic YWxpY2U6c2VjOnJldA==", "alice", "sec:ret", true},
		{"Bearer YWxpY2U6c2VjcmV0", "", "", false},
		{"Basic !!", "", "", false},
		{"Basic OnNlY3JldA==", "", "", false}, // ":secret"
		{"Basic YWxpY2U=", "", "", false},     // "alice"
		{"", "", "", false},
	} {
		name, pass, ok := parseBasic(tc.in)
		if name != tc.name || pass != tc.pass || ok != tc.ok {
			t.Errorf("parseBasic(%q) = %q, %q, %v; want %q, %q, %v", tc.in, name, pass, ok, tc.name, tc.pass, tc.ok)
		}
	}
}

// socksSeeds are client handshakes: greeting, username/password, request.
var socksSeeds = [][]byte{
	[]byte("\x05\x01\x02\x01\x05alice\x06secret\x05\x01\x00\x03\x0bexample.org\x01\xbb"),
	[]byte("\x05\x02\x00\x02\x01\x01a\x01b\x05\x01\x00\x01\xc0\x00\x02\x01\x00\x50"),
	[]byte("\x05\x01\x00\x05\x01\x00\x04\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x01\xbb"),
	[]byte("\x05\x01\x00\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x16"),
	[]byte("\x04\x01\x00\x50"),
}

func TestSOCKSParse(t *testing.T) {
	type result struct {
		Methods []int
		User    string
		Pass    string
		Host    string
		Port    uint16
		Rep     byte
		Err     bool
	}
	for i, want := range []result{
		{Methods: []int{2}, User: "alice", Pass: "secret", Host: "example.org", Port: 443},
		{Methods: []int{0, 2}, User: "a", Pass: "b", Host: "192.0.2.1", Port: 80},
		{Methods: []int{0}, Host: "2001:db8::1", Port: 443},
		{Methods: []int{0}, Host: "127.0.0.1", Port: 22, Rep: repCmdNotSupported},
		{Err: true},
	} {
		got := parseSOCKS(socksSeeds[i])
		g := result{User: got.user, Pass: got.pass, Host: got.req.host, Port: got.req.port, Rep: got.rep, Err: got.err != nil}
		for m, ok := range got.methods {
			if ok {
				g.Methods = append(g.Methods, m)
			}
		}
		if diff := cmp.Diff(want, g); diff != "" {
			t.Errorf("seed %d (-want +got):\n%s", i, diff)
		}
	}
}

type socksParsed struct {
	methods    [256]bool
	user, pass string
	req        socksRequest
	rep        byte
	err        error
}

// parseSOCKS runs the server's parsers over a whole client handshake, the
// way handleSOCKS does.
func parseSOCKS(b []byte) (r socksParsed) {
	in := bytes.NewReader(b)
	if r.methods, r.err = readGreeting(in); r.err != nil {
		return r
	}
	if r.methods[methodUserPass] {
		if r.user, r.pass, r.err = readUserPass(in); r.err != nil {
			return r
		}
	}
	r.req, r.rep, r.err = readRequest(in)
	return r
}

func FuzzSOCKS(f *testing.F) {
	for _, s := range socksSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := parseSOCKS(b)
		if r.err != nil || r.rep != 0 {
			return
		}
		if r.req.cmd != cmdConnect || r.req.host == "" || len(r.req.host) > 253 {
			t.Fatalf("accepted request %+v", r.req)
		}
		if _, err := netip.ParseAddr(r.req.host); err != nil && !validHostName([]byte(r.req.host)) {
			t.Fatalf("accepted host %q", r.req.host)
		}
	})
}

func TestPAC(t *testing.T) {
	got, err := RenderPAC(PAC{
		Gateways:      []string{"gw1.cb.home.arpa:3128", "[fd00::1]:3128", "100.64.0.2:3128"},
		DirectDomains: []string{"cb.home.arpa."},
		DirectNets:    []netip.Prefix{netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("fd00::/8")},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `// cloudbox proxy auto-config: community destinations direct, the rest
// through the nearest gateway, then the next ones.
function FindProxyForURL(url, host) {
  host = host.toLowerCase();
  if (isPlainHostName(host)) return "DIRECT";
  if (host == "cb.home.arpa" || dnsDomainIs(host, ".cb.home.arpa")) return "DIRECT";
  var v4 = /^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$/.test(host);
  var v6 = host.indexOf(":") >= 0;
  if (v6 && host.charAt(0) == "[") host = host.substring(1, host.length - 1);
  if (v4 && isInNet(host, "100.64.0.0", "255.192.0.0")) return "DIRECT";
  if (v6 && typeof isInNetEx == "function" && isInNetEx(host, "fd00::/8")) return "DIRECT";
  return "PROXY gw1.cb.home.arpa:3128; PROXY [fd00::1]:3128; PROXY 100.64.0.2:3128; DIRECT";
}
`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("PAC (-want +got):\n%s", diff)
	}
	for _, bad := range []PAC{
		{Gateways: []string{`gw"; alert(1); "x:3128`}},
		{Gateways: []string{"gw"}},
		{Gateways: []string{"gw:0"}},
		{DirectDomains: []string{`a");x("`}},
		{DirectNets: []netip.Prefix{{}}},
	} {
		if _, err := RenderPAC(bad); err == nil {
			t.Errorf("RenderPAC(%+v) accepted it", bad)
		}
	}
}

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newBucket(1000, 500, t0)
	if d := b.take(t0, 500); d != 0 {
		t.Errorf("within the burst: wait %v", d)
	}
	if d := b.take(t0, 1000); d != time.Second {
		t.Errorf("1000 over: wait %v, want 1s", d)
	}
	if d := b.take(t0.Add(2*time.Second), 500); d != 0 {
		t.Errorf("after paying back: wait %v, want 0", d)
	}
	if d := b.take(t0.Add(time.Hour), 600); d != 100*time.Millisecond {
		t.Errorf("burst caps the saving: wait %v, want 100ms", d)
	}
}

// requestSeeds are raw client requests for FuzzRequest.
var requestSeeds = []string{
	"GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\n\r\n",
	"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\nProxy-Authorization: Basic YWxpY2U6eA==\r\n\r\n",
	"CONNECT [::1]:22 HTTP/1.1\r\nHost: [::1]:22\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET https://example.org/ HTTP/1.1\r\nHost: example.org\r\nProxy-Authorization: Basic !!!\r\n\r\n",
	"POST http://203.0.113.9/ HTTP/1.1\r\nHost: 203.0.113.9\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello",
	"CONNECT 127.0.0.1:443 HTTP/1.0\r\n\r\n",
	"GET http://[fe80::1%25eth0]/ HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\n\r\n",
	"\x00\x01\x02garbage\r\n\r\n",
	"GET http://example.org/ HTTP/9.9\r\n\r\n",
}

// FuzzRequest sends raw bytes as a client to a running proxy: whatever
// they are, it answers within its timeouts with one of the statuses of
// bad input (never a relayed response: no credential can be valid), or
// closes without an answer; an answer never names a loopback or private
// address.
func FuzzRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	home := newBox(f, "home")
	cfg := authConfig(home)
	cfg.AllowedDestinations = nil // default rules: loopback and private denied
	cfg.HeaderTimeout = 2 * time.Second
	cfg.Resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		return nil, errors.New("no DNS in this test")
	}}
	_, httpAddr, _ := startProxy(f, cfg)
	allowed := map[int]bool{400: true, 403: true, 405: true, 407: true, 411: true, 413: true, 414: true,
		417: true, 429: true, 431: true, 501: true, 505: true}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := net.DialTimeout("tcp", httpAddr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(raw)
		c.(*net.TCPConn).CloseWrite()
		answer, err := io.ReadAll(c)
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("reading the answer: %v (the proxy did not end the exchange in time)", err)
		}
		if len(answer) == 0 {
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(answer)), nil)
		if err != nil {
			t.Fatalf("answer is not an HTTP response: %v\n%q", err, answer)
		}
		if !allowed[resp.StatusCode] {
			t.Fatalf("status %d for %q:\n%q", resp.StatusCode, raw, answer)
		}
		for _, leak := range []string{"127.0.0.1", "::1", "192.168.", "10.0.", "172.16."} {
			if bytes.Contains(answer, []byte(leak)) && !bytes.Contains(raw, []byte(leak)) {
				t.Fatalf("answer names %s:\n%q", leak, answer)
			}
		}
	})
}
