package dnsproxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/miekg/dns"
)

// pack packs m or fails the test.
func pack(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatalf("packing: %v", err)
	}
	return b
}

// parseCases are the parser's table, also the fuzz seeds.
func parseCases(t testing.TB) []struct {
	name    string
	pkt     []byte
	want    query
	wantErr error
} {
	plain := newQuery("Www.Example.COM.", dns.TypeA)
	plain.Id = 0x1234
	edns := newQuery("example.org.", dns.TypeAAAA)
	edns.Id = 7
	edns.SetEdns0(4096, true)
	cookie := newQuery("example.org.", dns.TypeA)
	cookie.SetEdns0(1232, false)
	cookie.IsEdns0().Option = append(cookie.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	root := newQuery(".", dns.TypeNS)
	notify := newQuery("example.org.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	resp := newQuery("example.org.", dns.TypeA)
	resp.Response = true
	two := newQuery("example.org.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	badvers := newQuery("example.org.", dns.TypeA)
	badvers.SetEdns0(1232, false)
	badvers.IsEdns0().SetVersion(1)
	withAnswer := newQuery("example.org.", dns.TypeA)
	withAnswer.Answer = []dns.RR{mustRR("example.org. 60 IN A 192.0.2.1")}

	pPlain := pack(t, plain)
	pEdns := pack(t, edns)
	pCookie := pack(t, cookie)
	compressed := append([]byte(nil), pack(t, newQuery("example.org.", dns.TypeA))...)
	// QNAME "x" then a pointer to offset 12 is illegal in a question;
	// a pointer as the whole name is legal but unusual.
	compressed = append(compressed[:headerLen], 0xc0, 12, 0, 1, 0, 1)
	longLabel := append([]byte(nil), pPlain[:headerLen]...)
	longLabel = append(longLabel, 64)
	longLabel = append(longLabel, bytes.Repeat([]byte{'a'}, 64)...)
	longLabel = append(longLabel, 0, 0, 1, 0, 1)
	longName := append([]byte(nil), pPlain[:headerLen]...)
	for range 5 {
		longName = append(longName, 63)
		longName = append(longName, bytes.Repeat([]byte{'a'}, 63)...)
	}
	longName = append(longName, 0, 0, 1, 0, 1)
	badOpt := append([]byte(nil), pEdns...)
	binary.BigEndian.PutUint16(badOpt[len(badOpt)-2:], 3) // RDLEN past the end
	badOption := append([]byte(nil), pCookie...)
	// The cookie option is the last 12 bytes: code, length, 8-byte cookie.
	binary.BigEndian.PutUint16(badOption[len(badOption)-10:], 9)

	return []struct {
		name    string
		pkt     []byte
		want    query
		wantErr error
	}{
		{name: "plain", pkt: pPlain, want: query{id: 0x1234, flags: flagRD, nameEnd: 29, end: 33, qtype: dns.TypeA, qclass: dns.ClassINET}},
		{name: "edns with do", pkt: pEdns, want: query{id: 7, flags: flagRD, nameEnd: 25, end: 29, qtype: dns.TypeAAAA, qclass: dns.ClassINET, edns: true, do: true, udpSize: 4096}},
		{name: "edns with cookie option", pkt: pCookie, want: query{id: cookie.Id, flags: flagRD, nameEnd: 25, end: 29, qtype: dns.TypeA, qclass: dns.ClassINET, edns: true, udpSize: 1232}},
		{name: "root", pkt: pack(t, root), want: query{id: root.Id, flags: flagRD, nameEnd: 13, end: 17, qtype: dns.TypeNS, qclass: dns.ClassINET}},
		{name: "empty", pkt: nil, wantErr: errShort},
		{name: "header only", pkt: pPlain[:headerLen], wantErr: errShort},
		{name: "name cut", pkt: pPlain[:20], wantErr: errShort},
		{name: "type cut", pkt: pPlain[:len(pPlain)-1], wantErr: errShort},
		{name: "response", pkt: pack(t, resp), wantErr: errNotQuery},
		{name: "notify opcode", pkt: pack(t, notify), wantErr: errUnusual},
		{name: "two questions", pkt: pack(t, two), wantErr: errUnusual},
		{name: "answer in query", pkt: pack(t, withAnswer), wantErr: errUnusual},
		{name: "edns version 1", pkt: pack(t, badvers), wantErr: errUnusual},
		{name: "compressed qname", pkt: compressed, wantErr: errUnusual},
		{name: "trailing byte", pkt: append(append([]byte(nil), pPlain...), 0), wantErr: errUnusual},
		{name: "label type 01", pkt: longLabel, wantErr: errMalformed},
		{name: "name over 255 bytes", pkt: longName, wantErr: errMalformed},
		{name: "opt rdlen past end", pkt: badOpt, wantErr: errShort},
		{name: "opt option past rdata", pkt: badOption, wantErr: errMalformed},
	}
}

func TestParseQuery(t *testing.T) {
	for _, tc := range parseCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseQuery(tc.pkt)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("parseQuery error = %v, want %v", err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Errorf("parseQuery =\n %+v, want\n %+v", got, tc.want)
			}
		})
	}
}

