package dnsproxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/miekg/dns"
)

// The tests in this file run the server on a chanPC with a fakeUpstream
// inside a synctest bubble: time.Sleep moves the fake clock, so TTLs,
// serve-stale and prefetching are tested without waiting.

const client = "192.168.1.10:40000"

// ttlOf returns the TTL of the first answer record, or of the SOA in the
// authority section.
func ttlOf(t *testing.T, r *dns.Msg) uint32 {
	t.Helper()
	if len(r.Answer) > 0 {
		return r.Answer[0].Header().Ttl
	}
	if len(r.Ns) > 0 {
		return r.Ns[0].Header().Ttl
	}
	t.Fatalf("no records in %v", r)
	return 0
}

func TestCacheHonoursTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{handler: answerA("192.0.2.1", 60)}
		s, pc := startBubble(t, Config{Upstreams: []string{"127.0.0.1:5301"}, Dial: up.dial})

		r := pc.exchange(t, client, newQuery("www.example.", dns.TypeA))
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || ttlOf(t, r) != 60 {
			t.Fatalf("first answer %v", r)
		}
		if !r.RecursionAvailable || r.Authoritative {
			t.Errorf("RA %v AA %v, want RA and not AA", r.RecursionAvailable, r.Authoritative)
		}
		time.Sleep(25 * time.Second)
		// Another client, another case: the same cache entry.
		r = pc.exchange(t, "192.168.1.11:1234", newQuery("WWW.Example.", dns.TypeA))
		if got := ttlOf(t, r); got != 35 {
			t.Errorf("TTL after 25 s: %d, want 35", got)
		}
		if r.Question[0].Name != "WWW.Example." || r.Answer[0].Header().Name != "WWW.Example." {
			t.Errorf("question %q answer %q, want the client's case", r.Question[0].Name, r.Answer[0].Header().Name)
		}
		if n := up.count(); n != 1 {
			t.Errorf("%d upstream queries, want 1 (the second answer is a hit)", n)
		}
		time.Sleep(36 * time.Second)
		r = pc.exchange(t, client, newQuery("www.example.", dns.TypeA))
		if n := up.count(); n != 2 || ttlOf(t, r) != 60 {
			t.Errorf("after expiry: %d upstream queries and TTL %d, want 2 and 60", n, ttlOf(t, r))
		}
		m := s.Metrics()
		if m.CacheHits != 1 || m.CacheMisses != 2 || m.UpstreamQueries != 2 || m.CacheEntries != 1 {
			t.Errorf("metrics %+v", m)
		}
	})
}

func TestCacheKeyedByTypeAndDO(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{handler: answerA("192.0.2.1", 300)}
		_, pc := startBubble(t, Config{Upstreams: []string{"127.0.0.1:5301"}, Dial: up.dial})
		do := newQuery("www.example.", dns.TypeA)
		do.SetEdns0(1232, true)
		for i, m := range []*dns.Msg{newQuery("www.example.", dns.TypeA), newQuery("www.example.", dns.TypeAAAA), do} {
			pc.exchange(t, client, m)
			if n := up.count(); n != i+1 {
				t.Fatalf("query %d: %d upstream queries, want %d", i, n, i+1)
			}
		}
		r := pc.exchange(t, client, do)
		if opt := r.IsEdns0(); opt == nil || !opt.Do() {
			t.Errorf("answer to a DO query has OPT %v, want DO echoed (RFC 3225 §3)", opt)
		}
		if n := up.count(); n != 3 {
			t.Errorf("%d upstream queries, want 3", n)
		}
	})
}

