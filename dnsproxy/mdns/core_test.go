package mdns

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

var (
	t0       = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	querier  = netip.MustParseAddrPort("192.0.2.50:5353")
	legacyQ  = netip.MustParseAddrPort("192.0.2.50:40000")
	box1Addr = netip.MustParseAddr("192.0.2.1")
)

func testServices() []Service {
	return []Service{
		{Instance: "Web", Type: "_http._tcp", Port: 80, TXT: []string{"path=/"}},
		{Instance: "Big Printer", Type: "_ipp._tcp", Host: "box2-cb", Port: 631, TXT: []string{"rp=ipp/print"},
			Addrs: []netip.Addr{netip.MustParseAddr("198.51.100.7")}},
	}
}

// newTestCore returns a core for box1.local with testServices, started at
// t0 with its probes and announcements already sent.
func newTestCore(t *testing.T, browse ...string) (*core, *counters) {
	t.Helper()
	m := &counters{}
	c := newCore(slog.New(slog.DiscardHandler), "box1.local.", browse, 100, fam4, m)
	z, errs := buildZone("box1.local.", []netip.Addr{box1Addr}, testServices())
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	c.start(t0, z)
	for at := time.Duration(0); at < 3*time.Second; at += tickEvery {
		c.tick(t0.Add(at))
	}
	if len(c.tasks) != 0 {
		t.Fatalf("tasks left after start: %v", c.tasks)
	}
	c.lastMcast = map[string]time.Time{} // forget the announcements
	*m = counters{}
	return c, m
}

// summary is what a test compares of an outgoing message.
type summary struct {
	To        string
	ID        uint16
	TC        bool
	Questions []string
	Answers   []string
	Extra     []string
}

func summarize(out []outgoing) []summary {
	var s []summary
	for _, o := range out {
		x := summary{To: "multicast", ID: o.msg.Id, TC: o.msg.Truncated}
		if o.to.IsValid() {
			x.To = o.to.String()
		}
		for _, q := range o.msg.Question {
			x.Questions = append(x.Questions, q.String())
		}
		for _, rr := range o.msg.Answer {
			x.Answers = append(x.Answers, strings.ReplaceAll(rr.String(), "\t", " "))
		}
		for _, rr := range o.msg.Extra {
			if rr.Header().Rrtype != dns.TypeOPT {
				x.Extra = append(x.Extra, strings.ReplaceAll(rr.String(), "\t", " "))
			}
		}
		s = append(s, x)
	}
	return s
}

func query(id uint16, qs ...dns.Question) *dns.Msg {
	return &dns.Msg{MsgHdr: dns.MsgHdr{Id: id}, Question: qs}
}

func q(name string, t uint16, qu bool) dns.Question {
	c := uint16(dns.ClassINET)
	if qu {
		c |= quBit
	}
	return dns.Question{Name: name, Qtype: t, Qclass: c}
}

