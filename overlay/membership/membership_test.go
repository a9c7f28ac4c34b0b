package membership

import (
	"bytes"
	"crypto/ed25519"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// chain returns a copy of f.m with the delegation edited and signed by
// dlKey, then the certificate edited and signed by the invitation key.
func (f *fixture) chain(dlKey ed25519.PrivateKey, editDl func(*Delegation), editCert func(*Certificate)) *Membership {
	m := f.m.clone()
	editDl(m.Delegation)
	copy(m.Delegation.Signature[:], ed25519.Sign(dlKey, m.Delegation.signed()))
	editCert(&m.Certificate)
	copy(m.Certificate.Signature[:], ed25519.Sign(f.inv.key, m.Certificate.signed()))
	return m
}

func TestVerifyMembership(t *testing.T) {
	f := newFixture(t)
	other, otherKey := otherRoot(t)
	renewed := f.renewed(t)
	notAfter := f.m.Certificate.NotAfter
	latest := testExpiry.Add(MaxDelegatedValidity)
	revoke := func(r Revocation) *RevocationList {
		l, err := Revoke(f.root, nil, t0, r)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	foreignList, err := Revoke(otherKey, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	_, stranger, _ := ed25519.GenerateKey(detRand(7))
	outside := netip.MustParseAddr("10.0.0.1")

	for _, tc := range []struct {
		name    string
		c       *Community // nil means f.c
		m       *Membership
		now     time.Time
		revoked *RevocationList
		want    error
	}{
		{name: "redeemed", m: f.m, now: t0},
		{name: "renewed", m: renewed, now: t0},
		{name: "start minus skew", m: f.m, now: t0.Add(-ClockSkew)},
		{name: "before start minus skew", m: f.m, now: t0.Add(-ClockSkew - time.Second), want: ErrNotYetValid},
		{name: "end plus skew minus 1s", m: f.m, now: notAfter.Add(ClockSkew - time.Second)},
		{name: "end plus skew", m: f.m, now: notAfter.Add(ClockSkew), want: ErrExpired},
		{name: "renewed expired", m: renewed, now: renewed.Certificate.NotAfter.Add(time.Hour), want: ErrExpired},
		{name: "valid after the invitation expired", m: f.m, now: testExpiry.Add(30 * 24 * time.Hour)},
		{name: "wrong community", c: &other, m: f.m, now: t0, want: ErrWrongCommunity},
		{name: "renewed, wrong community", c: &other, m: renewed, now: t0, want: ErrWrongCommunity},
		{name: "nil membership", m: nil, now: t0, want: ErrMalformed},
		{name: "invalid certificate", m: f.withCert(func(c *Certificate) { c.Name = "" }), now: t0, want: ErrMalformed},

		{name: "delegation signed by another root", m: f.withDelegation(otherKey, func(*Delegation) {}), now: t0, want: ErrBadSignature},
		{name: "delegation for another community", m: f.withDelegation(f.root, func(d *Delegation) { d.CommunityID = other.ID() }), now: t0, want: ErrWrongCommunity},
		{name: "certificate not signed by the invitation key", m: func() *Membership {
			m := f.m.clone()
			m.Certificate.IssuerKey = stranger.Public().(ed25519.PublicKey)
			copy(m.Certificate.Signature[:], ed25519.Sign(stranger, m.Certificate.signed()))
			return m
		}(), now: t0, want: ErrBadSignature},
		{name: "invitation-signed certificate without delegation", m: &Membership{Certificate: f.m.Certificate}, now: t0, want: ErrBadSignature},
		{name: "root-signed certificate with wrong signature", m: func() *Membership {
			m := renewed.clone()
			m.Certificate.Signature[0] ^= 1
			return m
		}(), now: t0, want: ErrBadSignature},

		{name: "name differs", m: f.withCert(func(c *Certificate) { c.Name = "attic" }), now: t0, want: ErrMismatch},
		{name: "ipv4 differs", m: f.withCert(func(c *Certificate) { c.IPv4 = netip.MustParseAddr("198.18.0.11") }), now: t0, want: ErrMismatch},
		{name: "group missing", m: f.withCert(func(c *Certificate) { c.Groups = []string{"admin"} }), now: t0, want: ErrMismatch},
		{name: "group added", m: f.withCert(func(c *Certificate) { c.Groups = []string{"admin", "media", "root"} }), now: t0, want: ErrMismatch},
		{name: "issued after the invitation expired", m: f.withCert(func(c *Certificate) {
			c.NotBefore, c.NotAfter = testExpiry, testExpiry.Add(24*time.Hour)
		}), now: testExpiry.Add(time.Hour), want: ErrExpired},
		{name: "backdated just before expiry", m: f.withCert(func(c *Certificate) {
			c.NotBefore = testExpiry.Add(-time.Second)
		}), now: testExpiry.Add(time.Hour)},
		{name: "lasts as long as allowed", m: f.withCert(func(c *Certificate) { c.NotAfter = latest }), now: t0},
		{name: "outlives the invitation", m: f.withCert(func(c *Certificate) { c.NotAfter = latest.Add(time.Second) }), now: t0, want: ErrMismatch},
		{name: "ipv4 outside prefix", m: f.chain(f.root,
			func(d *Delegation) { d.IPv4 = outside },
			func(c *Certificate) { c.IPv4 = outside }), now: t0, want: ErrOutsidePrefix},

		{name: "revoked node key", m: f.m, now: t0, revoked: revoke(RevokeNodeKeyEntry(f.key, "stolen")), want: ErrRevoked},
		{name: "revoked serial", m: f.m, now: t0, revoked: revoke(RevokeSerialEntry(f.m.Certificate.Serial, "")), want: ErrRevoked},
		{name: "revoked invitation", m: f.m, now: t0, revoked: revoke(RevokeInviteEntry(f.m.Delegation.InviteID, "leaked")), want: ErrRevoked},
		{name: "renewed, revoked node key", m: renewed, now: t0, revoked: revoke(RevokeNodeKeyEntry(f.key, "")), want: ErrRevoked},
		{name: "renewed, old serial revoked", m: renewed, now: t0, revoked: revoke(RevokeSerialEntry(f.m.Certificate.Serial, ""))},
		{name: "unrelated revocation", m: f.m, now: t0, revoked: revoke(RevokeNodeKeyEntry(nodeKey(t, 9), ""))},
		{name: "revocation list of another community", m: f.m, now: t0, revoked: foreignList, want: ErrWrongCommunity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := f.c
			if tc.c != nil {
				c = *tc.c
			}
			checkErr(t, VerifyMembership(c, tc.m, tc.now, tc.revoked), tc.want)
		})
	}
}

// region is a field of an encoding.
type region struct {
	name string
	size int
}

func certRegions(c *Certificate) []region {
	return []region{
		{"magic", 4}, {"version", 1}, {"community id", 10}, {"serial", 8},
		{"name length", 1}, {"name", len(c.Name)}, {"node key", 32}, {"ipv4", 4},
		{"groups", len(c.signed()) - 4 - 1 - 10 - 8 - 1 - len(c.Name) - 32 - 4 - 8 - 8 - 32},
		{"not before", 8}, {"not after", 8}, {"issuer key", 32}, {"signature", 64},
	}
}

func delegationRegions(d *Delegation) []region {
	return []region{
		{"magic", 4}, {"version", 1}, {"community id", 10}, {"invite id", 16},
		{"invite key", 32}, {"name length", 1}, {"name", len(d.Name)}, {"ipv4", 4},
		{"groups", len(d.signed()) - 4 - 1 - 10 - 16 - 32 - 1 - len(d.Name) - 4 - 8},
		{"expires", 8}, {"signature", 64},
	}
}

// TestTamperedMembership changes the last byte of each field of an encoded
// membership and expects the error that field's protection gives.
func TestTamperedMembership(t *testing.T) {
	f := newFixture(t)
	enc := mustMarshal(t, f.m)
	want := map[string]error{
		"magic": ErrMalformed, "version": ErrMalformed, "length": ErrMalformed,
		"community id": ErrWrongCommunity, "name length": ErrMalformed,
		"groups": ErrMalformed, // the last byte of "media" becomes 'A'
	}
	var regions []region
	regions = append(regions, region{"membership magic", 4}, region{"membership version", 1}, region{"delegation length", 2})
	for _, r := range delegationRegions(f.m.Delegation) {
		regions = append(regions, region{"delegation " + r.name, r.size})
	}
	regions = append(regions, region{"certificate length", 2})
	for _, r := range certRegions(&f.m.Certificate) {
		regions = append(regions, region{"certificate " + r.name, r.size})
	}
	off := 0
	for _, r := range regions {
		off += r.size
		t.Run(r.name, func(t *testing.T) {
			_, field, _ := strings.Cut(r.name, " ")
			w, ok := want[field]
			if !ok {
				w = ErrBadSignature
			}
			var m Membership
			err := m.UnmarshalBinary(flip(enc, off-1))
			if err == nil {
				err = VerifyMembership(f.c, &m, t0, nil)
			}
			checkErr(t, err, w)
		})
	}
	if off != len(enc) {
		t.Fatalf("regions cover %d bytes, encoding has %d", off, len(enc))
	}
}

// TestEveryByteMatters changes each byte of an encoded membership in turn:
// every change must be refused, by the parser or by the verifier.
func TestEveryByteMatters(t *testing.T) {
	f := newFixture(t)
	for _, m := range []*Membership{f.m, f.renewed(t)} {
		enc := mustMarshal(t, m)
		for i := range enc {
			var got Membership
			if err := got.UnmarshalBinary(flip(enc, i)); err != nil {
				continue
			}
			if err := VerifyMembership(f.c, &got, t0, nil); err == nil {
				t.Errorf("byte %d changed, membership still verifies", i)
			}
		}
	}
}

func TestMembershipRoundTrip(t *testing.T) {
	f := newFixture(t)
	for name, m := range map[string]*Membership{"delegated": f.m, "renewed": f.renewed(t)} {
		t.Run(name, func(t *testing.T) {
			b := mustMarshal(t, m)
			var got Membership
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(&got, m) {
				t.Errorf("round trip:\n got %+v\nwant %+v", &got, m)
			}
		})
	}
}

func malformedMemberships(t testing.TB, f *fixture) []byteCase {
	enc := mustMarshal(t, f.m)
	renewed := mustMarshal(t, f.renewed(t))
	cert := mustMarshal(t, &f.m.Certificate)
	twoCerts := encoder{}
	twoCerts.header(membershipMagic)
	twoCerts.Bytes16(cert)
	twoCerts.Bytes16(cert)
	return []byteCase{
		{"empty", nil},
		{"header only", enc[:5]},
		{"truncated", enc[:len(enc)-1]},
		{"trailing byte", append(bytes.Clone(enc), 0)},
		{"delegation length huge", setByte(setByte(enc, 5, 0xff), 6, 0xff)},
		{"certificate missing", renewed[:7]},
		{"certificate length short", setByte(renewed, 8, renewed[8]-1)},
		{"delegation holds a certificate", twoCerts.Bytes()},
		{"oversized", make([]byte, MaxMembershipSize+1)},
	}
}

func TestUnmarshalMembershipMalformed(t *testing.T) {
	f := newFixture(t)
	for _, tc := range malformedMemberships(t, f) {
		t.Run(tc.name, func(t *testing.T) {
			var m Membership
			checkErr(t, m.UnmarshalBinary(tc.b), ErrMalformed)
		})
	}
}

func TestRenew(t *testing.T) {
	f := newFixture(t)
	later := t0.Add(250 * 24 * time.Hour)
	m, err := Renew(f.root, f.c, f.m, nil, later, 30*24*time.Hour, detRand(3))
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyMembership(f.c, m, later, nil); err != nil {
		t.Fatalf("renewed membership does not verify: %v", err)
	}
	old, cert := &f.m.Certificate, &m.Certificate
	switch {
	case m.Delegation != nil:
		t.Error("renewed membership has a delegation")
	case !bytes.Equal(cert.IssuerKey, f.c.RootKey):
		t.Error("renewed certificate is not signed by the root key")
	case cert.Name != old.Name || cert.IPv4 != old.IPv4 || cert.NodeKey != old.NodeKey || !reflect.DeepEqual(cert.Groups, old.Groups):
		t.Errorf("renewal changed the member: %+v, was %+v", cert, old)
	case cert.Serial == old.Serial:
		t.Error("renewal kept the serial")
	case !cert.NotBefore.Equal(later) || !cert.NotAfter.Equal(later.Add(30*24*time.Hour)):
		t.Errorf("validity %v to %v", cert.NotBefore, cert.NotAfter)
	}
	// A renewed membership can be renewed again.
	if _, err := Renew(f.root, f.c, m, nil, later.Add(time.Hour), 0, detRand(4)); err != nil {
		t.Errorf("renewing a renewed membership: %v", err)
	}

	_, otherKey := otherRoot(t)
	revoked, err := Revoke(f.root, nil, t0, RevokeNodeKeyEntry(f.key, "gone"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		root    ed25519.PrivateKey
		now     time.Time
		revoked *RevocationList
		want    error
	}{
		{"not the root key", otherKey, t0, nil, ErrWrongCommunity},
		{"revoked", f.root, t0, revoked, ErrRevoked},
		{"expired", f.root, f.m.Certificate.NotAfter.Add(time.Hour), nil, ErrExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Renew(tc.root, f.c, f.m, tc.revoked, tc.now, 0, detRand(5))
			checkErr(t, err, tc.want)
		})
	}
	if _, err := Renew(f.root[:10], f.c, f.m, nil, t0, 0, nil); err == nil {
		t.Error("Renew with a short key succeeded")
	}
}

func TestNeedsRenewal(t *testing.T) {
	cert := &Certificate{NotBefore: t0, NotAfter: t0.Add(300 * time.Second)}
	for _, tc := range []struct {
		name string
		now  time.Time
		want bool
	}{
		{"before start", t0.Add(-time.Hour), false},
		{"at start", t0, false},
		{"exactly a third left", t0.Add(200 * time.Second), false},
		{"a nanosecond less than a third left", t0.Add(200*time.Second + time.Nanosecond), true},
		{"a second less than a third left", t0.Add(201 * time.Second), true},
		{"at end", t0.Add(300 * time.Second), true},
		{"after end", t0.Add(time.Hour), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NeedsRenewal(cert, tc.now); got != tc.want {
				t.Errorf("NeedsRenewal at %v = %v, want %v", tc.now.Sub(t0), got, tc.want)
			}
		})
	}
	long := &Certificate{NotBefore: time.Unix(0, 0), NotAfter: time.Unix(maxUnix, 0)}
	if NeedsRenewal(long, t0) || !NeedsRenewal(long, time.Unix(maxUnix-1, 0)) {
		t.Error("NeedsRenewal is wrong for a certificate lasting until 9999")
	}
}

func BenchmarkVerifyMembership(b *testing.B) {
	f := newFixture(b)
	enc := mustMarshal(b, f.m)
	b.ReportAllocs()
	for b.Loop() {
		var m Membership
		if err := m.UnmarshalBinary(enc); err != nil {
			b.Fatal(err)
		}
		if err := VerifyMembership(f.c, &m, t0, nil); err != nil {
			b.Fatal(err)
		}
	}
}
