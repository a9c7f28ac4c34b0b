package membership

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"io"
	"net/netip"
	"slices"
)

// DefaultIPv4Prefix is the IPv4 prefix of a community created without one:
// the shared address space of RFC 6598, which home networks do not use.
var DefaultIPv4Prefix = netip.MustParsePrefix("100.64.0.0/10")

// Shortest and longest IPv4 prefix a community may use.
const (
	minPrefixBits = 8
	maxPrefixBits = 30
)

// base32Lower is lowercase RFC 4648 base32 without padding: IDs are valid DNS
// labels and safe in file names and URLs.
var base32Lower = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// CommunityID identifies a community: the first 10 bytes of the SHA-256 hash
// of its root public key.
type CommunityID [10]byte

// String returns the ID in lowercase base32 without padding (16
// characters).
func (id CommunityID) String() string { return base32Lower.EncodeToString(id[:]) }

// NodeID returns the node ID of an X25519 public key: the first 16 bytes of
// its SHA-256 hash in lowercase base32 without padding (26 characters), the
// same ID the node's state reports.
func NodeID(nodeKey [32]byte) string {
	sum := sha256.Sum256(nodeKey[:])
	return base32Lower.EncodeToString(sum[:16])
}

// Community is the public description of a community, everything a box needs
// to verify its members. The ID and the IPv6 prefix are derived from the root
// key (see [Community.ID] and [Community.IPv6]), so they cannot disagree with
// it. A Community is a value; its methods do not modify it.
type Community struct {
	// Name is the human-readable name: 1 to 63 bytes of UTF-8 without
	// control characters or surrounding spaces.
	Name string

	// RootKey is the community root signing key. Holding its private half
	// makes a box an administrator: it can invite, renew and revoke.
	RootKey ed25519.PublicKey

	// IPv4 is the prefix member addresses come from: an IPv4 prefix of 8 to
	// 30 bits with the host bits zero, such as DefaultIPv4Prefix.
	IPv4 netip.Prefix
}

// NewCommunity creates a community with a fresh root key and returns it with
// the private root key. A zero v4 means DefaultIPv4Prefix. A nil rand means
// crypto/rand.
func NewCommunity(name string, v4 netip.Prefix, rand io.Reader) (Community, ed25519.PrivateKey, error) {
	if v4 == (netip.Prefix{}) {
		v4 = DefaultIPv4Prefix
	}
	pub, priv, err := ed25519.GenerateKey(randOrDefault(rand))
	if err != nil {
		return Community{}, nil, fmt.Errorf("creating community: generating root key: %w", err)
	}
	c := Community{Name: name, RootKey: pub, IPv4: v4}
	if err := c.Validate(); err != nil {
		return Community{}, nil, fmt.Errorf("creating community: %w", err)
	}
	return c, priv, nil
}

// Validate reports whether every field of c is valid, naming the first
// field that is not.
func (c Community) Validate() error {
	if err := checkName(c.Name); err != nil {
		return fmt.Errorf("community name %q: %w", c.Name, err)
	}
	if len(c.RootKey) != ed25519.PublicKeySize {
		return fmt.Errorf("root key: %d bytes, want %d", len(c.RootKey), ed25519.PublicKeySize)
	}
	p := c.IPv4
	switch {
	case !p.IsValid() || !p.Addr().Is4():
		return fmt.Errorf("ipv4 prefix %v: not an IPv4 prefix", p)
	case p.Bits() < minPrefixBits || p.Bits() > maxPrefixBits:
		return fmt.Errorf("ipv4 prefix %v: length must be /%d to /%d", p, minPrefixBits, maxPrefixBits)
	case p.Masked() != p:
		return fmt.Errorf("ipv4 prefix %v: host bits are set, did you mean %v", p, p.Masked())
	}
	return nil
}

// ID returns the community ID derived from the root key.
func (c Community) ID() CommunityID {
	sum := sha256.Sum256(c.RootKey)
	return CommunityID(sum[:10])
}

// IPv6 returns the community's unique local /48 (RFC 4193, section 3.1):
// fd followed by the first 40 bits of SHA-256("cloudbox ula" || root key).
// Derived from the root key, it is the same on every box and needs no
// configuration.
func (c Community) IPv6() netip.Prefix {
	sum := sha256.Sum256(append([]byte("cloudbox ula"), c.RootKey...))
	var a [16]byte
	a[0] = 0xfd
	copy(a[1:6], sum[:5])
	return netip.PrefixFrom(netip.AddrFrom16(a), 48)
}

// NodeIPv6 returns the overlay IPv6 address of the node with the X25519
// public key pub: the community /48, subnet 0, and the first 64 bits of
// SHA-256(pub) as interface ID. It depends only on the key, so it never
// changes and needs no certificate field.
func (c Community) NodeIPv6(pub [32]byte) netip.Addr {
	a := c.IPv6().Addr().As16()
	sum := sha256.Sum256(pub[:])
	copy(a[8:], sum[:8])
	return netip.AddrFrom16(a)
}

// Equal reports whether c and o describe the same community.
func (c Community) Equal(o Community) bool {
	return c.Name == o.Name && bytes.Equal(c.RootKey, o.RootKey) && c.IPv4 == o.IPv4
}

// clone returns c with its own copy of the root key.
func (c Community) clone() Community {
	c.RootKey = slices.Clone(c.RootKey)
	return c
}

// community encodes a valid c: name, root key, prefix address, prefix bits.
func (e *encoder) community(c Community) {
	e.Str8(c.Name)
	e.Raw(c.RootKey)
	e.addr4(c.IPv4.Addr())
	e.U8(uint8(c.IPv4.Bits()))
}

func (d *decoder) community() Community {
	var c Community
	c.Name = d.Str8("community name")
	c.RootKey = d.publicKey("root key")
	addr := d.addr4("ipv4 prefix")
	bits := d.U8("ipv4 prefix length")
	if d.Err() == nil && bits > 32 {
		d.Failf("ipv4 prefix length %d is more than 32", bits)
	}
	c.IPv4 = netip.PrefixFrom(addr, int(bits))
	if d.Err() == nil {
		if err := c.Validate(); err != nil {
			d.Failf("%w", err)
		}
	}
	return c
}

// checkRootKey reports whether root is the private key of c's root key.
func checkRootKey(root ed25519.PrivateKey, c Community) error {
	if len(root) != ed25519.PrivateKeySize {
		return fmt.Errorf("root key: %d bytes, want %d", len(root), ed25519.PrivateKeySize)
	}
	if !bytes.Equal(root.Public().(ed25519.PublicKey), c.RootKey) {
		return fmt.Errorf("%w: the key is not the root key of community %s", ErrWrongCommunity, c.ID())
	}
	return nil
}

func randOrDefault(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}
