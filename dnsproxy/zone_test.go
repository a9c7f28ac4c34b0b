package dnsproxy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// respondDirect answers m as if it came from src over UDP (or TCP), through
// the same functions the socket loops call.
func respondDirect(t testing.TB, s *Server, src string, m *dns.Msg, tcp bool) *dns.Msg {
	t.Helper()
	r := request{p: pack(t, m), src: netip.MustParseAddr(src), tcp: tcp}
	sc := newScratch(512)
	resp, up := s.respond(t.Context(), s.shared, sc, &r, s.nanotime())
	if up {
		resp = s.respondUpstream(t.Context(), s.shared, sc, &r)
	}
	if resp == nil {
		return nil
	}
	out := new(dns.Msg)
	if err := out.Unpack(resp); err != nil {
		t.Fatalf("response does not unpack: %v", err)
	}
	if out.Id != m.Id || !out.Response {
		t.Fatalf("response has ID %d (want %d), QR %v", out.Id, m.Id, out.Response)
	}
	return out
}

// rrStrings formats records as "name ttl class type rdata" with single
// spaces, sorted.
func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		out = append(out, strings.Join(strings.Fields(rr.String()), " "))
	}
	slices.Sort(out)
	return out
}

// firstLabel returns the raw bytes of the first label of a
// presentation-format name.
func firstLabel(t *testing.T, name string) string {
	t.Helper()
	w, err := wireName(name)
	if err != nil {
		t.Fatalf("packing %q: %v", name, err)
	}
	return string(w[1 : 1+int(w[0])])
}

