package services

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

var goldenTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// goldenPayload is the content of testdata/catalog-v1.golden.
func goldenPayload() *docPayload {
	return &docPayload{
		V: docFormat, Owner: "node001", Epoch: 0x0123456789abcdef, Version: 1772366400000,
		Issued: goldenTime, Expires: goldenTime.Add(DefaultLease),
		Services: []docEntry{
			{Instance: "Community panel", Type: "_http._tcp", Port: 80, TXT: map[string]string{"path": "/"},
				Description: "the box's web panel", Healthy: true, Builtin: true, Updated: goldenTime},
			{Instance: "Impressora del casal", Type: "_ipp._tcp", Port: 631, Addr: netip.MustParseAddr("198.51.100.7"),
				Healthy: false, Updated: goldenTime.Add(-time.Hour)},
		},
	}
}

// signGolden signs p with member 1's key and a fixed nonce source, so the
// bytes are reproducible.
func signGolden(t testing.TB, p *docPayload) []byte {
	t.Helper()
	_, priv := testMember(t, 1)
	doc, err := signDocument(testSigner(t, priv), bytes.NewReader(bytes.Repeat([]byte{0x42}, 64)), p)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestDocumentGolden(t *testing.T) {
	path := filepath.Join("testdata", "catalog-v1.golden")
	doc := signGolden(t, goldenPayload())
	if *update {
		if err := os.WriteFile(path, doc, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(doc, want) {
		t.Errorf("encoding changed (run with -update if intended):\ngot  %q\nwant %q", doc, want)
	}
	m, _ := testMember(t, 1)
	got, err := openDocument(want, m.NodeKey)
	if err != nil {
		t.Fatalf("openDocument(golden): %v", err)
	}
	if diff := cmp.Diff(goldenPayload(), got, cmpAddr); diff != "" {
		t.Errorf("golden payload (-want +got):\n%s", diff)
	}
}

func TestOpenDocumentRejects(t *testing.T) {
	m1, _ := testMember(t, 1)
	m2, priv2 := testMember(t, 2)
	good := signGolden(t, goldenPayload())
	signed := func(mod func(p *docPayload)) []byte {
		p := goldenPayload()
		mod(p)
		return signGolden(t, p)
	}
	// signRaw signs an arbitrary payload with member 1's key.
	signRaw := func(payload string) []byte {
		_, priv := testMember(t, 1)
		sig, err := testSigner(t, priv).Sign(bytes.NewReader(make([]byte, 64)), append([]byte(docMagic), payload...))
		if err != nil {
			t.Fatal(err)
		}
		return append(append([]byte(docMagic), sig...), payload...)
	}
	tampered := bytes.Clone(good)
	i := bytes.Index(tampered, []byte(`"port":80`))
	tampered[i+7] = '9'
	many := make([]docEntry, MaxEntries+1)
	for i := range many {
		many[i] = docEntry{Instance: strings.Repeat("x", i+1), Type: "_http._tcp", Port: 80, Updated: goldenTime}
	}
	byOther, err := signDocument(testSigner(t, priv2), bytes.NewReader(make([]byte, 64)), goldenPayload())
	if err != nil {
		t.Fatal(err)
	}
	_ = m2
	tests := []struct {
		name string
		doc  []byte
		want rejectReason
	}{
		{"tampered", tampered, rejectSignature},
		{"other key", byOther, rejectSignature},
		{"truncated", good[:docHeaderSize-1], rejectMalformed},
		{"bad magic", append([]byte("CBCATALOG2"), good[len(docMagic):]...), rejectMalformed},
		{"too large", append(bytes.Clone(good), make([]byte, MaxDocSize)...), rejectTooLarge},
		{"not json", signRaw("hello"), rejectMalformed},
		{"trailing", signRaw(string(good[docHeaderSize:]) + " {}"), rejectMalformed},
		{"format 2", signed(func(p *docPayload) { p.V = 2 }), rejectMalformed},
		{"no owner", signed(func(p *docPayload) { p.Owner = "" }), rejectMalformed},
		{"expiry before issue", signed(func(p *docPayload) { p.Expires = p.Issued }), rejectMalformed},
		{"too many", signed(func(p *docPayload) { p.Services = many }), rejectTooMany},
		{"invalid entry", signed(func(p *docPayload) { p.Services[0].Port = 0 }), rejectInvalidEntry},
		{"duplicate entry", signed(func(p *docPayload) { p.Services[1] = p.Services[0] }), rejectInvalidEntry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := openDocument(tt.doc, m1.NodeKey)
			if err == nil {
				t.Fatal("openDocument accepted the document")
			}
			if got := reasonOf(err); got != tt.want {
				t.Fatalf("reason %s (%v), want %s", got, err, tt.want)
			}
		})
	}
}

func TestMetaRoundTrip(t *testing.T) {
	m := meta{Epoch: 1, Version: 2, Entries: 3, Hash: [16]byte{4, 5}}
	got, err := parseMeta(m.encode())
	if err != nil || got != m {
		t.Fatalf("parseMeta(encode(%+v)) = %+v, %v", m, got, err)
	}
	for _, b := range [][]byte{nil, make([]byte, metaSize), append(m.encode(), 0)} {
		if _, err := parseMeta(b); err == nil {
			t.Errorf("parseMeta(%x) accepted", b)
		}
	}
}

// FuzzOpenDocument feeds whole documents; seeds are the golden document and
// its mutations, so the fuzzer starts past the signature check.
func FuzzOpenDocument(f *testing.F) {
	good := signGolden(f, goldenPayload())
	f.Add(good)
	f.Add(good[:docHeaderSize])
	f.Add([]byte(docMagic))
	m, _ := testMember(f, 1)
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := openDocument(doc, m.NodeKey)
		if err != nil {
			return
		}
		if len(p.Services) > MaxEntries {
			t.Fatalf("accepted %d services", len(p.Services))
		}
		for i := range p.Services {
			s := p.Services[i].service()
			if err := s.Validate(); err != nil {
				t.Fatalf("accepted invalid service: %v", err)
			}
		}
	})
}