func TestNegativeCaching(t *testing.T) {
	for _, tc := range []struct {
		name      string
		handler   func(q *dns.Msg) *dns.Msg
		qname     string
		wantRcode int
		wantTTL   uint32 // 0: not cached
	}{
		{name: "NXDOMAIN uses SOA minimum", handler: answerA("192.0.2.1", 60), qname: "nx.example.", wantRcode: dns.RcodeNameError, wantTTL: 120},
		{name: "NODATA uses SOA minimum", handler: answerA("192.0.2.1", 60), qname: "www.example.", wantTTL: 120},
		{name: "SOA TTL below minimum", handler: func(q *dns.Msg) *dns.Msg {
			r := new(dns.Msg).SetRcode(q, dns.RcodeNameError)
			r.Ns = []dns.RR{soaRR("example.", 30, 600)}
			return r
		}, qname: "nx.example.", wantRcode: dns.RcodeNameError, wantTTL: 30},
		{name: "NXDOMAIN without SOA is not cached", handler: func(q *dns.Msg) *dns.Msg {
			return new(dns.Msg).SetRcode(q, dns.RcodeNameError)
		}, qname: "nx.example.", wantRcode: dns.RcodeNameError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				up := &fakeUpstream{handler: tc.handler}
				_, pc := startBubble(t, Config{Upstreams: []string{"127.0.0.1:5301"}, Dial: up.dial})
				qtype := dns.TypeA
				if tc.qname == "www.example." {
					qtype = dns.TypeMX
				}
				r := pc.exchange(t, client, newQuery(tc.qname, qtype))
				if r.Rcode != tc.wantRcode || len(r.Answer) != 0 {
					t.Fatalf("answer %v, want rcode %s and no records", r, dns.RcodeToString[tc.wantRcode])
				}
				if tc.wantTTL > 0 && ttlOf(t, r) != tc.wantTTL {
					t.Errorf("SOA TTL %d, want the negative TTL %d (RFC 2308 §3)", ttlOf(t, r), tc.wantTTL)
				}
				time.Sleep(time.Duration(max(tc.wantTTL, 1)-1) * time.Second)
				pc.exchange(t, client, newQuery(tc.qname, qtype))
				wantQueries := 1
				if tc.wantTTL == 0 {
					wantQueries = 2
				}
				if n := up.count(); n != wantQueries {
					t.Errorf("%d upstream queries within the TTL, want %d", n, wantQueries)
				}
				time.Sleep(2 * time.Second)
				pc.exchange(t, client, newQuery(tc.qname, qtype))
				if n := up.count(); n != wantQueries+1 {
					t.Errorf("%d upstream queries after the TTL, want %d", n, wantQueries+1)
				}
			})
		})
	}
}

func TestServeStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{handler: answerA("192.0.2.1", 60)}
		s, pc := startBubble(t, Config{Upstreams: []string{"127.0.0.1:5301"}, Dial: up.dial, StaleFor: time.Hour})
		pc.exchange(t, client, newQuery("www.example.", dns.TypeA))
		up.setDown(true)

		time.Sleep(61 * time.Second)
		r := pc.exchange(t, client, newQuery("www.example.", dns.TypeA))
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || ttlOf(t, r) != 30 {
			t.Fatalf("expired entry with the upstream down: %v, want the stale answer with TTL 30", r)
		}
		// Within the recheck time stale answers come without asking again.
		dials := up.dialCount()
		time.Sleep(10 * time.Second)
		if r := pc.exchange(t, client, newQuery("www.example.", dns.TypeA)); ttlOf(t, r) != 30 {
			t.Errorf("second stale answer TTL %d", ttlOf(t, r))
		}
		if up.dialCount() != dials {
			t.Errorf("%d upstream attempts during the recheck time, want none", up.dialCount()-dials)
		}
		if r := pc.exchange(t, client, newQuery("other.example.", dns.TypeA)); r.Rcode != dns.RcodeServerFailure {
			t.Errorf("uncached name with the upstream down: %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
		}
		if m := s.Metrics(); m.StaleServed != 2 || m.ServFail != 1 {
			t.Errorf("StaleServed %d ServFail %d, want 2 and 1", m.StaleServed, m.ServFail)
		}

		// The upstream comes back: after the recheck time the answer is fresh.
		up.setDown(false)
		time.Sleep(31 * time.Second)
		if r := pc.exchange(t, client, newQuery("www.example.", dns.TypeA)); ttlOf(t, r) != 60 {
			t.Errorf("after the upstream came back: TTL %d, want a fresh 60", ttlOf(t, r))
		}

		// Past StaleFor nothing stale is served.
		up.setDown(true)
		time.Sleep(time.Hour + 2*time.Minute)
		if r := pc.exchange(t, client, newQuery("www.example.", dns.TypeA)); r.Rcode != dns.RcodeServerFailure {
			t.Errorf("past StaleFor: %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
		}
	})
}

func TestPrefetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{handler: answerA("192.0.2.1", 100)}
		s, pc := startBubble(t, Config{Upstreams: []string{"127.0.0.1:5301"}, Dial: up.dial, PrefetchHits: 3})
		pc.exchange(t, client, newQuery("popular.example.", dns.TypeA))
		pc.exchange(t, client, newQuery("rare.example.", dns.TypeA))
		for range 3 {
			pc.exchange(t, client, newQuery("popular.example.", dns.TypeA))
		}
		time.Sleep(85 * time.Second)
		// Hits before the last tenth of the TTL do not prefetch.
		pc.exchange(t, client, newQuery("popular.example.", dns.TypeA))
		synctest.Wait()
		if n := up.count(); n != 2 {
			t.Fatalf("%d upstream queries at 85 s, want 2", n)
		}
		time.Sleep(6 * time.Second)
		pc.exchange(t, client, newQuery("popular.example.", dns.TypeA))
		pc.exchange(t, client, newQuery("rare.example.", dns.TypeA))
		synctest.Wait() // the prefetch runs in the background
		if n := up.count(); n != 3 {
			t.Fatalf("%d upstream queries after a hit at 91 s, want 3 (one prefetch)", n)
		}
		time.Sleep(10 * time.Second)
		// popular was refreshed at 91 s: still a hit with 90 s left; rare,
		// hit only twice, expired.
		if r := pc.exchange(t, client, newQuery("popular.example.", dns.TypeA)); ttlOf(t, r) != 90 {
			t.Errorf("prefetched entry TTL %d at 101 s, want 90", ttlOf(t, r))
		}
		pc.exchange(t, client, newQuery("rare.example.", dns.TypeA))
		if n := up.count(); n != 4 {
			t.Errorf("%d upstream queries, want 4", n)
		}
		if m := s.Metrics(); m.Prefetches != 1 {
			t.Errorf("Prefetches %d, want 1", m.Prefetches)
		}
	})
}

func TestCoalescing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		inner := answerA("192.0.2.1", 60)
		up := &fakeUpstream{handler: func(q *dns.Msg) *dns.Msg { <-release; return inner(q) }}
		s, pc := startBubble(t, Config{Upstreams: []string{"127.0.0.1:5301"}, Dial: up.dial})
		const n = 50
		for i := range n {
			m := newQuery("burst.example.", dns.TypeA)
			m.Id = uint16(i + 1)
			pc.send(t, fmt.Sprintf("192.168.1.%d:5000", 20+i), m)
		}
		synctest.Wait()
		if got := up.count(); got != 1 {
			t.Fatalf("%d upstream queries for a burst of %d, want 1", got, n)
		}
		close(release)
		ids := map[uint16]bool{}
		for range n {
			r := pc.recv(t)
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Fatalf("answer %v", r)
			}
			ids[r.Id] = true
		}
		if len(ids) != n {
			t.Errorf("%d distinct IDs answered, want %d", len(ids), n)
		}
		if m := s.Metrics(); m.Coalesced != n-1 {
			t.Errorf("Coalesced %d, want %d", m.Coalesced, n-1)
		}
	})
}

func TestFailover(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first func(q *dns.Msg) *dns.Msg
		down  bool
	}{
		{name: "first refuses connections", down: true},
		{name: "first does not answer", first: func(*dns.Msg) *dns.Msg { return nil }},
		{name: "first answers SERVFAIL", first: func(q *dns.Msg) *dns.Msg { return new(dns.Msg).SetRcode(q, dns.RcodeServerFailure) }},
		{name: "first answers REFUSED", first: func(q *dns.Msg) *dns.Msg { return new(dns.Msg).SetRcode(q, dns.RcodeRefused) }},
		{name: "first answers a different question", first: func(q *dns.Msg) *dns.Msg {
			r := answerA("192.0.2.66", 60)(q)
			r.Question[0].Name = "evil.example."
			return r
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				first := &fakeUpstream{handler: tc.first, down: tc.down}
				second := &fakeUpstream{handler: answerA("192.0.2.2", 60)}
				dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
					if addr == "127.0.0.1:5301" {
						return first.dial(ctx, network, addr)
					}
					return second.dial(ctx, network, addr)
				}
				start := time.Now()
				s, pc := startBubble(t, Config{Upstreams: []string{"127.0.0.1:5301", "127.0.0.1:5302"}, Dial: dial, UpstreamTimeout: 500 * time.Millisecond})
				r := pc.exchange(t, client, newQuery("a.example.", dns.TypeA))
				if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.2" {
					t.Fatalf("answer %v, want the second upstream's", r)
				}
				if d := time.Since(start); d > time.Second {
					t.Errorf("failover took %v", d)
				}
				// The second upstream answered last: it is asked first now.
				dials := first.dialCount()
				pc.exchange(t, client, newQuery("b.example.", dns.TypeA))
				if first.dialCount() != dials || second.count() != 2 {
					t.Errorf("second query: %d new dials to the first, %d queries to the second; want 0 and 2", first.dialCount()-dials, second.count())
				}
				if m := s.Metrics(); m.UpstreamErrors != 1 || m.UpstreamQueries != 3 {
					t.Errorf("UpstreamErrors %d UpstreamQueries %d, want 1 and 3", m.UpstreamErrors, m.UpstreamQueries)
				}
			})
		})
	}
}