func TestZoneAnswers(t *testing.T) {
	s, err := New(Config{Zone: testZone()})
	if err != nil {
		t.Fatal(err)
	}
	const z = "cb.home.arpa."
	soa := func(r *dns.Msg) []string {
		var out []string
		for _, rr := range r.Ns {
			if rr.Header().Rrtype == dns.TypeSOA {
				out = append(out, rr.Header().Name)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		qname     string
		qtype     uint16
		qclass    uint16
		wantRcode int
		wantAns   []string
		wantExtra []string
		wantSOA   bool
	}{
		{name: "A", qname: "box1." + z, qtype: dns.TypeA, wantAns: []string{"box1.cb.home.arpa. 60 IN A 10.1.0.1"}},
		{name: "AAAA", qname: "box1." + z, qtype: dns.TypeAAAA, wantAns: []string{"box1.cb.home.arpa. 60 IN AAAA fd00::1"}},
		{name: "case kept from the question", qname: "BoX1.CB.home.ARPA.", qtype: dns.TypeA, wantAns: []string{"BoX1.CB.home.ARPA. 60 IN A 10.1.0.1"}},
		{name: "two labels", qname: "v6only.lab." + z, qtype: dns.TypeAAAA, wantAns: []string{"v6only.lab.cb.home.arpa. 60 IN AAAA fd00::3"}},
		{name: "NODATA for a missing type", qname: "v6only.lab." + z, qtype: dns.TypeA, wantSOA: true},
		{name: "NODATA for an empty non-terminal", qname: "lab." + z, qtype: dns.TypeA, wantSOA: true},
		{name: "NODATA for _tcp", qname: "_tcp." + z, qtype: dns.TypePTR, wantSOA: true},
		{name: "NXDOMAIN", qname: "nope." + z, qtype: dns.TypeA, wantRcode: dns.RcodeNameError, wantSOA: true},
		{name: "NXDOMAIN below a host", qname: "x.box1." + z, qtype: dns.TypeA, wantRcode: dns.RcodeNameError, wantSOA: true},
		{name: "SOA", qname: z, qtype: dns.TypeSOA, wantAns: []string{fmt.Sprintf("cb.home.arpa. 60 IN SOA cb.home.arpa. nobody.invalid. %d 3600 1200 604800 60", s.zone.Load().serial)}},
		{name: "NS", qname: z, qtype: dns.TypeNS, wantAns: []string{"cb.home.arpa. 60 IN NS cb.home.arpa."}},
		{name: "browse domain", qname: "b._dns-sd._udp." + z, qtype: dns.TypePTR, wantAns: []string{"b._dns-sd._udp.cb.home.arpa. 60 IN PTR cb.home.arpa."}},
		{name: "legacy browse domain", qname: "lb._dns-sd._udp." + z, qtype: dns.TypePTR, wantAns: []string{"lb._dns-sd._udp.cb.home.arpa. 60 IN PTR cb.home.arpa."}},
		{name: "service types", qname: "_services._dns-sd._udp." + z, qtype: dns.TypePTR, wantAns: []string{
			"_services._dns-sd._udp.cb.home.arpa. 60 IN PTR _http._tcp.cb.home.arpa.",
			"_services._dns-sd._udp.cb.home.arpa. 60 IN PTR _rtsp._tcp.cb.home.arpa.",
		}},
		{name: "SRV with the target's address", qname: "Panel._http._tcp." + z, qtype: dns.TypeSRV,
			wantAns:   []string{"Panel._http._tcp.cb.home.arpa. 60 IN SRV 0 0 80 box1.cb.home.arpa."},
			wantExtra: []string{"box1.cb.home.arpa. 60 IN A 10.1.0.1", "box1.cb.home.arpa. 60 IN AAAA fd00::1"}},
		{name: "TXT", qname: "panel._HTTP._tcp." + z, qtype: dns.TypeTXT, wantAns: []string{`panel._HTTP._tcp.cb.home.arpa. 60 IN TXT "path=/"`}},
		{name: "empty TXT is one empty string", qname: `Kitchen\ Printer\ \(2\)\ \195\188._http._tcp.` + z, qtype: dns.TypeTXT,
			wantAns: []string{`Kitchen\ Printer\ \(2\)\ \195\188._http._tcp.cb.home.arpa. 60 IN TXT ""`}},
		{name: "instance with a dot", qname: `Radio\.Stream._rtsp._tcp.` + z, qtype: dns.TypeTXT,
			wantAns: []string{`Radio\.Stream._rtsp._tcp.cb.home.arpa. 60 IN TXT "a=1" "b=two words"`}},
		{name: "ANY gives every record", qname: "box1." + z, qtype: dns.TypeANY, wantAns: []string{
			"box1.cb.home.arpa. 60 IN A 10.1.0.1", "box1.cb.home.arpa. 60 IN AAAA fd00::1"}},
		{name: "other class refused", qname: "box1." + z, qtype: dns.TypeA, qclass: dns.ClassCHAOS, wantRcode: dns.RcodeRefused},
		{name: "zone transfer refused", qname: z, qtype: dns.TypeAXFR, wantRcode: dns.RcodeRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newQuery(tc.qname, tc.qtype)
			if tc.qclass != 0 {
				m.Question[0].Qclass = tc.qclass
			}
			r := respondDirect(t, s, "127.0.0.1", m, false)
			if r.Rcode != tc.wantRcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.wantRcode])
			}
			if tc.wantRcode != dns.RcodeRefused && !r.Authoritative {
				t.Error("AA not set on a zone answer")
			}
			if got := rrStrings(r.Answer); !equal(got, tc.wantAns) {
				t.Errorf("answer:\n got %q\nwant %q", got, tc.wantAns)
			}
			if got := rrStrings(r.Extra); tc.wantExtra != nil && !equal(got, tc.wantExtra) {
				t.Errorf("additional:\n got %q\nwant %q", got, tc.wantExtra)
			}
			if got := soa(r); tc.wantSOA != (len(got) == 1 && got[0] == z) {
				t.Errorf("SOA in authority: %q, want it: %v", got, tc.wantSOA)
			}
			if r.Question[0].Name != tc.qname {
				t.Errorf("question %q, want the client's %q", r.Question[0].Name, tc.qname)
			}
		})
	}
}

