package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The tests in this file run the server on real sockets on 127.0.0.1 and
// ask it with the real dig (Debian package dnsutils):
//
//	dig ──UDP/TCP──▶ Server 127.0.0.1:port0 ──UDP/TCP──▶ testUpstream 127.0.0.1:port0 (miekg/dns)

// testUpstream is a tiny server on 127.0.0.1, UDP and TCP on one port,
// that counts the queries it gets. Over UDP it truncates answers to the
// query's payload size, as real servers do.
type testUpstream struct {
	addr    string
	queries atomic.Int64
	srvs    []*dns.Server
	done    chan error
}

func startUpstream(t *testing.T, handler func(q *dns.Msg) *dns.Msg) *testUpstream {
	t.Helper()
	// The same port for UDP and TCP, as the server's own listen does.
	pc, ln, err := listenPair(t.Context(), new(net.ListenConfig), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &testUpstream{addr: pc.LocalAddr().String(), done: make(chan error, 2)}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		u.queries.Add(1)
		r := handler(q)
		if w.RemoteAddr().Network() == "udp" {
			size := dns.MinMsgSize
			if opt := q.IsEdns0(); opt != nil {
				size = int(opt.UDPSize())
			}
			r.Truncate(size)
		}
		w.WriteMsg(r)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		u.srvs = append(u.srvs, srv)
		go func() { u.done <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("test upstream did not start")
		}
	}
	t.Cleanup(func() {
		u.stop()
		checkNoLeaks(t, "github.com/miekg/dns.(*Server)")
	})
	return u
}

// stop shuts the upstream down; its port then refuses queries.
func (u *testUpstream) stop() {
	for _, srv := range u.srvs {
		srv.Shutdown()
		<-u.done
	}
	u.srvs = nil
}

// fakeClock is a Config.Now that tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// startServer runs a Server on 127.0.0.1 port 0 (UDP and TCP) until the
// test ends, then checks that Run returned nil and left no goroutines.
func startServer(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	cfg.Listen = []string{"127.0.0.1:0"}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("server not ready in 5 s")
	}
	addrs := s.Addrs()
	if len(addrs) != 2 || addrs[0].Network() != "udp" || addrs[1].Network() != "tcp" || addrs[0].String() != addrs[1].String() {
		t.Fatalf("Addrs() = %v, want one UDP and one TCP address on the same port", addrs)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10 s of cancellation")
		}
		checkNoLeaks(t, "dnsproxy.(*Server)")
	})
	return s, addrs[0].String()
}

func TestDigZone(t *testing.T) {
	_, addr := startServer(t, Config{Zone: testZone()})
	for _, tc := range []struct {
		name       string
		args       []string
		wantStatus string
		wantAnswer []string
		wantFlags  []string
	}{
		{name: "A", args: []string{"box1.cb.home.arpa", "A"}, wantStatus: "NOERROR", wantFlags: []string{"aa"},
			wantAnswer: []string{"box1.cb.home.arpa. 60 IN A 10.1.0.1"}},
		{name: "AAAA", args: []string{"box1.cb.home.arpa", "AAAA"}, wantStatus: "NOERROR",
			wantAnswer: []string{"box1.cb.home.arpa. 60 IN AAAA fd00::1"}},
		{name: "mixed case", args: []string{"BOX2.Cb.Home.Arpa", "A"}, wantStatus: "NOERROR",
			wantAnswer: []string{"BOX2.Cb.Home.Arpa. 60 IN A 10.1.0.2"}},
		{name: "over TCP", args: []string{"+tcp", "box2.cb.home.arpa", "A"}, wantStatus: "NOERROR",
			wantAnswer: []string{"box2.cb.home.arpa. 60 IN A 10.1.0.2"}},
		{name: "NXDOMAIN", args: []string{"nope.cb.home.arpa", "A"}, wantStatus: "NXDOMAIN"},
		{name: "NODATA", args: []string{"box2.cb.home.arpa", "AAAA"}, wantStatus: "NOERROR"},
		{name: "browse domain", args: []string{"b._dns-sd._udp.cb.home.arpa", "PTR"}, wantStatus: "NOERROR",
			wantAnswer: []string{"b._dns-sd._udp.cb.home.arpa. 60 IN PTR cb.home.arpa."}},
		{name: "service types", args: []string{"_services._dns-sd._udp.cb.home.arpa", "PTR"}, wantStatus: "NOERROR",
			wantAnswer: []string{
				"_services._dns-sd._udp.cb.home.arpa. 60 IN PTR _http._tcp.cb.home.arpa.",
				"_services._dns-sd._udp.cb.home.arpa. 60 IN PTR _rtsp._tcp.cb.home.arpa.",
			}},
		{name: "instances", args: []string{"_http._tcp.cb.home.arpa", "PTR"}, wantStatus: "NOERROR",
			wantAnswer: []string{
				`_http._tcp.cb.home.arpa. 60 IN PTR Kitchen\032Printer\032\(2\)\032\195\188._http._tcp.cb.home.arpa.`,
				"_http._tcp.cb.home.arpa. 60 IN PTR Panel._http._tcp.cb.home.arpa.",
			}},
		{name: "SRV of an instance with spaces and UTF-8", args: []string{`Kitchen\032Printer\032\(2\)\032\195\188._http._tcp.cb.home.arpa`, "SRV"}, wantStatus: "NOERROR",
			wantAnswer: []string{`Kitchen\032Printer\032\(2\)\032\195\188._http._tcp.cb.home.arpa. 60 IN SRV 0 0 8080 box2.cb.home.arpa.`}},
		{name: "TXT", args: []string{`Radio\.Stream._rtsp._tcp.cb.home.arpa`, "TXT"}, wantStatus: "NOERROR",
			wantAnswer: []string{`Radio\.Stream._rtsp._tcp.cb.home.arpa. 60 IN TXT "a=1" "b=two words"`}},
		{name: "no upstreams: REFUSED", args: []string{"example.com", "A"}, wantStatus: "REFUSED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dig(t, addr, tc.args...)
			if r.status != tc.wantStatus {
				t.Fatalf("status %q, want %q\n%s", r.status, tc.wantStatus, r.out)
			}
			got := slices.Clone(r.answer)
			slices.Sort(got)
			if !equal(got, tc.wantAnswer) {
				t.Errorf("answer:\n got %q\nwant %q\n%s", got, tc.wantAnswer, r.out)
			}
			for _, f := range tc.wantFlags {
				if !slices.Contains(r.flags, f) {
					t.Errorf("flags %q, want %q among them", r.flags, f)
				}
			}
		})
	}
}

