package membership

import (
	"crypto/sha256"
	"net/netip"
	"strings"
	"testing"
)

func TestNewCommunity(t *testing.T) {
	c, root, err := NewCommunity("Test Community", testPrefix, detRand(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkRootKey(root, c); err != nil {
		t.Errorf("root key does not match the community: %v", err)
	}
	sum := sha256.Sum256(c.RootKey)
	if got, want := c.ID().String(), base32Lower.EncodeToString(sum[:10]); got != want || len(got) != 16 {
		t.Errorf("ID() = %q, want %q (16 characters)", got, want)
	}
	ula := c.IPv6()
	if ula.Bits() != 48 || ula.Addr().As16()[0] != 0xfd || ula.Masked() != ula {
		t.Errorf("IPv6() = %v, want an fd00::/8 /48", ula)
	}
	ula2 := sha256.Sum256(append([]byte("cloudbox ula"), c.RootKey...))
	if got := ula.Addr().As16(); [5]byte(got[1:6]) != [5]byte(ula2[:5]) {
		t.Errorf("IPv6() = %v, global ID is not SHA-256(\"cloudbox ula\"+root key)", ula)
	}

	def, _, err := NewCommunity("default", netip.Prefix{}, detRand(1))
	if err != nil {
		t.Fatal(err)
	}
	if def.IPv4 != DefaultIPv4Prefix {
		t.Errorf("zero prefix gave %v, want %v", def.IPv4, DefaultIPv4Prefix)
	}
}

func TestNodeIPv6(t *testing.T) {
	c, _, err := NewCommunity("Test Community", testPrefix, detRand(1))
	if err != nil {
		t.Fatal(err)
	}
	k1, k2 := nodeKey(t, 1), nodeKey(t, 2)
	a1, a2 := c.NodeIPv6(k1), c.NodeIPv6(k2)
	if !c.IPv6().Contains(a1) || !c.IPv6().Contains(a2) {
		t.Errorf("addresses %v, %v outside %v", a1, a2, c.IPv6())
	}
	if b := a1.As16(); b[6] != 0 || b[7] != 0 {
		t.Errorf("%v: subnet ID is not 0", a1)
	}
	sum := sha256.Sum256(k1[:])
	if b := a1.As16(); [8]byte(b[8:]) != [8]byte(sum[:8]) {
		t.Errorf("%v: interface ID is not the first 64 bits of SHA-256(key)", a1)
	}
	if a1 == a2 || a1 != c.NodeIPv6(k1) {
		t.Errorf("addresses not stable or not distinct: %v %v", a1, a2)
	}
	if id := NodeID(k1); len(id) != 26 || id != strings.ToLower(id) {
		t.Errorf("NodeID = %q, want 26 lowercase characters", id)
	}
}

func TestNewCommunityInvalid(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cname  string
		prefix string
	}{
		{"empty name", "", "198.18.0.0/15"},
		{"long name", strings.Repeat("x", 64), "198.18.0.0/15"},
		{"leading space", " x", "198.18.0.0/15"},
		{"control character", "a\x01b", "198.18.0.0/15"},
		{"bad utf-8", "a\xffb", "198.18.0.0/15"},
		{"ipv6 prefix", "x", "fd00::/48"},
		{"prefix too long", "x", "198.18.0.0/31"},
		{"prefix too short", "x", "198.0.0.0/7"},
		{"host bits", "x", "198.18.0.1/15"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := NewCommunity(tc.cname, netip.MustParsePrefix(tc.prefix), detRand(1)); err == nil {
				t.Fatal("NewCommunity succeeded, want an error")
			}
		})
	}
}
