package membership

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"
)

// MaxCertificateSize bounds the encoding of a Certificate; the largest
// valid one is 764 bytes.
const MaxCertificateSize = 2 << 10

const certMagic = "CBC1"

// Certificate binds a node key to a name, an IPv4 address and groups in a
// community for a time. It is signed either by the community root key or
// by the key of the invitation it was issued with (see [Membership]).
//
// The encoding is described in the package comment; MarshalBinary and
// UnmarshalBinary accept only valid certificates, and every valid
// certificate has exactly one encoding.
type Certificate struct {
	// Version is the encoding version, 1.
	Version uint8

	// CommunityID is the ID of the community the certificate is for.
	CommunityID CommunityID

	// Serial is random; revocation lists may name it.
	Serial [8]byte

	// Name is the node name: 1 to 63 bytes of UTF-8 without control
	// characters or surrounding spaces.
	Name string

	// NodeKey is the node's X25519 public key, its WireGuard static key;
	// never all zero.
	NodeKey [32]byte

	// IPv4 is the node's overlay IPv4 address. Its IPv6 address is derived
	// from NodeKey, see [Community.NodeIPv6].
	IPv4 netip.Addr

	// Groups are at most 16 names of 1 to 32 characters [a-z0-9-], in
	// strictly ascending order. Nil and empty are the same.
	Groups []string

	// NotBefore and NotAfter bound the validity: whole seconds between 1970
	// and 9999, NotBefore before NotAfter.
	NotBefore time.Time
	NotAfter  time.Time

	// IssuerKey is the ed25519 key that signed the certificate: the
	// community root key or an invitation key.
	IssuerKey ed25519.PublicKey

	// Signature is IssuerKey's signature of the encoding up to, and not
	// including, the signature.
	Signature [ed25519.SignatureSize]byte
}

// NodeID returns the node ID of the certificate's node key.
func (c *Certificate) NodeID() string { return NodeID(c.NodeKey) }

// validate checks every field against the limits of the encoding.
func (c *Certificate) validate() error {
	if c.Version != formatVersion {
		return fmt.Errorf("version %d, want %d", c.Version, formatVersion)
	}
	if err := checkName(c.Name); err != nil {
		return fmt.Errorf("name %q: %w", c.Name, err)
	}
	if c.NodeKey == [32]byte{} {
		return errors.New("node key: all zero")
	}
	if err := checkIPv4(c.IPv4); err != nil {
		return err
	}
	if err := checkGroups(c.Groups); err != nil {
		return err
	}
	if err := checkTime("not before", c.NotBefore); err != nil {
		return err
	}
	if err := checkTime("not after", c.NotAfter); err != nil {
		return err
	}
	if !c.NotBefore.Before(c.NotAfter) {
		return fmt.Errorf("not after %s is not after not before %s", c.NotAfter.Format(time.RFC3339), c.NotBefore.Format(time.RFC3339))
	}
	if len(c.IssuerKey) != ed25519.PublicKeySize {
		return fmt.Errorf("issuer key: %d bytes, want %d", len(c.IssuerKey), ed25519.PublicKeySize)
	}
	return nil
}

// signed returns the encoding of a valid c without the signature.
func (c *Certificate) signed() []byte {
	e := newEncoder(256)
	e.header(certMagic)
	e.Raw(c.CommunityID[:])
	e.Raw(c.Serial[:])
	e.Str8(c.Name)
	e.Raw(c.NodeKey[:])
	e.addr4(c.IPv4)
	e.groups(c.Groups)
	e.unix(c.NotBefore)
	e.unix(c.NotAfter)
	e.Raw(c.IssuerKey)
	return e.Bytes()
}

// MarshalBinary returns the encoding of c, or an error naming the first
// invalid field.
func (c *Certificate) MarshalBinary() ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("encoding certificate: %w", err)
	}
	return append(c.signed(), c.Signature[:]...), nil
}

// UnmarshalBinary parses b into c. It accepts only the canonical encoding of
// a valid certificate (ErrMalformed otherwise) and leaves c unchanged on
// error. It does not verify the signature.
func (c *Certificate) UnmarshalBinary(b []byte) error {
	cert, err := parseCertificate(b)
	if err != nil {
		return malformed("certificate", err)
	}
	*c = cert
	return nil
}

func parseCertificate(b []byte) (Certificate, error) {
	if len(b) > MaxCertificateSize {
		return Certificate{}, fmt.Errorf("%d bytes, at most %d allowed", len(b), MaxCertificateSize)
	}
	d := newDecoder(b)
	c, err := d.certificate(), d.Done()
	if err == nil {
		err = c.validate()
	}
	return c, err
}

func (d *decoder) certificate() Certificate {
	var c Certificate
	d.header(certMagic)
	c.Version = formatVersion
	d.Array(c.CommunityID[:], "community id")
	d.Array(c.Serial[:], "serial")
	c.Name = d.Str8("name")
	d.Array(c.NodeKey[:], "node key")
	c.IPv4 = d.addr4("ipv4")
	c.Groups = d.groups()
	c.NotBefore = d.unix("not before")
	c.NotAfter = d.unix("not after")
	c.IssuerKey = d.publicKey("issuer key")
	d.Array(c.Signature[:], "signature")
	return c
}

// sign fills in IssuerKey, Serial and Signature of an otherwise complete c.
func (c *Certificate) sign(key ed25519.PrivateKey, rand io.Reader) error {
	if _, err := io.ReadFull(randOrDefault(rand), c.Serial[:]); err != nil {
		return fmt.Errorf("generating serial: %w", err)
	}
	c.IssuerKey = key.Public().(ed25519.PublicKey)
	if err := c.validate(); err != nil {
		return fmt.Errorf("signing certificate: %w", err)
	}
	copy(c.Signature[:], ed25519.Sign(key, c.signed()))
	return nil
}

// checkSignature verifies the signature of a valid c by its IssuerKey.
func (c *Certificate) checkSignature() error {
	if !verifySignature(c.IssuerKey, c.signed(), c.Signature) {
		return fmt.Errorf("certificate: %w", ErrBadSignature)
	}
	return nil
}

func (c *Certificate) clone() Certificate {
	n := *c
	n.Groups = slices.Clone(c.Groups)
	n.IssuerKey = slices.Clone(c.IssuerKey)
	return n
}