// TestZoneDNSSD browses the zone as a DNS-SD client does (RFC 6763 §4, §12).
func TestZoneDNSSD(t *testing.T) {
	s, err := New(Config{Zone: testZone()})
	if err != nil {
		t.Fatal(err)
	}
	r := respondDirect(t, s, "192.168.1.5", newQuery("_http._tcp.cb.home.arpa.", dns.TypePTR), false)
	var instances []string
	for _, rr := range r.Answer {
		instances = append(instances, firstLabel(t, rr.(*dns.PTR).Ptr))
	}
	slices.Sort(instances)
	if want := []string{"Kitchen Printer (2) ü", "Panel"}; !equal(instances, want) {
		t.Errorf("instances %q, want %q", instances, want)
	}
	// RFC 6763 §12.1: SRV, TXT and the targets' addresses in the additional
	// section.
	var extra []string
	for _, rr := range r.Extra {
		extra = append(extra, dns.TypeToString[rr.Header().Rrtype]+" "+firstLabel(t, rr.Header().Name))
	}
	slices.Sort(extra)
	want := []string{"A box1", "A box2", "AAAA box1", "SRV Kitchen Printer (2) ü", "SRV Panel", "TXT Kitchen Printer (2) ü", "TXT Panel"}
	if !equal(extra, want) {
		t.Errorf("additional %q, want %q", extra, want)
	}
}

func TestSetZoneRejects(t *testing.T) {
	long := strings.Repeat("x", 64)
	for _, tc := range []struct {
		name  string
		zone  Zone
		field string
	}{
		{"host with underscore", Zone{Hosts: []Host{{Name: "bad_name"}}}, "Hosts[0].Name"},
		{"empty host", Zone{Hosts: []Host{{Name: ""}}}, "Hosts[0].Name"},
		{"duplicate host", Zone{Hosts: []Host{{Name: "a"}, {Name: "A"}}}, "Hosts[1].Name"},
		{"label too long", Zone{Hosts: []Host{{Name: long}}}, "Hosts[0].Name"},
		{"invalid address", Zone{Hosts: []Host{{Name: "a", Addrs: []netip.Addr{{}}}}}, "Hosts[0].Addrs[0]"},
		{"type without transport", Zone{Services: []Service{{Instance: "x", Type: "_http", Host: "a"}}}, "Services[0].Type"},
		{"type without underscore", Zone{Services: []Service{{Instance: "x", Type: "http._tcp", Host: "a"}}}, "Services[0].Type"},
		{"type too long", Zone{Services: []Service{{Instance: "x", Type: "_abcdefghijklmnop._tcp", Host: "a"}}}, "Services[0].Type"},
		{"instance too long", Zone{Services: []Service{{Instance: long, Type: "_http._tcp", Host: "a"}}}, "Services[0].Instance"},
		{"instance with control character", Zone{Services: []Service{{Instance: "a\nb", Type: "_http._tcp", Host: "a"}}}, "Services[0].Instance"},
		{"instance not UTF-8", Zone{Services: []Service{{Instance: "a\xff", Type: "_http._tcp", Host: "a"}}}, "Services[0].Instance"},
		{"service host invalid", Zone{Services: []Service{{Instance: "x", Type: "_http._tcp", Host: "a b"}}}, "Services[0].Host"},
		{"duplicate instance", Zone{Services: []Service{
			{Instance: "Panel", Type: "_http._tcp", Host: "a"}, {Instance: "PANEL", Type: "_HTTP._tcp", Host: "b"}}}, "Services[1]"},
		{"TXT string too long", Zone{Services: []Service{{Instance: "x", Type: "_http._tcp", Host: "a", TXT: []string{strings.Repeat("t", 256)}}}}, "Services[0].TXT[0]"},
		{"negative TTL", Zone{TTL: -time.Second}, "TTL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Config{Zone: testZone()})
			if err != nil {
				t.Fatal(err)
			}
			before := s.zone.Load()
			err = s.SetZone(tc.zone)
			if !errors.Is(err, ErrInvalidZone) {
				t.Fatalf("SetZone error %v, want ErrInvalidZone", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %s", err, tc.field)
			}
			if s.zone.Load() != before {
				t.Error("a rejected zone replaced the served one")
			}
		})
	}
}

