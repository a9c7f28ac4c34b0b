package mdns

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

var avahiHost = netip.MustParseAddrPort("192.0.2.2:5353")

func rrs(t testing.TB, lines ...string) []dns.RR {
	t.Helper()
	var out []dns.RR
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		out = append(out, rr)
	}
	return out
}

// respond feeds c a response from avahiHost with answers and additional
// records, at now.
func respond(t testing.TB, c *core, now time.Time, answers, extra []dns.RR) {
	t.Helper()
	m := &dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Authoritative: true}, Answer: answers, Extra: extra}
	if out := c.handle(now, packed(t, m), avahiHost, true, fam4); len(out) != 0 {
		t.Fatalf("a response was answered: %v", summarize(out))
	}
}

// flushed sets the cache-flush bit on rrs.
func flushed(rrs []dns.RR) []dns.RR {
	for _, rr := range rrs {
		rr.Header().Class |= flushBit
	}
	return rrs
}

// questions returns the questions of out except the browse queries.
func questions(out []outgoing) []string {
	var qs []string
	for _, o := range out {
		for _, q := range o.msg.Question {
			if q.Qtype == dns.TypePTR {
				continue
			}
			qs = append(qs, q.Name+" "+dns.TypeToString[q.Qtype])
		}
	}
	slices.Sort(qs)
	return qs
}

func TestBrowse(t *testing.T) {
	c, m := newTestCore(t, "_ipp._tcp", "_http._tcp")
	now := t0.Add(time.Minute)
	ptr := rrs(t, `_ipp._tcp.local. 4500 IN PTR Office\ Printer._ipp._tcp.local.`)
	srvTXT := flushed(rrs(t, `Office\ Printer._ipp._tcp.local. 120 IN SRV 0 0 631 lanprinter.local.`,
		`Office\ Printer._ipp._tcp.local. 4500 IN TXT "rp=ipp/print" "note=2\195\168me"`))
	addr := flushed(rrs(t, "lanprinter.local. 120 IN A 192.0.2.77", "lanprinter.local. 120 IN AAAA 2001:db8::77"))

	// The PTR alone: the browser asks for SRV and TXT, then for addresses.
	respond(t, c, now, ptr, nil)
	if got, want := questions(c.tick(now)), []string{`Office\ Printer._ipp._tcp.local. SRV`, `Office\ Printer._ipp._tcp.local. TXT`}; !slices.Equal(got, want) {
		t.Errorf("resolve questions %v, want %v", got, want)
	}
	respond(t, c, now, srvTXT, nil)
	if got, want := questions(c.tick(now)), []string{"lanprinter.local. A", "lanprinter.local. AAAA"}; !slices.Equal(got, want) {
		t.Errorf("address questions %v, want %v", got, want)
	}
	if c.foundChanged || len(c.found) != 0 {
		t.Fatalf("found before the addresses: %v", c.found)
	}
	respond(t, c, now, addr, nil)
	c.tick(now)
	want := []Found{{Instance: "Office Printer", Type: "_ipp._tcp", Host: "lanprinter.local.",
		Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.77"), netip.MustParseAddr("2001:db8::77")},
		Port:  631, TXT: []string{"rp=ipp/print", "note=2ème"}, Expires: now.Add(120 * time.Second)}}
	if diff := cmp.Diff(want, c.found, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" || !c.foundChanged {
		t.Fatalf("found (changed %v) (-want +got):\n%s", c.foundChanged, diff)
	}
	c.foundChanged = false

	// The next browse query carries the PTR as a known answer.
	var known []dns.RR
	for at := now; at.Before(now.Add(2 * time.Hour)); at = at.Add(time.Second) {
		for _, o := range c.tick(at) {
			known = append(known, o.msg.Answer...)
		}
		if len(known) > 0 {
			break
		}
	}
	if len(known) == 0 || known[0].(*dns.PTR).Ptr != ptr[0].(*dns.PTR).Ptr {
		t.Errorf("no known answer in the browse queries: %v", known)
	}

	// At 80 % of the SRV's and addresses' TTL, the browser asks again.
	got := questions(c.tick(now.Add(97 * time.Second)))
	for _, w := range []string{`Office\ Printer._ipp._tcp.local. SRV`, "lanprinter.local. A", "lanprinter.local. AAAA"} {
		if !slices.Contains(got, w) {
			t.Errorf("refresh questions %v lack %s", got, w)
		}
	}

	// A goodbye for the PTR: gone one second later.
	bye := rrs(t, `_ipp._tcp.local. 0 IN PTR Office\ Printer._ipp._tcp.local.`)
	respond(t, c, now.Add(100*time.Second), bye, nil)
	c.tick(now.Add(100*time.Second + 500*time.Millisecond))
	if len(c.found) != 1 {
		t.Fatalf("found gone before a second passed")
	}
	c.tick(now.Add(101*time.Second + 100*time.Millisecond))
	if len(c.found) != 0 || !c.foundChanged {
		t.Errorf("found after the goodbye: %v", c.found)
	}
	if m.malformed.Load() != 0 {
		t.Errorf("malformed %d", m.malformed.Load())
	}
}

