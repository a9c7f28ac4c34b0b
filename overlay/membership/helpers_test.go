package membership

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"errors"
	"io"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

var (
	testPrefix = netip.MustParsePrefix("198.18.0.0/15")
	t0         = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	testExpiry = t0.Add(7 * 24 * time.Hour)
)

// detRand returns a deterministic random stream, so that keys, IDs and
// serials (and with them every encoding) are reproducible.
func detRand(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

// nodeKey returns the X25519 public key of a private key filled with b.
func nodeKey(t testing.TB, b byte) [32]byte {
	t.Helper()
	k, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return [32]byte(k.PublicKey().Bytes())
}

// fixture is a community with one invitation, redeemed at t0.
type fixture struct {
	c    Community
	root ed25519.PrivateKey
	inv  *Invitation
	key  [32]byte    // node key that redeemed inv
	m    *Membership // issued with inv at t0
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	r := detRand(1)
	c, root, err := NewCommunity("Test Community", testPrefix, r)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := NewInvitation(root, c, InviteOptions{
		Name:    "kitchen",
		IPv4:    netip.MustParseAddr("198.18.0.10"),
		Groups:  []string{"media", "admin"},
		Expires: testExpiry,
		Bootstrap: []netip.AddrPort{
			netip.MustParseAddrPort("192.168.1.20:51820"),
			netip.MustParseAddrPort("[2001:db8::1]:51820"),
		},
	}, r)
	if err != nil {
		t.Fatal(err)
	}
	key := nodeKey(t, 0x42)
	m, err := inv.Issue(key, t0, 0, r)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{c: c, root: root, inv: inv, key: key, m: m}
}

// otherRoot returns a root key of another community.
func otherRoot(t testing.TB) (Community, ed25519.PrivateKey) {
	t.Helper()
	c, root, err := NewCommunity("Other", testPrefix, detRand(99))
	if err != nil {
		t.Fatal(err)
	}
	return c, root
}

// withCert returns a copy of f.m whose certificate edit changed and the
// invitation key signed again.
func (f *fixture) withCert(edit func(*Certificate)) *Membership {
	m := f.m.clone()
	edit(&m.Certificate)
	copy(m.Certificate.Signature[:], ed25519.Sign(f.inv.key, m.Certificate.signed()))
	return m
}

// withDelegation returns a copy of f.m whose delegation edit changed and key
// signed again.
func (f *fixture) withDelegation(key ed25519.PrivateKey, edit func(*Delegation)) *Membership {
	m := f.m.clone()
	edit(m.Delegation)
	copy(m.Delegation.Signature[:], ed25519.Sign(key, m.Delegation.signed()))
	return m
}

// renewed returns f.m renewed by the root key at t0.
func (f *fixture) renewed(t testing.TB) *Membership {
	t.Helper()
	m, err := Renew(f.root, f.c, f.m, nil, t0, 0, detRand(2))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustMarshal(t testing.TB, v interface{ MarshalBinary() ([]byte, error) }) []byte {
	t.Helper()
	b, err := v.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawCert encodes c without validating it, to build malformed inputs.
func rawCert(c Certificate) []byte { return append(c.signed(), c.Signature[:]...) }

func rawDelegation(dl Delegation) []byte { return append(dl.signed(), dl.Signature[:]...) }

// checkErr fails unless err matches want: nil, or an error wrapping want.
func checkErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("got error %v, want none", err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("got error %v, want %v", err, want)
	}
}

// flip returns a copy of b with the byte at i changed.
func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 0x20
	return b
}
