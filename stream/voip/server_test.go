package voip

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"
)

// sipClient sends raw SIP over UDP and reads the answers.
type sipClient struct {
	t    *testing.T
	c    *net.UDPConn
	to   *net.UDPAddr
	seq  int
	host string
}

func newSIPClient(t *testing.T, s *Server) *sipClient {
	return newSIPClientFrom(t, s, net.IPv4(127, 0, 0, 1))
}

func newSIPClientFrom(t *testing.T, s *Server, ip net.IP) *sipClient {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &sipClient{t: t, c: c, to: net.UDPAddrFromAddrPort(s.Addr()), host: c.LocalAddr().String()}
}

func (c *sipClient) send(msg string) {
	c.t.Helper()
	msg = strings.ReplaceAll(msg, "\n", "\r\n")
	if _, err := c.c.WriteToUDP([]byte(msg), c.to); err != nil {
		c.t.Fatal(err)
	}
}

// recv returns the next message, or "" after the timeout.
func (c *sipClient) recv(timeout time.Duration) string {
	c.t.Helper()
	buf := make([]byte, 65535)
	_ = c.c.SetReadDeadline(time.Now().Add(timeout))
	n, _, err := c.c.ReadFromUDP(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// register sends a REGISTER for user, with auth as the Authorization value
// ("" for none), and returns the response.
func (c *sipClient) register(user, auth string) string {
	c.t.Helper()
	c.seq++
	h := ""
	if auth != "" {
		h = "Authorization: " + auth + "\n"
	}
	c.send(fmt.Sprintf(`REGISTER sip:cloudbox.test SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bK%d;rport
Max-Forwards: 70
From: <sip:%s@cloudbox.test>;tag=t1
To: <sip:%s@cloudbox.test>
Call-ID: reg-%s@test
CSeq: %d REGISTER
Contact: <sip:%s@%s>
%sExpires: 600
Content-Length: 0

`, c.host, c.seq, user, user, user, c.seq, user, c.host, h))
	return c.recv(2 * time.Second)
}

var nonceRe = regexp.MustCompile(`nonce="([^"]+)"`)

func statusOf(res string) string {
	line, _, _ := strings.Cut(res, "\r\n")
	return line
}

// authFor answers the challenge in res for user with password.
func authFor(t *testing.T, res, user, password string) string {
	t.Helper()
	return digestFor(t, res, user, password, "REGISTER", "sip:cloudbox.test")
}

// digestFor answers the challenge in res for a request of method to uri.
func digestFor(t *testing.T, res, user, password, method, uri string) string {
	t.Helper()
	m := nonceRe.FindStringSubmatch(res)
	if m == nil {
		t.Fatalf("no nonce in %q", res)
	}
	c := digestCreds{Username: user, Realm: "cloudbox.test", Nonce: m[1], URI: uri, QOP: "auth", NC: "00000001", CNonce: "abc"}
	return fmt.Sprintf(`Digest username="%s", realm="cloudbox.test", nonce="%s", uri="%s", response="%s", algorithm=MD5, qop=auth, nc=00000001, cnonce="abc"`,
		user, c.Nonce, uri, digestResponse(c, method, password))
}

func TestRegisterAuth(t *testing.T) {
	s := runServer(t, Config{Addr: "127.0.0.1:0", Domain: "cloudbox.test", AuthFailures: 5,
		Password: func(u string) (string, bool) { return "right", u == "201" }})
	c := newSIPClient(t, s)

	res := c.register("201", "")
	if got := statusOf(res); got != "SIP/2.0 401 Unauthorized" || !strings.Contains(res, `realm="cloudbox.test"`) {
		t.Fatalf("REGISTER without credentials: %q", res)
	}
	if got := statusOf(c.register("201", authFor(t, res, "201", "wrong"))); got != "SIP/2.0 403 Forbidden" {
		t.Fatalf("wrong password: %q, want 403", got)
	}
	res = c.register("201", "")
	ok := c.register("201", authFor(t, res, "201", "right"))
	if got := statusOf(ok); got != "SIP/2.0 200 OK" || !strings.Contains(ok, "expires=600") {
		t.Fatalf("right password: %q", ok)
	}
	if !s.Registered("201") {
		t.Fatal("201 not registered after 200")
	}
	// someone else's account with one's own password is no better
	if got := statusOf(c.register("202", authFor(t, c.register("202", ""), "201", "right"))); got != "SIP/2.0 403 Forbidden" {
		t.Fatalf("registering 202 with 201's credentials: %q, want 403", got)
	}
	// a forged nonce gets a fresh challenge, not a login
	if got := statusOf(c.register("201", strings.Replace(authFor(t, res, "201", "right"), "nonce=\"", "nonce=\"x", 1))); got != "SIP/2.0 401 Unauthorized" {
		t.Fatalf("forged nonce: %q, want 401", got)
	}
	// garbage credentials: 400
	if got := statusOf(c.register("201", `Digest username="201", nonce=`)); got != "SIP/2.0 400 Bad Authorization" {
		t.Fatalf("garbage Authorization: %q, want 400", got)
	}

	// rate limit: after AuthFailures failures the source is refused, even
	// with the right password
	for range 4 { // failures 3 to 6 (two above)
		c.register("201", authFor(t, c.register("201", ""), "201", "wrong"))
	}
	res = c.register("201", "")
	if got := statusOf(res); got != "SIP/2.0 403 Too Many Failed Attempts" {
		t.Fatalf("after repeated failures: %q, want 403 Too Many Failed Attempts", got)
	}
	if s.stats.blocked.Load() == 0 || s.stats.authFailures.Load() != 6 {
		t.Errorf("counters: blocked %d failures %d", s.stats.blocked.Load(), s.stats.authFailures.Load())
	}
	var m strings.Builder
	s.WriteMetrics(&m)
	for _, want := range []string{"cloudbox_voip_auth_failures_total 6\n", "cloudbox_voip_registrations 1\n", "# TYPE cloudbox_voip_relay_packets_total counter\n"} {
		if !strings.Contains(m.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, m.String())
		}
	}
	// another source is not affected
	c2 := newSIPClientFrom(t, s, net.IPv4(127, 0, 0, 2))
	if got := statusOf(c2.register("201", "")); got != "SIP/2.0 401 Unauthorized" {
		t.Fatalf("other source: %q, want 401", got)
	}
}

func TestBadRequests(t *testing.T) {
	s := runServer(t, Config{Addr: "127.0.0.1:0", Domain: "cloudbox.test"})
	c := newSIPClient(t, s)
	via := "Via: SIP/2.0/UDP " + c.host + ";branch=z9hG4bKx1\n"
	hdrs := "From: <sip:100@cloudbox.test>;tag=a\nTo: <sip:999@cloudbox.test>\nCall-ID: bad@test\n"
	for _, tc := range []struct {
		name, msg, want string
	}{
		{"unknown extension", "INVITE sip:999@cloudbox.test SIP/2.0\n" + via + hdrs + "CSeq: 1 INVITE\nMax-Forwards: 70\nContent-Length: 0\n\n", "SIP/2.0 404 Not Found"},
		{"no cseq", "OPTIONS sip:999@cloudbox.test SIP/2.0\n" + via + hdrs + "Content-Length: 0\n\n", "SIP/2.0 400 Missing CSeq"},
		{"cseq method mismatch", "INVITE sip:999@cloudbox.test SIP/2.0\n" + via + hdrs + "CSeq: 1 BYE\nContent-Length: 0\n\n", "SIP/2.0 400 CSeq Method Mismatch"},
		{"max-forwards 0", "INVITE sip:999@cloudbox.test SIP/2.0\n" + via + hdrs + "CSeq: 1 INVITE\nMax-Forwards: 0\nContent-Length: 0\n\n", "SIP/2.0 483 Too Many Hops"},
		{"version", "INVITE sip:999@cloudbox.test SIP/3.0\n" + via + hdrs + "CSeq: 1 INVITE\nContent-Length: 0\n\n", "SIP/2.0 505 Version Not Supported"},
		{"bad cseq number", "INVITE sip:999@cloudbox.test SIP/2.0\n" + via + hdrs + "CSeq: x INVITE\nContent-Length: 0\n\n", "SIP/2.0 400 Bad Request"},
		{"bad uri", "INVITE sip:@@:: SIP/2.0\n" + via + hdrs + "CSeq: 1 INVITE\nContent-Length: 0\n\n", "SIP/2.0 400 Bad Request"},
		{"bad expires", "REGISTER sip:cloudbox.test SIP/2.0\n" + via + hdrs + "CSeq: 1 REGISTER\nContact: <sip:999@" + c.host + ">\nExpires: soon\nContent-Length: 0\n\n", "SIP/2.0 400 Bad Expires"},
		{"options to the server", "OPTIONS sip:cloudbox.test SIP/2.0\n" + via + hdrs + "CSeq: 1 OPTIONS\nContent-Length: 0\n\n", "SIP/2.0 200 OK"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.send(tc.msg)
			if got := statusOf(c.recv(2 * time.Second)); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	// pure garbage is dropped, and the server still answers afterwards
	c.send("\x00\x01garbage\n\n")
	c.send("OPTIONS sip:cloudbox.test SIP/2.0\n" + via + hdrs + "CSeq: 2 OPTIONS\nContent-Length: 0\n\n")
	if got := statusOf(c.recv(2 * time.Second)); got != "SIP/2.0 200 OK" {
		t.Fatalf("after garbage: %q", got)
	}
}

// TestNoOpenRelay: requests inside a dialog this box did not see are not
// forwarded, whatever their Route or Request-URI say.
func TestNoOpenRelay(t *testing.T) {
	s := runServer(t, Config{Addr: "127.0.0.1:0", Domain: "cloudbox.test"})
	c := newSIPClient(t, s)
	victim, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	v := victim.LocalAddr().String()
	c.send("BYE sip:x@" + v + " SIP/2.0\nVia: SIP/2.0/UDP " + c.host + ";branch=z9hG4bKr1\nRoute: <sip:" + s.Addr().String() + ";lr>\nRoute: <sip:" + v + ";lr>\n" +
		"From: <sip:a@b>;tag=1\nTo: <sip:x@y>;tag=2\nCall-ID: forged\nCSeq: 2 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n")
	if got := statusOf(c.recv(2 * time.Second)); got != "SIP/2.0 481 Call/Transaction Does Not Exist" {
		t.Fatalf("forged in-dialog BYE: %q, want 481", got)
	}
	_ = victim.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := victim.ReadFromUDP(make([]byte, 100)); err == nil {
		t.Fatalf("the victim received %d bytes", n)
	}
}

func TestCallRateLimit(t *testing.T) {
	s := runServer(t, Config{Addr: "127.0.0.1:0", Domain: "cloudbox.test", CallRate: 0.1}) // bursts of 1, a call per 10 s
	c := newSIPClient(t, s)
	got := map[string]int{}
	for i := range 3 {
		c.send(fmt.Sprintf("INVITE sip:999@cloudbox.test SIP/2.0\nVia: SIP/2.0/UDP %s;branch=z9hG4bKrl%d\nFrom: <sip:100@cloudbox.test>;tag=a\n"+
			"To: <sip:999@cloudbox.test>\nCall-ID: rate-%d\nCSeq: 1 INVITE\nMax-Forwards: 70\nContent-Length: 0\n\n", c.host, i, i))
		got[statusOf(c.recv(2*time.Second))]++
	}
	if got["SIP/2.0 404 Not Found"] != 1 || got["SIP/2.0 503 Too Many Calls"] != 2 {
		t.Fatalf("answers %v, want a 404 then two 503s", got)
	}
}

// invite sends a new INVITE from user to 999 (no such extension) with
// proxyAuth as the Proxy-Authorization value ("" for none) and returns the
// response.
func (c *sipClient) invite(user, proxyAuth string) string {
	c.t.Helper()
	h := ""
	if proxyAuth != "" {
		h = "Proxy-Authorization: " + proxyAuth + "\n"
	}
	return c.inviteWith(user, h)
}

// inviteWith is invite with the extra header lines h.
func (c *sipClient) inviteWith(user, h string) string {
	c.t.Helper()
	c.seq++
	c.send(fmt.Sprintf(`INVITE sip:999@cloudbox.test SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bKi%d;rport
Max-Forwards: 70
From: <sip:%s@cloudbox.test>;tag=f%d
To: <sip:999@cloudbox.test>
Call-ID: call-%d@test
CSeq: 1 INVITE
%sContent-Length: 0

`, c.host, c.seq, user, c.seq, c.seq, h))
	return c.recv(2 * time.Second)
}

// inviteAuthFor answers the 407 in res as user with password.
func inviteAuthFor(t *testing.T, res, user, password string) string {
	t.Helper()
	return digestFor(t, res, user, password, "INVITE", "sip:999@cloudbox.test")
}

// TestInviteAuth: a phone's new call must prove its caller (407, digest
// for the From user); another user's credentials are refused; the box's
// own user agents and other boxes of the community (Config.Trusted) pass
// unchallenged.
func TestInviteAuth(t *testing.T) {
	pw := map[string]string{"100": "pw-100", "201": "pw-201"}
	s := runServer(t, Config{Addr: "127.0.0.1:0", Domain: "cloudbox.test",
		Password: func(u string) (string, bool) { p, ok := pw[u]; return p, ok },
		Trusted:  func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.0.2") }})
	c := newSIPClient(t, s)

	res := c.invite("100", "")
	if got := statusOf(res); got != "SIP/2.0 407 Proxy Authentication Required" || !strings.Contains(res, "Proxy-Authenticate: Digest realm=\"cloudbox.test\"") {
		t.Fatalf("INVITE without credentials: %q", res)
	}
	if got := statusOf(c.invite("100", inviteAuthFor(t, c.invite("100", ""), "201", "pw-201"))); got != "SIP/2.0 403 Forbidden" {
		t.Fatalf("calling as 100 with 201's credentials: %q, want 403", got)
	}
	if got := statusOf(c.invite("100", inviteAuthFor(t, c.invite("100", ""), "100", "wrong"))); got != "SIP/2.0 403 Forbidden" {
		t.Fatalf("wrong password: %q, want 403", got)
	}
	// Proven: the call goes on (and finds no extension 999).
	if got := statusOf(c.invite("100", inviteAuthFor(t, c.invite("100", ""), "100", "pw-100"))); got != "SIP/2.0 404 Not Found" {
		t.Fatalf("calling as 100 with its credentials: %q, want the call routed (404 for 999)", got)
	}
	// Another box of the community: not challenged.
	if got := statusOf(newSIPClientFrom(t, s, net.IPv4(127, 0, 0, 2)).invite("100", "")); got != "SIP/2.0 404 Not Found" {
		t.Fatalf("INVITE from a trusted box: %q, want it routed without a challenge", got)
	}
	// The box's own browser bridge (its token): not challenged; a wrong
	// token is no better than none.
	if got := statusOf(c.inviteWith("100", bridgeHeader+": "+s.bridgeToken+"\n")); got != "SIP/2.0 404 Not Found" {
		t.Fatalf("INVITE from the box's own bridge: %q, want it routed without a challenge", got)
	}
	if got := statusOf(c.inviteWith("100", bridgeHeader+": 0123\n")); got != "SIP/2.0 407 Proxy Authentication Required" {
		t.Fatalf("INVITE with a wrong bridge token: %q, want 407", got)
	}
}
