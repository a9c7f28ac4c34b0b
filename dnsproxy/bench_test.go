package dnsproxy

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// hotServer returns a server with the test zone and a cache that holds
// www.example. A (from a fakeUpstream), and a request for name from src.
func hotServer(tb testing.TB) *Server {
	tb.Helper()
	up := &fakeUpstream{handler: answerA("192.0.2.1", 3600)}
	// A rate limit no loop reaches, so that the limiter is measured, not hit.
	s, err := New(Config{Zone: testZone(), Upstreams: []string{"127.0.0.1:5301"}, Dial: up.dial, RateLimit: 1e12, RateBurst: 1 << 30})
	if err != nil {
		tb.Fatal(err)
	}
	q := newQuery("www.example.", dns.TypeA)
	q.SetEdns0(1232, false)
	if r := respondDirect(tb, s, "127.0.0.1", q, false); len(r.Answer) != 1 {
		tb.Fatalf("warming the cache: %v", r)
	}
	return s
}

// hotPath returns a function that answers one query for name from src
// through respond, failing if it is not answered there.
func hotPath(tb testing.TB, s *Server, name, src string) func() {
	m := newQuery(name, dns.TypeA)
	m.SetEdns0(1232, false)
	p := pack(tb, m)
	sc := newScratch(udpBufSize)
	addr := netip.MustParseAddr(src)
	ctx := tb.Context()
	c := new(counters)
	return func() {
		r := request{p: p, src: addr}
		resp, up := s.respond(ctx, c, sc, &r, s.nanotime())
		if up || len(resp) < len(p) {
			tb.Fatalf("%s not answered on the hot path", name)
		}
	}
}

// TestHotPathAllocs is the allocation budget of the hot path: none.
func TestHotPathAllocs(t *testing.T) {
	s := hotServer(t)
	for _, tc := range []struct{ name, qname, src string }{
		{"cache hit from loopback", "www.example.", "127.0.0.1"},
		{"cache hit from the LAN (rate limited)", "WWW.example.", "192.168.1.20"},
		{"zone answer", "box1.cb.home.arpa.", "127.0.0.1"},
		{"zone NXDOMAIN", "nope.cb.home.arpa.", "192.168.1.20"},
		{"refused", "www.example.", "203.0.113.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := hotPath(t, s, tc.qname, tc.src)
			f() // the rate limiter's first sight of a client allocates its bucket
			if n := testing.AllocsPerRun(1000, f); n != 0 {
				t.Errorf("%v allocations per query, want 0", n)
			}
		})
	}
}

func BenchmarkCachedHit(b *testing.B) {
	s := hotServer(b)
	for _, src := range []string{"127.0.0.1", "192.168.1.20"} {
		b.Run(src, func(b *testing.B) {
			f := hotPath(b, s, "www.example.", src)
			b.ReportAllocs()
			for b.Loop() {
				f()
			}
		})
	}
}

func BenchmarkZoneAnswer(b *testing.B) {
	s := hotServer(b)
	f := hotPath(b, s, "box1.cb.home.arpa.", "127.0.0.1")
	b.ReportAllocs()
	for b.Loop() {
		f()
	}
}

func BenchmarkParseQuery(b *testing.B) {
	m := newQuery("www.example.com.", dns.TypeA)
	m.SetEdns0(1232, true)
	p := pack(b, m)
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if _, err := parseQuery(p); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzServe feeds arbitrary packets to the handler, as UDP or TCP queries
// from an allowed client: it must not panic, and whatever it answers must
// be a DNS response with the query's ID that fits the transport.
func FuzzServe(f *testing.F) {
	for _, tc := range parseCases(f) {
		f.Add(tc.pkt, false)
	}
	for _, m := range []*dns.Msg{
		newQuery("box1.cb.home.arpa.", dns.TypeA),
		newQuery("_http._tcp.cb.home.arpa.", dns.TypePTR),
		newQuery("www.example.", dns.TypeA),
		newQuery("nx.example.", dns.TypeA),
	} {
		f.Add(pack(f, m), false)
		m.SetEdns0(4096, true)
		f.Add(pack(f, m), true)
	}
	s := hotServer(f)
	f.Fuzz(func(t *testing.T, p []byte, tcp bool) {
		r := request{p: append([]byte(nil), p...), src: netip.MustParseAddr("192.168.7.7"), tcp: tcp}
		sc := newScratch(512)
		resp, up := s.respond(t.Context(), s.shared, sc, &r, s.nanotime())
		if up {
			resp = s.respondUpstream(t.Context(), s.shared, sc, &r)
		}
		if resp == nil {
			return
		}
		var m dns.Msg
		if err := m.Unpack(resp); err != nil {
			t.Fatalf("response does not unpack: %v\nquery %x\nresponse %x", err, p, resp)
		}
		if !m.Response || len(p) < 2 || m.Id != uint16(p[0])<<8|uint16(p[1]) {
			t.Fatalf("response with QR %v ID %d for query %x", m.Response, m.Id, p)
		}
		limit := maxMsgSize
		if !tcp {
			limit = DefaultMaxUDPSize
			if q, err := parseQuery(r.p); err == nil && !q.edns {
				limit = minUDPSize
			}
		}
		if len(resp) > limit {
			t.Fatalf("%d-byte response over a %d-byte limit", len(resp), limit)
		}
	})
}