func packed(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const (
	flushIN = "CLASS32769"
	ptrWeb  = "_http._tcp.local. 4500 IN PTR Web._http._tcp.local."
	srvWeb  = "Web._http._tcp.local. 120 " + flushIN + " SRV 0 0 80 box1.local."
	txtWeb  = "Web._http._tcp.local. 4500 " + flushIN + " TXT \"path=/\""
	aBox1   = "box1.local. 120 " + flushIN + " A 192.0.2.1"
)

func TestAnswers(t *testing.T) {
	knownPTR, _ := dns.NewRR(ptrWeb)
	stalePTR := dns.Copy(knownPTR)
	stalePTR.Header().Ttl = 1000
	withKnown := func(m *dns.Msg, rr dns.RR) *dns.Msg { m.Answer = append(m.Answer, rr); return m }
	edns := query(9, q("box1.local.", dns.TypeA, false))
	edns.SetEdns0(1200, false)
	tests := []struct {
		name string
		msg  *dns.Msg
		src  netip.AddrPort
		mc   bool // sent to the group
		want []summary
	}{
		{
			name: "QM browse gets multicast PTR with SRV TXT A",
			msg:  query(7, q("_http._tcp.local.", dns.TypePTR, false)), src: querier, mc: true,
			want: []summary{{To: "multicast", Answers: []string{ptrWeb}, Extra: []string{srvWeb, txtWeb, aBox1}}},
		},
		{
			name: "QU not multicast recently is multicast",
			msg:  query(7, q("box1.local.", dns.TypeA, true)), src: querier, mc: true,
			want: []summary{{To: "multicast", Answers: []string{aBox1}}},
		},
		{
			name: "direct unicast query is answered by unicast",
			msg:  query(7, q("box1.local.", dns.TypeA, false)), src: querier, mc: false,
			want: []summary{{To: querier.String(), ID: 7, Answers: []string{"box1.local. 120 IN A 192.0.2.1"}}},
		},
		{
			name: "legacy unicast: ID, question, TTL 10, no cache-flush",
			msg:  query(4242, q("Web._http._tcp.local.", dns.TypeSRV, false)), src: legacyQ, mc: true,
			want: []summary{{To: legacyQ.String(), ID: 4242,
				Questions: []string{";Web._http._tcp.local.\tIN\t SRV"},
				Answers:   []string{"Web._http._tcp.local. 10 IN SRV 0 0 80 box1.local."},
				Extra:     []string{"box1.local. 10 IN A 192.0.2.1"}}},
		},
		{
			name: "legacy unicast with EDNS",
			msg:  edns, src: legacyQ, mc: true,
			want: []summary{{To: legacyQ.String(), ID: 9,
				Questions: []string{";box1.local.\tIN\t A"},
				Answers:   []string{"box1.local. 10 IN A 192.0.2.1"}}},
		},
		{
			name: "known answer suppresses",
			msg:  withKnown(query(0, q("_http._tcp.local.", dns.TypePTR, false)), knownPTR), src: querier, mc: true,
		},
		{
			name: "known answer with less than half the TTL does not suppress",
			msg:  withKnown(query(0, q("_http._tcp.local.", dns.TypePTR, false)), stalePTR), src: querier, mc: true,
			want: []summary{{To: "multicast", Answers: []string{ptrWeb}, Extra: []string{srvWeb, txtWeb, aBox1}}},
		},
		{
			name: "service type enumeration",
			msg:  query(0, q(servicesName, dns.TypePTR, false)), src: querier, mc: true,
			want: []summary{{To: "multicast", Answers: []string{
				"_services._dns-sd._udp.local. 4500 IN PTR _http._tcp.local.",
				"_services._dns-sd._udp.local. 4500 IN PTR _ipp._tcp.local."}}},
		},
		{
			name: "remote service: SRV to its own host with its address",
			msg:  query(0, q(`Big\ Printer._ipp._tcp.local.`, dns.TypeSRV, false)), src: querier, mc: true,
			want: []summary{{To: "multicast",
				Answers: []string{`Big\ Printer._ipp._tcp.local. 120 ` + flushIN + " SRV 0 0 631 box2-cb.local."},
				Extra:   []string{"box2-cb.local. 120 " + flushIN + " A 198.51.100.7"}}},
		},
		{
			name: "case-insensitive names, ANY",
			msg:  query(0, q("BOX1.Local.", dns.TypeANY, false)), src: querier, mc: true,
			want: []summary{{To: "multicast", Answers: []string{aBox1}}},
		},
		{
			name: "reverse address",
			msg:  query(0, q("1.2.0.192.in-addr.arpa.", dns.TypePTR, false)), src: querier, mc: true,
			want: []summary{{To: "multicast", Answers: []string{"1.2.0.192.in-addr.arpa. 120 " + flushIN + " PTR box1.local."}}},
		},
		{
			name: "other names and classes are not answered",
			msg: query(0, q("box9.local.", dns.TypeA, false), q("_ssh._tcp.local.", dns.TypePTR, false),
				dns.Question{Name: "box1.local.", Qtype: dns.TypeA, Qclass: dns.ClassCHAOS}),
			src: querier, mc: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newTestCore(t)
			got := summarize(c.handle(t0.Add(time.Minute), packed(t, tt.msg), tt.src, tt.mc, fam4))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRateLimitAndQU(t *testing.T) {
	c, m := newTestCore(t)
	b := packed(t, query(0, q("box1.local.", dns.TypeA, false)))
	now := t0.Add(time.Minute)
	if got := len(c.handle(now, b, querier, true, fam4)); got != 1 {
		t.Fatalf("first query: %d messages, want 1", got)
	}
	if got := c.handle(now.Add(500*time.Millisecond), b, querier, true, fam4); len(got) != 0 {
		t.Fatalf("query 0.5 s later answered: %v", summarize(got))
	}
	if m.rateLimited.Load() != 1 {
		t.Errorf("rate limited %d, want 1", m.rateLimited.Load())
	}
	// A QU question for a record multicast less than TTL/4 ago: unicast.
	qu := packed(t, query(0, q("box1.local.", dns.TypeA, true)))
	got := summarize(c.handle(now.Add(700*time.Millisecond), qu, querier, true, fam4))
	want := []summary{{To: querier.String(), Answers: []string{"box1.local. 120 IN A 192.0.2.1"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("QU (-want +got):\n%s", diff)
	}
	if got := len(c.handle(now.Add(1100*time.Millisecond), b, querier, true, fam4)); got != 1 {
		t.Fatalf("query 1.1 s later: %d messages, want 1", got)
	}
}

func TestStartProbesAndAnnounces(t *testing.T) {
	m := &counters{}
	c := newCore(slog.New(slog.DiscardHandler), "box1.local.", nil, 100, fam4|fam6, m)
	z, _ := buildZone("box1.local.", []netip.Addr{box1Addr}, testServices()[:1])
	c.start(t0, z)
	var probes, announces int
	for at := time.Duration(0); at < 3*time.Second; at += 50 * time.Millisecond {
		for _, o := range c.tick(t0.Add(at)) {
			if o.to.IsValid() {
				t.Fatalf("unicast during start: %v", summarize([]outgoing{o}))
			}
			if o.msg.Response {
				announces++
				if len(o.msg.Answer) != 6 { // A, reverse PTR, services PTR, PTR, SRV, TXT
					t.Errorf("announcement has %d answers, want 6: %v", len(o.msg.Answer), summarize([]outgoing{o}))
				}
			} else {
				probes++
				if len(o.msg.Ns) != 4 { // the unique ones: A, reverse PTR, SRV, TXT
					t.Errorf("probe has %d authority records, want 4", len(o.msg.Ns))
				}
			}
		}
	}
	// Probes go on both families at once, announcements one message per family.
	if probes != 3 || announces != 4 {
		t.Errorf("%d probes, %d announcements; want 3 and 4 (2 per family)", probes, announces)
	}
}

func TestUpdateAndGoodbye(t *testing.T) {
	c, _ := newTestCore(t)
	now := t0.Add(time.Minute)
	svcs := testServices()
	svcs[0].Port = 8080 // changed
	z, _ := buildZone("box1.local.", []netip.Addr{box1Addr}, svcs[:1])
	got := summarize(c.update(now, z))
	want := []summary{
		{To: "multicast", Answers: []string{
			"Web._http._tcp.local. 0 IN SRV 0 0 80 box1.local.",
			"_services._dns-sd._udp.local. 0 IN PTR _ipp._tcp.local.",
			`_ipp._tcp.local. 0 IN PTR Big\ Printer._ipp._tcp.local.`,
			`Big\ Printer._ipp._tcp.local. 0 IN SRV 0 0 631 box2-cb.local.`,
			`Big\ Printer._ipp._tcp.local. 0 IN TXT "rp=ipp/print"`,
			"box2-cb.local. 0 IN A 198.51.100.7",
		}},
		{To: "multicast", Answers: []string{"Web._http._tcp.local. 120 " + flushIN + " SRV 0 0 8080 box1.local."},
			Extra: []string{"box1.local. 120 " + flushIN + " A 192.0.2.1"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("update (-want +got):\n%s", diff)
	}
	// The change is announced a second time one second later.
	got = summarize(c.tick(now.Add(announceWait)))
	if len(got) != 1 || len(got[0].Answers) != 1 || !strings.Contains(got[0].Answers[0], "8080") {
		t.Errorf("second announcement: %v", got)
	}
	var all []string
	for _, s := range summarize(c.stop()) {
		all = append(all, s.Answers...)
	}
	for _, a := range all {
		if !strings.Contains(a, ". 0 IN ") {
			t.Errorf("goodbye record %q without TTL 0 / with cache-flush", a)
		}
	}
	if len(all) != 6 { // A, reverse PTR, services PTR, PTR, SRV, TXT
		t.Errorf("stop: %d goodbyes, want 6: %v", len(all), all)
	}
}

func TestBadPackets(t *testing.T) {
	c, m := newTestCore(t)
	now := t0.Add(time.Minute)
	resp := &dns.Msg{MsgHdr: dns.MsgHdr{Response: true}}
	update := query(0, q("box1.local.", dns.TypeA, false))
	update.Opcode = dns.OpcodeUpdate
	for _, b := range [][]byte{nil, {1, 2, 3}, packed(t, query(0, q("box1.local.", dns.TypeA, false)))[:20], packed(t, update)} {
		if out := c.handle(now, b, querier, true, fam4); len(out) != 0 {
			t.Errorf("answered %x", b)
		}
	}
	c.handle(now, packed(t, resp), legacyQ, true, fam4)
	if m.malformed.Load() != 3 || m.ignored.Load() != 1 || m.badPort.Load() != 1 {
		t.Errorf("malformed %d ignored %d bad port %d, want 3 1 1", m.malformed.Load(), m.ignored.Load(), m.badPort.Load())
	}
}

func TestConflict(t *testing.T) {
	c, m := newTestCore(t)
	mine, _ := dns.NewRR("box1.local. 120 IN A 192.0.2.1")
	theirs, _ := dns.NewRR("box1.local. 120 IN A 192.0.2.99")
	shared, _ := dns.NewRR("_http._tcp.local. 4500 IN PTR Other._http._tcp.local.")
	for _, rr := range []dns.RR{mine, theirs, shared} {
		c.handle(t0, packed(t, &dns.Msg{MsgHdr: dns.MsgHdr{Response: true}, Answer: []dns.RR{rr}}), querier, true, fam4)
	}
	if m.conflicts.Load() != 1 {
		t.Errorf("conflicts %d, want 1", m.conflicts.Load())
	}
}

func TestSplitLargeAnnouncement(t *testing.T) {
	var svcs []Service
	for i := range 60 {
		svcs = append(svcs, Service{Instance: fmt.Sprintf("Service number %d with a long name", i), Type: "_http._tcp",
			Host: fmt.Sprintf("box%d-cb", i), Port: 80, TXT: []string{"path=/some/long/path/to/make/it/big"},
			Addrs: []netip.Addr{netip.MustParseAddr("198.51.100.1")}})
	}
	z, errs := buildZone("box1.local.", []netip.Addr{box1Addr}, svcs)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	c := newCore(slog.New(slog.DiscardHandler), "box1.local.", nil, 100, fam4, &counters{})
	c.zone = z
	out := c.announce(t0, nil)
	total := 0
	for _, o := range out {
		b := packed(t, o.msg)
		if len(b) > maxPacket {
			t.Errorf("message of %d bytes", len(b))
		}
		total += len(o.msg.Answer)
	}
	if total != len(z.records) || len(out) < 2 {
		t.Errorf("%d records in %d messages, want %d in several", total, len(out), len(z.records))
	}
}

func TestBuildZoneRejects(t *testing.T) {
	good := Service{Instance: "A", Type: "_http._tcp", Port: 1}
	tests := []struct {
		name string
		s    Service
	}{
		{"empty instance", Service{Type: "_http._tcp"}},
		{"long instance", Service{Instance: strings.Repeat("x", 64), Type: "_http._tcp"}},
		{"bad type", Service{Instance: "A", Type: "http"}},
		{"bad proto", Service{Instance: "A", Type: "_http._sctp"}},
		{"bad host", Service{Instance: "A", Type: "_http._tcp", Host: "a b", Addrs: []netip.Addr{box1Addr}}},
		{"host without addrs", Service{Instance: "A", Type: "_http._tcp", Host: "b"}},
		{"host is ours", Service{Instance: "A", Type: "_http._tcp", Host: "BOX1", Addrs: []netip.Addr{box1Addr}}},
		{"same name, other port", Service{Instance: "A", Type: "_http._tcp", Port: 2}},
		{"long TXT", Service{Instance: "A", Type: "_http._tcp", TXT: []string{strings.Repeat("x", 256)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := buildZone("box1.local.", nil, []Service{good, tt.s})
			if len(errs) != 1 {
				t.Errorf("errors %v, want one", errs)
			}
		})
	}
}

func TestNames(t *testing.T) {
	for _, raw := range []string{"Web", "Big Printer", "a.b", `back\slash`, "Ünïcode 日本", "quote\"'@;()", "tab\there"} {
		name := escapeLabel(raw) + "._http._tcp.local."
		buf := make([]byte, 512)
		n, err := dns.PackDomainName(name, buf, 0, nil, false)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		back, _, err := dns.UnpackDomainName(buf[:n], 0)
		if err != nil {
			t.Fatal(err)
		}
		if back != name {
			t.Errorf("%q: built %q, wire gives %q", raw, name, back)
		}
		label, rest := splitFirst(back)
		if unescape(label) != raw || rest != "_http._tcp.local." {
			t.Errorf("%q: split %q %q", raw, unescape(label), rest)
		}
	}
}
