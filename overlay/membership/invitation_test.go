package membership

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// tokenBytes returns the binary encoding inside a token.
func tokenBytes(t testing.TB, token string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(token, TokenPrefix))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tokenOf(b []byte) string { return TokenPrefix + base64.RawURLEncoding.EncodeToString(b) }

func TestInvitationRoundTrip(t *testing.T) {
	f := newFixture(t)
	token := f.inv.Token()
	inv, err := ParseInvitation(token)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(inv, f.inv) {
		t.Errorf("round trip:\n got %+v\nwant %+v", inv, f.inv)
	}
	if got := inv.Token(); got != token {
		t.Errorf("Token() after parsing = %q, want %q", got, token)
	}
	if !inv.Community().Equal(f.c) {
		t.Errorf("Community() = %+v, want %+v", inv.Community(), f.c)
	}
	if got := inv.Delegation().Groups; !reflect.DeepEqual(got, []string{"admin", "media"}) {
		t.Errorf("groups %q, want them sorted", got)
	}
	if got, want := inv.Bootstrap(), f.inv.bootstrap; !reflect.DeepEqual(got, want) || len(got) != 2 {
		t.Errorf("Bootstrap() = %v, want %v", got, want)
	}
	// The parsed invitation issues certificates that verify.
	m, err := inv.Issue(nodeKey(t, 7), t0, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyMembership(f.c, m, t0, nil); err != nil {
		t.Error(err)
	}
}

// malformedTokens returns tokens ParseInvitation must reject, with the error.
func malformedTokens(t testing.TB, f *fixture) []struct {
	name  string
	token string
	want  error
} {
	token := f.inv.Token()
	enc := tokenBytes(t, token)
	// Offsets in the encoding of the fixture.
	comm := 5 + 1 + len(f.c.Name) + 32 + 5 // end of the community
	dlLen := len(rawDelegation(f.inv.delegation))
	seedAt := comm + 2 + dlLen
	bootAt := seedAt + 32

	edit := func(e func(inv *Invitation)) string {
		inv := *f.inv
		inv.delegation = *f.inv.delegation.clone()
		e(&inv)
		return inv.Token()
	}
	resign := func(key ed25519.PrivateKey, e func(d *Delegation)) string {
		return edit(func(inv *Invitation) {
			e(&inv.delegation)
			copy(inv.delegation.Signature[:], ed25519.Sign(key, inv.delegation.signed()))
		})
	}
	_, otherKey := otherRoot(t)
	other, _ := otherRoot(t)
	outside := netip.MustParseAddr("10.1.2.3")
	var wrongSeed [32]byte

	return []struct {
		name  string
		token string
		want  error
	}{
		{"empty", "", ErrMalformed},
		{"prefix only", TokenPrefix, ErrMalformed},
		{"bad prefix", "cloudbox-invit:" + token[len(TokenPrefix):], ErrMalformed},
		{"upper-case prefix", strings.ToUpper(TokenPrefix) + token[len(TokenPrefix):], ErrMalformed},
		{"leading space", " " + token, ErrMalformed},
		{"trailing newline", token + "\n", ErrMalformed},
		{"line break inside", token[:40] + "\n" + token[40:], ErrMalformed},
		{"bad base64 character", token[:40] + "*" + token[41:], ErrMalformed},
		{"standard base64", token[:40] + "+" + token[41:], ErrMalformed},
		{"padding", token + "=", ErrMalformed},
		{"cut short", token[:len(token)-3], ErrMalformed},
		{"truncated", tokenOf(enc[:len(enc)-1]), ErrMalformed},
		{"trailing byte", tokenOf(append(bytes.Clone(enc), 0)), ErrMalformed},
		{"too long", TokenPrefix + strings.Repeat("A", 3000), ErrMalformed},
		{"bad magic", tokenOf(setByte(enc, 0, 'X')), ErrMalformed},
		{"version 2", tokenOf(setByte(enc, 4, 2)), ErrMalformed},
		{"community name empty", tokenOf(setByte(enc, 5, 0)), ErrMalformed},
		{"prefix length 33", tokenOf(setByte(enc, comm-1, 33)), ErrMalformed},
		{"delegation length huge", tokenOf(setByte(setByte(enc, comm, 0xff), comm+1, 0xff)), ErrMalformed},
		{"delegation length zero", tokenOf(setByte(setByte(enc, comm, 0), comm+1, 0)), ErrMalformed},
		{"17 bootstrap endpoints", tokenOf(setByte(enc, bootAt, 17)), ErrMalformed},
		{"bootstrap family 5", tokenOf(setByte(enc, bootAt+1, 5)), ErrMalformed},
		{"bootstrap port 0", tokenOf(append(setByte(enc, bootAt, 1)[:bootAt+1], 4, 192, 168, 1, 1, 0, 0)), ErrMalformed},
		{"bootstrap unspecified", tokenOf(append(setByte(enc, bootAt, 1)[:bootAt+1], 4, 0, 0, 0, 0, 1, 1)), ErrMalformed},
		{"invitation key differs", edit(func(inv *Invitation) { inv.key = ed25519.NewKeyFromSeed(wrongSeed[:]) }), ErrMalformed},
		{"delegation signature", tokenOf(flip(enc, seedAt-1)), ErrBadSignature},
		{"delegation signed by another root", resign(otherKey, func(*Delegation) {}), ErrBadSignature},
		{"delegation for another community", resign(f.root, func(d *Delegation) { d.CommunityID = other.ID() }), ErrWrongCommunity},
		{"address outside the prefix", resign(f.root, func(d *Delegation) { d.IPv4 = outside }), ErrOutsidePrefix},
	}
}

func TestParseInvitationErrors(t *testing.T) {
	f := newFixture(t)
	for _, tc := range malformedTokens(t, f) {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := ParseInvitation(tc.token)
			checkErr(t, err, tc.want)
			if inv != nil {
				t.Error("ParseInvitation returned an invitation with the error")
			}
		})
	}
}