func TestDigForwarding(t *testing.T) {
	up := startUpstream(t, answerA("192.0.2.7", 300))
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s, addr := startServer(t, Config{Upstreams: []string{up.addr}, Now: clk.now})

	r := dig(t, addr, "www.example", "A")
	if r.status != "NOERROR" || !equal(r.answer, []string{"www.example. 300 IN A 192.0.2.7"}) {
		t.Fatalf("forwarded answer: %s %q\n%s", r.status, r.answer, r.out)
	}
	if !slices.Contains(r.flags, "ra") || slices.Contains(r.flags, "aa") {
		t.Errorf("flags %q, want ra and not aa", r.flags)
	}
	if n := up.queries.Load(); n != 1 {
		t.Fatalf("upstream got %d queries, want 1", n)
	}

	clk.advance(100 * time.Second)
	r = dig(t, addr, "www.example", "A")
	if !equal(r.answer, []string{"www.example. 200 IN A 192.0.2.7"}) {
		t.Errorf("cached answer %q, want the TTL 100 s lower", r.answer)
	}
	if n := up.queries.Load(); n != 1 {
		t.Errorf("upstream got %d queries after a repeated query, want 1 (a cache hit)", n)
	}
	if r := dig(t, addr, "+tcp", "www.example", "A"); len(r.answer) != 1 || up.queries.Load() != 1 {
		t.Errorf("cached answer over TCP: %q, upstream queries %d", r.answer, up.queries.Load())
	}
	if r := dig(t, addr, "nx.example", "A"); r.status != "NXDOMAIN" {
		t.Errorf("forwarded NXDOMAIN: %s", r.status)
	}

	// The upstream goes away: a cached name is served stale, an uncached
	// one gets SERVFAIL.
	up.stop()
	clk.advance(time.Hour)
	r = dig(t, addr, "www.example", "A")
	if r.status != "NOERROR" || !equal(r.answer, []string{"www.example. 30 IN A 192.0.2.7"}) {
		t.Errorf("expired name with the upstream down: %s %q, want the stale answer with TTL 30\n%s", r.status, r.answer, r.out)
	}
	if r := dig(t, addr, "new.example", "A"); r.status != "SERVFAIL" {
		t.Errorf("uncached name with the upstream down: %s, want SERVFAIL", r.status)
	}
	m := s.Metrics()
	if m.StaleServed != 1 || m.ServFail != 1 || m.CacheHits != 2 || m.UpstreamErrors < 2 {
		t.Errorf("metrics %+v", m)
	}
}