func TestSetZoneSwaps(t *testing.T) {
	s, err := New(Config{Domain: "Mesh.Example", Zone: testZone()})
	if err != nil {
		t.Fatal(err)
	}
	serial := s.zone.Load().serial
	if err := s.SetZone(Zone{TTL: 5 * time.Second, Hosts: []Host{{Name: "box3", Addrs: []netip.Addr{netip.MustParseAddr("10.1.0.3")}}}}); err != nil {
		t.Fatal(err)
	}
	if got := s.zone.Load().serial; got != serial+1 {
		t.Errorf("serial %d after SetZone, want %d", got, serial+1)
	}
	r := respondDirect(t, s, "127.0.0.1", newQuery("box3.mesh.example.", dns.TypeA), false)
	if got, want := rrStrings(r.Answer), []string{"box3.mesh.example. 5 IN A 10.1.0.3"}; !equal(got, want) {
		t.Errorf("new zone: %q, want %q", got, want)
	}
	if r := respondDirect(t, s, "127.0.0.1", newQuery("box1.mesh.example.", dns.TypeA), false); r.Rcode != dns.RcodeNameError {
		t.Errorf("old name: %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
}

// TestSetZoneConcurrent swaps zones while queries run; -race checks that
// lookups need no lock.
func TestSetZoneConcurrent(t *testing.T) {
	s, err := New(Config{Zone: testZone()})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				r := respondDirect(t, s, "127.0.0.1", newQuery("box1.cb.home.arpa.", dns.TypeA), false)
				if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
					t.Errorf("answer during swaps: %v", r)
					return
				}
			}
		})
	}
	for i := range 50 {
		z := testZone()
		z.TTL = time.Duration(i+1) * time.Second
		if err := s.SetZone(z); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

// TestZoneTruncation checks RFC 2181 §9 on a DNS-SD browse answer: when
// only additional records do not fit, the answer goes without them and
// without TC; when answers do not fit, TC is set.
func TestZoneTruncation(t *testing.T) {
	for _, tc := range []struct {
		name      string
		instances int
		edns      uint16
		wantTC    bool
	}{
		{name: "additional records dropped", instances: 8},
		{name: "answers dropped", instances: 40, wantTC: true},
		{name: "everything fits with EDNS", instances: 8, edns: 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			z := Zone{Hosts: []Host{{Name: "box", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}}}
			for i := range tc.instances {
				z.Services = append(z.Services, Service{Instance: fmt.Sprintf("Web page number %d", i), Type: "_http._tcp", Host: "box", Port: 80, TXT: []string{"path=/some/longer/path"}})
			}
			s, err := New(Config{Zone: z})
			if err != nil {
				t.Fatal(err)
			}
			m := newQuery("_http._tcp.cb.home.arpa.", dns.TypePTR)
			if tc.edns > 0 {
				m.SetEdns0(tc.edns, false)
			}
			r := respondDirect(t, s, "127.0.0.1", m, false)
			if r.Truncated != tc.wantTC {
				t.Errorf("TC %v, want %v", r.Truncated, tc.wantTC)
			}
			if !tc.wantTC && len(r.Answer) != tc.instances {
				t.Errorf("%d answers, want all %d", len(r.Answer), tc.instances)
			}
			if tc.edns > 0 && len(r.Extra) < 2*tc.instances {
				t.Errorf("%d additional records with a 4096-byte buffer, want SRV and TXT of each instance", len(r.Extra))
			}
		})
	}
}
