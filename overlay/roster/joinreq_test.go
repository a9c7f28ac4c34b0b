package roster

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestJoinRequestRoundTrip(t *testing.T) {
	f := newFixture(t)
	m := f.member("new", nodeKey(t, 1), t0, 0)
	for _, req := range []*JoinRequest{
		{Membership: m},
		{Membership: m, Endpoints: []netip.AddrPort{ep1, ep2}, RelayOK: true},
		{Membership: f.founder(nodeKey(t, 2), t0), Endpoints: manyEndpoints(MaxEndpoints)},
	} {
		b, err := req.Encode()
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeJoinRequest(b)
		if err != nil {
			t.Fatalf("DecodeJoinRequest(%s) = %v", b, err)
		}
		if diff := cmp.Diff(req, got, cmpOpts); diff != "" {
			t.Errorf("decoded (-want +got):\n%s", diff)
		}
	}
}

// malformedJoinRequests are bodies DecodeJoinRequest must refuse.
func malformedJoinRequests(t testing.TB) []byteCase {
	f := newFixture(t)
	chain := base64.StdEncoding.EncodeToString(mustMarshal(t, f.member("new", nodeKey(t, 1), t0, 0)))
	body := func(format string, args ...any) []byte { return []byte(fmt.Sprintf(format, args...)) }
	eps := make([]string, MaxEndpoints+1)
	for i, ap := range manyEndpoints(MaxEndpoints + 1) {
		eps[i] = `"` + ap.String() + `"`
	}
	return []byteCase{
		{"empty", nil},
		{"not json", body("membership=%s", chain)},
		{"array", body(`[1]`)},
		{"no version", body(`{"membership":%q}`, chain)},
		{"version 2", body(`{"version":2,"membership":%q}`, chain)},
		{"unknown field", body(`{"version":1,"membership":%q,"name":"x"}`, chain)},
		{"trailing object", body(`{"version":1,"membership":%q}{}`, chain)},
		{"no membership", body(`{"version":1}`)},
		{"membership not base64", body(`{"version":1,"membership":"!!!"}`)},
		{"membership base64url", body(`{"version":1,"membership":%q}`, strings.NewReplacer("+", "-", "/", "_").Replace(chain)+"-_")},
		{"membership garbage", body(`{"version":1,"membership":%q}`, base64.StdEncoding.EncodeToString([]byte("CBM1\x01junk")))},
		{"membership too long", body(`{"version":1,"membership":%q}`, base64.StdEncoding.EncodeToString(make([]byte, 3000)))},
		{"endpoint not an address", body(`{"version":1,"membership":%q,"endpoints":["box.local:1"]}`, chain)},
		{"endpoint port 0", body(`{"version":1,"membership":%q,"endpoints":["192.0.2.1:0"]}`, chain)},
		{"endpoint zone", body(`{"version":1,"membership":%q,"endpoints":["[fe80::1%%eth0]:1"]}`, chain)},
		{"endpoint twice", body(`{"version":1,"membership":%q,"endpoints":["192.0.2.1:1","192.0.2.1:1"]}`, chain)},
		{"too many endpoints", body(`{"version":1,"membership":%q,"endpoints":[%s]}`, chain, strings.Join(eps, ","))},
		{"relay not bool", body(`{"version":1,"membership":%q,"relay":"yes"}`, chain)},
		{"too large", body(`{"version":1,"membership":%q,"endpoints":[]}%s`, chain, strings.Repeat(" ", MaxJoinRequestSize))},
	}
}

func TestDecodeJoinRequestMalformed(t *testing.T) {
	for _, tc := range malformedJoinRequests(t) {
		t.Run(tc.name, func(t *testing.T) {
			req, err := DecodeJoinRequest(tc.b)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeJoinRequest = %+v, %v; want ErrMalformed", req, err)
			}
		})
	}
}

// FuzzDecodeJoinRequest checks that decoding never panics and that what
// decodes encodes and decodes again to the same request.
func FuzzDecodeJoinRequest(f *testing.F) {
	fx := newFixture(f)
	good, err := (&JoinRequest{Membership: fx.member("new", nodeKey(f, 1), t0, 0), Endpoints: []netip.AddrPort{ep1, ep2}, RelayOK: true}).Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	for _, tc := range malformedJoinRequests(f) {
		f.Add(tc.b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeJoinRequest(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := req.Encode()
		if err != nil {
			t.Fatalf("decoded request does not encode: %v", err)
		}
		got, err := DecodeJoinRequest(again)
		if err != nil {
			t.Fatalf("encoded request does not decode: %v\n%s", err, again)
		}
		if diff := cmp.Diff(req, got, cmpOpts); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