func TestIssue(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name     string
		key      [32]byte
		now      time.Time
		validity time.Duration
		want     error
		notAfter time.Time // checked if set
	}{
		{name: "default validity", key: f.key, now: t0, notAfter: t0.Add(DefaultValidity)},
		{name: "sub-second now", key: f.key, now: t0.Add(time.Second / 2), validity: time.Hour, notAfter: t0.Add(time.Hour)},
		{name: "last second", key: f.key, now: testExpiry.Add(-time.Second), validity: MaxDelegatedValidity},
		{name: "expired", key: f.key, now: testExpiry, want: ErrExpired},
		{name: "long expired", key: f.key, now: testExpiry.Add(1000 * time.Hour), want: ErrExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := f.inv.Issue(tc.key, tc.now, tc.validity, detRand(4))
			checkErr(t, err, tc.want)
			if err != nil {
				if !strings.Contains(err.Error(), "2026-03-08T12:00:00Z") {
					t.Errorf("error %q does not say when the invitation expired", err)
				}
				return
			}
			if err := VerifyMembership(f.c, m, tc.now, nil); err != nil {
				t.Error(err)
			}
			if !tc.notAfter.IsZero() && !m.Certificate.NotAfter.Equal(tc.notAfter) {
				t.Errorf("not after %v, want %v", m.Certificate.NotAfter, tc.notAfter)
			}
		})
	}
	for name, v := range map[string]time.Duration{"too long": MaxDelegatedValidity + time.Second, "negative": -time.Hour, "sub-second": time.Millisecond} {
		t.Run("validity "+name, func(t *testing.T) {
			if _, err := f.inv.Issue(f.key, t0, v, nil); err == nil {
				t.Error("Issue succeeded")
			}
		})
	}
	if _, err := f.inv.Issue([32]byte{}, t0, 0, nil); err == nil {
		t.Error("Issue for an all-zero node key succeeded")
	}
}

func TestNewInvitationErrors(t *testing.T) {
	f := newFixture(t)
	_, otherKey := otherRoot(t)
	good := InviteOptions{Name: "attic", IPv4: netip.MustParseAddr("198.19.255.1"), Expires: testExpiry}
	for _, tc := range []struct {
		name string
		root ed25519.PrivateKey
		edit func(*InviteOptions)
		want error
	}{
		{"not the root key", otherKey, func(*InviteOptions) {}, ErrWrongCommunity},
		{"outside the prefix", f.root, func(o *InviteOptions) { o.IPv4 = netip.MustParseAddr("198.20.0.1") }, ErrOutsidePrefix},
		{"no address", f.root, func(o *InviteOptions) { o.IPv4 = netip.Addr{} }, ErrOutsidePrefix},
		{"no name", f.root, func(o *InviteOptions) { o.Name = "" }, nil},
		{"no expiry", f.root, func(o *InviteOptions) { o.Expires = time.Time{} }, nil},
		{"bad group", f.root, func(o *InviteOptions) { o.Groups = []string{"Admins"} }, nil},
		{"duplicate group", f.root, func(o *InviteOptions) { o.Groups = []string{"a", "b", "a"} }, nil},
		{"17 bootstrap endpoints", f.root, func(o *InviteOptions) {
			o.Bootstrap = make([]netip.AddrPort, 17)
			for i := range o.Bootstrap {
				o.Bootstrap[i] = netip.MustParseAddrPort("192.0.2.1:1")
			}
		}, nil},
		{"bootstrap with zone", f.root, func(o *InviteOptions) {
			o.Bootstrap = []netip.AddrPort{netip.MustParseAddrPort("[fe80::1%eth0]:51820")}
		}, nil},
		{"bootstrap without port", f.root, func(o *InviteOptions) {
			o.Bootstrap = []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:0")}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := good
			tc.edit(&opts)
			inv, err := NewInvitation(tc.root, f.c, opts, detRand(3))
			if err == nil || inv != nil {
				t.Fatalf("NewInvitation = %v, %v; want an error", inv, err)
			}
			if tc.want != nil {
				checkErr(t, err, tc.want)
			}
		})
	}
	if _, err := NewInvitation(f.root, f.c, good, detRand(3)); err != nil {
		t.Errorf("valid options: %v", err)
	}
}