func TestTruncation(t *testing.T) {
	big := func(q *dns.Msg) *dns.Msg {
		r := new(dns.Msg).SetReply(q)
		for i := range 100 {
			r.Answer = append(r.Answer, mustRR(fmt.Sprintf("%s 60 IN A 192.0.2.%d", q.Question[0].Name, i)))
		}
		return r
	}
	for _, tc := range []struct {
		name   string
		edns   uint16
		tcp    bool
		limit  int
		wantTC bool
	}{
		{name: "no EDNS: 512 bytes", limit: 512, wantTC: true},
		{name: "EDNS 1000", edns: 1000, limit: 1000, wantTC: true},
		{name: "EDNS 4096 capped at MaxUDPSize", edns: 4096, limit: DefaultMaxUDPSize, wantTC: true},
		{name: "EDNS below 512 means 512", edns: 100, limit: 512, wantTC: true},
		{name: "TCP gets it all", tcp: true, limit: maxMsgSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				up := &fakeUpstream{handler: big}
				s, pc := startBubble(t, Config{Upstreams: []string{"127.0.0.1:5301"}, Dial: up.dial})
				m := newQuery("big.example.", dns.TypeA)
				if tc.edns > 0 {
					m.SetEdns0(tc.edns, false)
				}
				var b []byte
				if tc.tcp {
					r := request{p: pack(t, m), src: netip.MustParseAddr("127.0.0.1"), tcp: true}
					sc := newScratch(512)
					if _, up := s.respond(t.Context(), s.shared, sc, &r, s.nanotime()); !up {
						t.Fatal("not a cache miss")
					}
					b = s.respondUpstream(t.Context(), s.shared, sc, &r)
				} else {
					pc.send(t, client, m)
					b = (<-pc.out).b
				}
				if len(b) > tc.limit {
					t.Errorf("%d-byte answer, limit %d", len(b), tc.limit)
				}
				r := new(dns.Msg)
				if err := r.Unpack(b); err != nil {
					t.Fatal(err)
				}
				if r.Truncated != tc.wantTC || len(r.Answer) == 0 || tc.wantTC == (len(r.Answer) == 100) {
					t.Errorf("TC %v with %d answers, want TC %v", r.Truncated, len(r.Answer), tc.wantTC)
				}
				if (r.IsEdns0() != nil) != (tc.edns > 0) {
					t.Errorf("OPT in answer: %v, want %v", r.IsEdns0() != nil, tc.edns > 0)
				}
				want := uint64(0)
				if tc.wantTC {
					want = 1
				}
				if m := s.Metrics(); m.Truncated != want {
					t.Errorf("Truncated %d, want %d", m.Truncated, want)
				}
			})
		})
	}
}

func TestAccessAndRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := &fakeUpstream{handler: answerA("192.0.2.1", 60)}
		s, pc := startBubble(t, Config{
			Upstreams:   []string{"127.0.0.1:5301"},
			Dial:        up.dial,
			Zone:        testZone(),
			AllowedNets: []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("127.0.0.0/8")},
			RateLimit:   10,
			RateBurst:   5,
		})
		for _, tc := range []struct {
			name, src, qname string
			want             int
		}{
			{"allowed, zone", "192.168.1.7:999", "box1.cb.home.arpa.", dns.RcodeSuccess},
			{"allowed, forwarded", "192.168.1.7:999", "www.example.", dns.RcodeSuccess},
			{"outside, zone", "203.0.113.9:999", "box1.cb.home.arpa.", dns.RcodeRefused},
			{"outside, forwarded", "203.0.113.9:999", "www.example.", dns.RcodeRefused},
			{"other private net not listed", "10.0.0.1:999", "www.example.", dns.RcodeRefused},
		} {
			// No t.Run: it is not allowed inside a bubble.
			r := pc.exchange(t, tc.src, newQuery(tc.qname, dns.TypeA))
			if r.Rcode != tc.want {
				t.Errorf("%s: rcode %s, want %s", tc.name, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.want])
			}
			if r.Rcode == dns.RcodeRefused && (len(r.Answer) > 0 || r.RecursionAvailable) {
				t.Errorf("%s: refusal with answers or RA: %v", tc.name, r)
			}
		}
		if n := up.count(); n != 1 {
			t.Errorf("%d upstream queries, want 1: refused clients must not reach the upstream", n)
		}

		// 192.168.1.7 used 2 of its 5 tokens above.
		before := s.Metrics().RateLimited
		for i := range 5 {
			pc.send(t, "192.168.1.7:999", newQuery("box1.cb.home.arpa.", dns.TypeA))
			synctest.Wait()
			if i < 3 {
				pc.recv(t)
			} else {
				pc.noAnswer(t)
			}
		}
		if got := s.Metrics().RateLimited - before; got != 2 {
			t.Errorf("RateLimited grew by %d, want 2", got)
		}
		// Loopback is never limited.
		for range 20 {
			pc.exchange(t, "127.0.0.1:999", newQuery("box1.cb.home.arpa.", dns.TypeA))
		}
		// Tokens come back at RateLimit per second.
		time.Sleep(200 * time.Millisecond)
		pc.exchange(t, "192.168.1.7:999", newQuery("box1.cb.home.arpa.", dns.TypeA))
		pc.exchange(t, "192.168.1.7:999", newQuery("box1.cb.home.arpa.", dns.TypeA))
		pc.send(t, "192.168.1.7:999", newQuery("box1.cb.home.arpa.", dns.TypeA))
		synctest.Wait()
		pc.noAnswer(t)
	})
}

func TestLimiter(t *testing.T) {
	sec := int64(time.Second)
	for _, tc := range []struct {
		name  string
		steps []struct {
			at   int64
			addr string
			want bool
		}
	}{
		{name: "burst then refill", steps: []struct {
			at   int64
			addr string
			want bool
		}{{0, "10.0.0.1", true}, {0, "10.0.0.1", true}, {0, "10.0.0.1", false}, {sec / 2, "10.0.0.1", true}, {sec / 2, "10.0.0.1", false}, {10 * sec, "10.0.0.1", true}, {10 * sec, "10.0.0.1", true}, {10 * sec, "10.0.0.1", false}}},
		{name: "clients are separate", steps: []struct {
			at   int64
			addr string
			want bool
		}{{0, "10.0.0.1", true}, {0, "10.0.0.1", true}, {0, "10.0.0.1", false}, {0, "10.0.0.2", true}}},
		{name: "IPv6 shares a /64", steps: []struct {
			at   int64
			addr string
			want bool
		}{{0, "2001:db8::1", true}, {0, "2001:db8::2", true}, {0, "2001:db8::3", false}, {0, "2001:db8:0:1::1", true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter(2, 2)
			for i, st := range tc.steps {
				if got := l.allow(netip.MustParseAddr(st.addr), st.at); got != st.want {
					t.Errorf("step %d (%s at %v): allow %v, want %v", i, st.addr, time.Duration(st.at), got, st.want)
				}
			}
		})
	}
	t.Run("bounded memory", func(t *testing.T) {
		l := newLimiter(2, 2)
		for i := range 100000 {
			l.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 0)
		}
		n := 0
		for i := range l.shards {
			n += len(l.shards[i].m)
		}
		if n > limiterShards*limiterClients {
			t.Errorf("%d clients tracked, bound %d", n, limiterShards*limiterClients)
		}
	})
}

func TestBoundedPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		inner := answerA("192.0.2.1", 60)
		up := &fakeUpstream{handler: func(q *dns.Msg) *dns.Msg { <-release; return inner(q) }}
		s, pc := startBubble(t, Config{Upstreams: []string{"127.0.0.1:5301"}, Dial: up.dial, MaxPending: 3})
		for i := range 10 {
			pc.send(t, client, newQuery(fmt.Sprintf("n%d.example.", i), dns.TypeA))
		}
		synctest.Wait()
		if got := up.count(); got != 3 {
			t.Errorf("%d upstream queries in flight, want MaxPending 3", got)
		}
		if m := s.Metrics(); m.Dropped != 7 {
			t.Errorf("Dropped %d, want 7", m.Dropped)
		}
		close(release)
		for range 3 {
			pc.recv(t)
		}
		// The zone and cache hits do not need a slot.
		pc.exchange(t, client, newQuery("n0.example.", dns.TypeA))
	})
}

func TestMalformedDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, pc := startBubble(t, Config{Zone: testZone()})
		resp := pack(t, newQuery("box1.cb.home.arpa.", dns.TypeA))
		resp[2] |= 0x80 // QR: a response must never be answered
		for _, b := range [][]byte{nil, {1, 2, 3}, resp, []byte("GET / HTTP/1.1\r\n\r\n")} {
			pc.sendRaw(client, b)
		}
		synctest.Wait()
		pc.noAnswer(t)
		if m := s.Metrics(); m.Malformed != 4 {
			t.Errorf("Malformed %d, want 4", m.Malformed)
		}
		// Still serving.
		if r := pc.exchange(t, client, newQuery("box1.cb.home.arpa.", dns.TypeA)); len(r.Answer) != 1 {
			t.Errorf("answer after garbage: %v", r)
		}
	})
}

func TestUnusualQueries(t *testing.T) {
	notify := newQuery("cb.home.arpa.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	two := newQuery("box1.cb.home.arpa.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	badvers := newQuery("box1.cb.home.arpa.", dns.TypeA)
	badvers.SetEdns0(1232, false)
	badvers.IsEdns0().SetVersion(1)
	plain := pack(t, newQuery("box1.cb.home.arpa.", dns.TypeA))
	// The question name as a compression pointer to a copy of the name
	// after the question: legal, unusual.
	ptr := append([]byte(nil), plain[:headerLen]...)
	ptr = append(ptr, 0xc0, headerLen+6, 0, 1, 0, 1)
	ptr = append(ptr, plain[headerLen:len(plain)-4]...)
	for _, tc := range []struct {
		name      string
		pkt       []byte
		wantRcode int
		wantAns   int
		wantOPT   bool
	}{
		{name: "NOTIFY is not implemented", pkt: pack(t, notify), wantRcode: dns.RcodeNotImplemented},
		{name: "two questions", pkt: pack(t, two), wantRcode: dns.RcodeFormatError},
		{name: "EDNS version 1", pkt: pack(t, badvers), wantRcode: dns.RcodeBadVers, wantOPT: true},
		{name: "trailing garbage", pkt: append(append([]byte(nil), plain...), 1, 2, 3), wantAns: 1},
		{name: "compressed question", pkt: ptr, wantAns: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				_, pc := startBubble(t, Config{Zone: testZone()})
				pc.sendRaw(client, tc.pkt)
				r := pc.recv(t)
				if r.Rcode != tc.wantRcode || len(r.Answer) != tc.wantAns {
					t.Errorf("rcode %s with %d answers, want %s with %d", dns.RcodeToString[r.Rcode], len(r.Answer), dns.RcodeToString[tc.wantRcode], tc.wantAns)
				}
				if (r.IsEdns0() != nil) != tc.wantOPT {
					t.Errorf("OPT %v, want %v", r.IsEdns0(), tc.wantOPT)
				}
			})
		})
	}
}

func TestPrefetchBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		inner := answerA("192.0.2.1", 100)
		var served atomic.Int32
		up := &fakeUpstream{}
		up.handler = func(q *dns.Msg) *dns.Msg {
			if served.Add(1) > 2 { // the prefetches hang until released
				<-release
			}
			return inner(q)
		}
		s, pc := startBubble(t, Config{Upstreams: []string{"127.0.0.1:5301"}, Dial: up.dial, PrefetchHits: 1, MaxPrefetches: 1})
		for _, name := range []string{"p1.example.", "p2.example."} {
			pc.exchange(t, client, newQuery(name, dns.TypeA))
		}
		time.Sleep(95 * time.Second)
		for _, name := range []string{"p1.example.", "p2.example.", "p2.example."} {
			pc.exchange(t, client, newQuery(name, dns.TypeA)) // hits, served at once
		}
		synctest.Wait()
		if n := up.count(); n != 3 {
			t.Errorf("%d upstream queries, want 3: two misses and one prefetch (MaxPrefetches 1)", n)
		}
		close(release)
		synctest.Wait()
		// p2's prefetch was skipped, not lost: its next hit starts it.
		pc.exchange(t, client, newQuery("p2.example.", dns.TypeA))
		synctest.Wait()
		if n, m := up.count(), s.Metrics(); n != 4 || m.Prefetches != 2 {
			t.Errorf("%d upstream queries and %d prefetches, want 4 and 2", n, m.Prefetches)
		}
	})
}