// FuzzParsePayload feeds payloads past the signature, where the JSON parser
// and validation run on bytes a member signed.
func FuzzParsePayload(f *testing.F) {
	b, err := json.Marshal(goldenPayload())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"v":1,"owner":"x","issued":"2026-01-01T00:00:00Z","expires":"2026-01-02T00:00:00Z","services":[]}`))
	f.Add([]byte(`{"v":1,"services":[{"type":"_a._tcp","txt":{"a":"b"},"addr":"::1"}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		p, err := parsePayload(payload)
		if err != nil {
			return
		}
		if p.V != docFormat || p.Owner == "" || !p.Expires.After(p.Issued) || len(p.Services) > MaxEntries {
			t.Fatalf("accepted inconsistent payload %+v", p)
		}
		seen := map[string]bool{}
		for i := range p.Services {
			s := p.Services[i].service()
			if err := s.Validate(); err != nil || seen[s.key()] {
				t.Fatalf("accepted invalid or duplicate service %+v: %v", s, err)
			}
			seen[s.key()] = true
		}
	})
}

func FuzzParseMeta(f *testing.F) {
	f.Add(meta{Epoch: 1, Version: 2, Entries: 3}.encode())
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseMeta(b)
		if err != nil {
			return
		}
		if !bytes.Equal(m.encode(), b) {
			t.Fatalf("parseMeta(%x) = %+v does not re-encode", b, m)
		}
	})
}

// FuzzParseState feeds the services file, which a user may edit by hand.
func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"version":1,"services":[{"instance":"a","type":"_http._tcp","port":80,"updated":"2026-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"version":1,"services":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		list, err := parseState(b)
		if err != nil {
			return
		}
		for _, s := range list {
			if err := s.Validate(); err != nil {
				t.Fatalf("accepted invalid service: %v", err)
			}
		}
	})
}