func TestBrowseExpiryAndFlush(t *testing.T) {
	c, _ := newTestCore(t, "_http._tcp")
	now := t0.Add(time.Minute)
	all := func(port int, ip string) []dns.RR {
		return append(rrs(t, `_http._tcp.local. 4500 IN PTR nas._http._tcp.local.`),
			flushed(rrs(t, fmt.Sprintf("nas._http._tcp.local. 120 IN SRV 0 0 %d nas.local.", port),
				`nas._http._tcp.local. 4500 IN TXT ""`, "nas.local. 120 IN A "+ip))...)
	}
	respond(t, c, now, all(80, "192.0.2.8"), nil)
	c.tick(now)
	if len(c.found) != 1 || c.found[0].Port != 80 || c.found[0].TXT != nil {
		t.Fatalf("found %v", c.found)
	}
	// Two seconds later the service moves: the cache-flush bit replaces
	// the old SRV and address one second later.
	respond(t, c, now.Add(2*time.Second), all(8080, "192.0.2.9"), nil)
	c.tick(now.Add(3100 * time.Millisecond))
	want := []netip.Addr{netip.MustParseAddr("192.0.2.9")}
	if len(c.found) != 1 || c.found[0].Port != 8080 || !slices.Equal(c.found[0].Addrs, want) {
		t.Fatalf("after the flush: %v", c.found)
	}
	// Nobody answers the refreshes: the SRV expires with its TTL.
	c.tick(now.Add(2*time.Second + 121*time.Second))
	if len(c.found) != 0 {
		t.Errorf("found after the TTL: %v", c.found)
	}
}

func TestBrowseIgnoresOwnAndBounds(t *testing.T) {
	c, m := newTestCore(t, "_http._tcp", "_ipp._tcp")
	now := t0.Add(time.Minute)
	// Another box on the LAN advertising the same community service as
	// this responder: not found (it would loop back into the catalog).
	respond(t, c, now, rrs(t, `_ipp._tcp.local. 4500 IN PTR Big\ Printer._ipp._tcp.local.`),
		rrs(t, `Big\ Printer._ipp._tcp.local. 120 IN SRV 0 0 631 box2-cb.local.`, "box2-cb.local. 120 IN A 198.51.100.7"))
	// Records of types nobody browses are not kept.
	respond(t, c, now, rrs(t, "_ssh._tcp.local. 4500 IN PTR x._ssh._tcp.local.", "other.local. 120 IN A 192.0.2.3"), nil)
	c.tick(now)
	if len(c.found) != 0 {
		t.Errorf("found %v", c.found)
	}
	// The cache holds at most 100 records (newTestCore's bound).
	for i := range 150 {
		respond(t, c, now, rrs(t, fmt.Sprintf("_http._tcp.local. 4500 IN PTR s%d._http._tcp.local.", i)), nil)
	}
	if c.cache.n != 100 || m.cacheFull.Load() == 0 {
		t.Errorf("cache %d records, %d dropped", c.cache.n, m.cacheFull.Load())
	}
}