func TestDigFailover(t *testing.T) {
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	dead.Close() // queries to it get ICMP port unreachable
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close() // reads nothing, answers nothing: a timeout
	up := startUpstream(t, answerA("192.0.2.8", 300))

	for _, tc := range []struct {
		name  string
		first string
	}{
		{"first refuses", deadAddr},
		{"first times out", silent.LocalAddr().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := up.queries.Load()
			_, addr := startServer(t, Config{Upstreams: []string{tc.first, up.addr}, UpstreamTimeout: 300 * time.Millisecond})
			for _, name := range []string{"a.example", "b.example"} {
				start := time.Now()
				r := dig(t, addr, name, "A")
				if r.status != "NOERROR" || len(r.answer) != 1 || !strings.HasSuffix(r.answer[0], "192.0.2.8") {
					t.Fatalf("%s: %s %q, want the second upstream's answer\n%s", name, r.status, r.answer, r.out)
				}
				if d := time.Since(start); name == "b.example" && d > 250*time.Millisecond {
					t.Errorf("%s took %v: the upstream that answered last should be asked first", name, d)
				}
			}
			if n := up.queries.Load() - before; n != 2 {
				t.Errorf("second upstream got %d queries, want 2", n)
			}
		})
	}
}

func TestDigTruncation(t *testing.T) {
	up := startUpstream(t, func(q *dns.Msg) *dns.Msg {
		r := new(dns.Msg).SetReply(q)
		for i := range 60 {
			r.Answer = append(r.Answer, mustRR(fmt.Sprintf("%s 60 IN TXT \"record number %d with some padding text\"", q.Question[0].Name, i)))
		}
		return r
	})
	_, addr := startServer(t, Config{Upstreams: []string{up.addr}})
	r := dig(t, addr, "+ignore", "+bufsize=1232", "big.example", "TXT")
	if !slices.Contains(r.flags, "tc") {
		t.Errorf("flags %q: want tc on a 3 kB answer over UDP\n%s", r.flags, r.out)
	}
	r = dig(t, addr, "big.example", "TXT") // dig retries over TCP itself
	if len(r.answer) != 60 || slices.Contains(r.flags, "tc") {
		t.Errorf("%d answers with flags %q after the retry over TCP, want 60", len(r.answer), r.flags)
	}
}

func TestDigRefusesOutsideAllowedNets(t *testing.T) {
	up := startUpstream(t, answerA("192.0.2.9", 300))
	s, addr := startServer(t, Config{
		Zone:        testZone(),
		Upstreams:   []string{up.addr},
		AllowedNets: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
	})
	for _, args := range [][]string{{"box1.cb.home.arpa", "A"}, {"www.example", "A"}, {"+tcp", "www.example", "A"}} {
		if r := dig(t, addr, args...); r.status != "REFUSED" || len(r.answer) != 0 {
			t.Errorf("dig %v from 127.0.0.1: %s %q, want REFUSED", args, r.status, r.answer)
		}
	}
	if n := up.queries.Load(); n != 0 {
		t.Errorf("upstream got %d queries from a refused client", n)
	}
	// The box's networks change: loopback becomes allowed.
	s.SetAllowedNets([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	if r := dig(t, addr, "www.example", "A"); r.status != "NOERROR" || len(r.answer) != 1 {
		t.Errorf("dig after SetAllowedNets: %s %q, want one answer", r.status, r.answer)
	}
}

func TestRunErrors(t *testing.T) {
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s, err := New(Config{Listen: []string{busy.LocalAddr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "listening on udp") {
		t.Errorf("Run on a busy port: %v, want a listening error", err)
	}
	if err := s.Run(t.Context()); !errors.Is(err, ErrAlreadyRun) {
		t.Errorf("second Run: %v, want ErrAlreadyRun", err)
	}
	for _, cfg := range []Config{
		{Upstreams: []string{"dns.example:53"}},
		{MaxUDPSize: 100},
		{Domain: "bad..name"},
		{AllowedNets: []netip.Prefix{{}}},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New(%+v): %v, want ErrInvalidConfig", cfg, err)
		}
	}
	checkNoLeaks(t, "dnsproxy.(*Server)")
}

func TestTCPLimits(t *testing.T) {
	_, addr := startServer(t, Config{Zone: testZone(), MaxTCPConns: 1, TCPIdleTimeout: 200 * time.Millisecond})
	c1, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	// Two pipelined queries on one connection (RFC 7766 §6.2.1.1).
	co := &dns.Conn{Conn: c1}
	for _, name := range []string{"box1.cb.home.arpa.", "box2.cb.home.arpa."} {
		if err := co.WriteMsg(newQuery(name, dns.TypeA)); err != nil {
			t.Fatal(err)
		}
	}
	c1.SetReadDeadline(time.Now().Add(5 * time.Second))
	for range 2 {
		if r, err := co.ReadMsg(); err != nil || len(r.Answer) != 1 {
			t.Fatalf("pipelined answer %v, %v", r, err)
		}
	}
	// A second connection is over MaxTCPConns: closed at once.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); err == nil {
		t.Error("connection beyond MaxTCPConns was not closed")
	}
	// The first is closed when idle.
	if _, err := c1.Read(make([]byte, 1)); err == nil || errAs[net.Error](err) && err.(net.Error).Timeout() {
		t.Errorf("idle connection: %v, want it closed by the server", err)
	}
}