func TestAppendKeyLowersASCIIOnly(t *testing.T) {
	m := newQuery("WwW.\\195\\156ber.Example.", dns.TypeA) // "Über" in UTF-8
	m.SetEdns0(1232, true)
	p := pack(t, m)
	q, err := parseQuery(p)
	if err != nil {
		t.Fatal(err)
	}
	got := appendKey(nil, p, &q)
	want := []byte("\x03www\x05\xc3\x9cber\x07example\x00\x00\x01\x00\x01\x01")
	if !bytes.Equal(got, want) {
		t.Errorf("key = %q, want %q", got, want)
	}
	k := string(got)
	if keyType(k) != dns.TypeA || keyClass(k) != dns.ClassINET || !keyDO(k) || keyName(k) != string(want[:len(want)-5]) {
		t.Errorf("key parts: type %d class %d do %v name %q", keyType(k), keyClass(k), keyDO(k), keyName(k))
	}
}

func TestInZone(t *testing.T) {
	zone, _ := wireName("cb.home.arpa.")
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"cb.home.arpa.", true},
		{"box1.cb.home.arpa.", true},
		{"a.b.cb.home.arpa.", true},
		{"xcb.home.arpa.", false}, // same bytes at the end, not at a label boundary
		{"home.arpa.", false},
		{"example.com.", false},
		{".", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := wireName(tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if got := inZone(n, zone); got != tc.want {
				t.Errorf("inZone(%s) = %v, want %v", tc.name, got, tc.want)
			}
		})
	}
}

func TestRRTTLOffsets(t *testing.T) {
	m := newQuery("example.org.", dns.TypeA)
	m.Response = true
	m.Answer = []dns.RR{mustRR("example.org. 300 IN CNAME www.example.org."), mustRR("www.example.org. 120 IN A 192.0.2.1")}
	m.Ns = []dns.RR{soaRR("example.org.", 900, 60)}
	m.Compress = true
	p := pack(t, m)
	qend, err := skipName(p, headerLen)
	if err != nil {
		t.Fatal(err)
	}
	qend += 4
	offs, end, err := rrTTLOffsets(nil, p, qend, 3)
	if err != nil {
		t.Fatal(err)
	}
	if end != len(p) {
		t.Errorf("walk ended at %d, message is %d bytes", end, len(p))
	}
	var ttls []uint32
	for _, o := range offs {
		ttls = append(ttls, binary.BigEndian.Uint32(p[o:]))
	}
	if want := []uint32{300, 120, 900}; !equal(ttls, want) {
		t.Errorf("TTLs at offsets = %v, want %v", ttls, want)
	}
	if _, _, err := rrTTLOffsets(nil, p[:len(p)-3], qend, 3); err == nil {
		t.Error("walking a cut message succeeded")
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzParseQuery checks that the parser never panics, and that what it
// accepts miekg/dns reads as the same question.
func FuzzParseQuery(f *testing.F) {
	for _, tc := range parseCases(f) {
		f.Add(tc.pkt)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		q, err := parseQuery(p)
		if err != nil {
			return
		}
		if q.end > len(p) || q.nameEnd > q.end || q.nameEnd-headerLen > maxNameLen {
			t.Fatalf("offsets out of range: %+v for %d bytes", q, len(p))
		}
		key := appendKey(nil, p, &q)
		if len(key) != q.nameLen()+5 {
			t.Fatalf("key of %d bytes for a name of %d", len(key), q.nameLen())
		}
		var m dns.Msg
		if err := m.Unpack(p); err != nil {
			// miekg/dns also checks the contents of EDNS options, which the
			// server ignores.
			return
		}
		if len(m.Question) != 1 || m.Question[0].Qtype != q.qtype || m.Question[0].Qclass != q.qclass || m.Id != q.id {
			t.Fatalf("parseQuery %+v disagrees with miekg/dns %v", q, m.Question)
		}
		if opt := m.IsEdns0(); (opt != nil) != q.edns || opt != nil && (opt.Do() != q.do || opt.UDPSize() != q.udpSize) {
			t.Fatalf("EDNS: parseQuery %+v disagrees with miekg/dns %v", q, opt)
		}
	})
}
