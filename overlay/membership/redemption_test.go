package membership

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestRedemptions(t *testing.T) {
	f := newFixture(t)
	thief, err := f.inv.Issue(nodeKey(t, 0x66), t0.Add(time.Hour), 0, detRand(8))
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.inv.Issue(f.key, t0.Add(time.Hour), 0, detRand(9))
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := Revoke(f.root, nil, t0, RevokeInviteEntry(f.m.Delegation.InviteID, "leaked"))
	if err != nil {
		t.Fatal(err)
	}
	late := f.withCert(func(c *Certificate) { c.NotBefore = testExpiry.Add(-time.Hour) })

	var r Redemptions
	// Steps run in order on the same set.
	for _, step := range []struct {
		name string
		do   func() error
		want error
	}{
		{"check before any redemption", func() error { return r.Check(thief) }, nil},
		{"redeem revoked invitation", func() error { return r.Redeem(f.c, f.m, t0, revoked) }, ErrRevoked},
		{"redeem after expiry", func() error { return r.Redeem(f.c, late, testExpiry, nil) }, ErrExpired},
		{"redeem", func() error { return r.Redeem(f.c, f.m, t0, nil) }, nil},
		{"redeem again", func() error { return r.Redeem(f.c, f.m, t0.Add(time.Minute), nil) }, nil},
		{"same key, new certificate", func() error { return r.Redeem(f.c, again, t0.Add(time.Hour), nil) }, nil},
		{"second node key", func() error { return r.Redeem(f.c, thief, t0.Add(time.Hour), nil) }, ErrInviteUsed},
		{"check second node key", func() error { return r.Check(thief) }, ErrInviteUsed},
		{"check first node key", func() error { return r.Check(f.m) }, nil},
		{"check renewed", func() error { return r.Check(f.renewed(t)) }, nil},
		{"redeem root-signed", func() error { return r.Redeem(f.c, f.renewed(t), t0, nil) }, errNotDelegated},
		{"merge second node key", func() error { _, err := r.Merge(f.c, thief); return err }, ErrInviteUsed},
	} {
		t.Run(step.name, func(t *testing.T) {
			checkErr(t, step.do(), step.want)
		})
	}
	if k, ok := r.Lookup(f.m.Delegation.InviteID); !ok || k != f.key || r.Len() != 1 {
		t.Errorf("Lookup = %x, %v; Len = %d; want the first node key, one record", k, ok, r.Len())
	}
}

func TestRedemptionsMerge(t *testing.T) {
	f := newFixture(t)
	other, _ := otherRoot(t)
	var r Redemptions
	for _, tc := range []struct {
		name      string
		c         Community
		m         *Membership
		wantAdded bool
		want      error
	}{
		{"other community", other, f.m, false, ErrWrongCommunity},
		{"bad signature", f.c, func() *Membership { m := f.m.clone(); m.Certificate.Signature[3] ^= 1; return m }(), false, ErrBadSignature},
		{"new", f.c, f.m, true, nil},
		{"known", f.c, f.m, false, nil},
		// Records matter after the certificate expired: no time check.
		{"expired certificate", f.c, f.withCert(func(c *Certificate) { c.NotAfter = c.NotBefore.Add(time.Second) }), false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			added, err := r.Merge(tc.c, tc.m)
			checkErr(t, err, tc.want)
			if added != tc.wantAdded {
				t.Errorf("added = %v, want %v", added, tc.wantAdded)
			}
		})
	}
	if _, err := r.Merge(f.c, f.renewed(t)); !errors.Is(err, errNotDelegated) {
		t.Errorf("merging a root-signed membership: %v", err)
	}
	// The stored record is a copy.
	recs := r.Records()
	recs[0].Certificate.Name = "changed"
	if r.Records()[0].Certificate.Name != "kitchen" {
		t.Error("Records returned the stored record, not a copy")
	}
}

func TestRedemptionsPrune(t *testing.T) {
	f := newFixture(t)
	end := testExpiry.Add(MaxDelegatedValidity + ClockSkew)
	for _, tc := range []struct {
		name string
		now  time.Time
		want int
	}{
		{"while certificates may be valid", end.Add(-time.Second), 0},
		{"once none can be", end, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r Redemptions
			if _, err := r.Merge(f.c, f.m); err != nil {
				t.Fatal(err)
			}
			if got := r.Prune(tc.now); got != tc.want || r.Len() != 1-tc.want {
				t.Errorf("Prune = %d, Len = %d; want %d pruned", got, r.Len(), tc.want)
			}
		})
	}
}

// testRedemptions returns a set with two records.
func testRedemptions(t testing.TB, f *fixture) *Redemptions {
	t.Helper()
	inv2, err := NewInvitation(f.root, f.c, InviteOptions{Name: "attic", IPv4: f.c.IPv4.Addr().Next(), Expires: testExpiry}, detRand(10))
	if err != nil {
		t.Fatal(err)
	}
	m2, err := inv2.Issue(nodeKey(t, 3), t0, 0, detRand(11))
	if err != nil {
		t.Fatal(err)
	}
	r := new(Redemptions)
	for _, m := range []*Membership{f.m, m2} {
		if _, err := r.Merge(f.c, m); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func TestRedemptionsRoundTrip(t *testing.T) {
	f := newFixture(t)
	r := testRedemptions(t, f)
	b := mustMarshal(t, r)
	var got Redemptions
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Records(), r.Records()) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got.Records(), r.Records())
	}
	if again := mustMarshal(t, &got); !bytes.Equal(again, b) {
		t.Error("encoding is not canonical")
	}
	var empty Redemptions
	if err := empty.UnmarshalBinary(mustMarshal(t, &empty)); err != nil || empty.Len() != 0 {
		t.Errorf("empty set: %v, %d records", err, empty.Len())
	}
}

func malformedRedemptions(t testing.TB, f *fixture) []byteCase {
	recs := testRedemptions(t, f).Records()
	enc := func(ms ...*Membership) []byte {
		e := encoder{}
		e.header(redemptionsMagic)
		e.U32(uint32(len(ms)))
		for _, m := range ms {
			e.Bytes16(mustMarshal(t, m))
		}
		return e.Bytes()
	}
	good := enc(recs...)
	return []byteCase{
		{"empty", nil},
		{"truncated", good[:len(good)-1]},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"huge count", setByte(good, 5, 0xff)},
		{"unsorted", enc(recs[1], recs[0])},
		{"duplicate", enc(recs[0], recs[0])},
		{"root-signed record", enc(f.renewed(t))},
		{"empty record", append(enc()[:8], 1, 0, 0)},
		{"oversized", make([]byte, MaxRedemptionsSize+1)},
	}
}

func TestUnmarshalRedemptionsMalformed(t *testing.T) {
	f := newFixture(t)
	for _, tc := range malformedRedemptions(t, f) {
		t.Run(tc.name, func(t *testing.T) {
			r := testRedemptions(t, f)
			checkErr(t, r.UnmarshalBinary(tc.b), ErrMalformed)
			if r.Len() != 2 {
				t.Error("UnmarshalBinary changed the set on error")
			}
		})
	}
}
