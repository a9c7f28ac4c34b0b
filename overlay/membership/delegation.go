package membership

import (
	"crypto/ed25519"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// MaxDelegationSize bounds the encoding of a Delegation; the largest valid
// one is 732 bytes.
const MaxDelegationSize = 2 << 10

const delegationMagic = "CBD1"

// Delegation is the part of an invitation that the root key signs: it lets
// the holder of the invitation key issue exactly one kind of certificate
// (this name, address and groups) until Expires. Members check certificates
// signed by an invitation key against it, see [VerifyMembership].
type Delegation struct {
	// Version is the encoding version, 1.
	Version uint8

	// CommunityID is the ID of the community that invites.
	CommunityID CommunityID

	// InviteID is random and names the invitation: one node key may
	// redeem it (see [Redemptions]) and revocation lists may name it.
	InviteID [16]byte

	// InviteKey is the public half of the invitation key.
	InviteKey ed25519.PublicKey

	// Name, IPv4 and Groups are what the certificate must say, with the
	// limits of the same Certificate fields.
	Name   string
	IPv4   netip.Addr
	Groups []string

	// Expires is the end of redemption: a certificate must start before it
	// (and may last at most MaxDelegatedValidity after it).
	Expires time.Time

	// Signature is the root key's signature of the encoding up to, and not
	// including, the signature.
	Signature [ed25519.SignatureSize]byte
}

func (dl *Delegation) validate() error {
	if dl.Version != formatVersion {
		return fmt.Errorf("version %d, want %d", dl.Version, formatVersion)
	}
	if len(dl.InviteKey) != ed25519.PublicKeySize {
		return fmt.Errorf("invite key: %d bytes, want %d", len(dl.InviteKey), ed25519.PublicKeySize)
	}
	if err := checkName(dl.Name); err != nil {
		return fmt.Errorf("name %q: %w", dl.Name, err)
	}
	if err := checkIPv4(dl.IPv4); err != nil {
		return err
	}
	if err := checkGroups(dl.Groups); err != nil {
		return err
	}
	return checkTime("expires", dl.Expires)
}

func (dl *Delegation) signed() []byte {
	e := newEncoder(256)
	e.header(delegationMagic)
	e.Raw(dl.CommunityID[:])
	e.Raw(dl.InviteID[:])
	e.Raw(dl.InviteKey)
	e.Str8(dl.Name)
	e.addr4(dl.IPv4)
	e.groups(dl.Groups)
	e.unix(dl.Expires)
	return e.Bytes()
}

// MarshalBinary returns the encoding of dl, or an error naming the first
// invalid field.
func (dl *Delegation) MarshalBinary() ([]byte, error) {
	if err := dl.validate(); err != nil {
		return nil, fmt.Errorf("encoding delegation: %w", err)
	}
	return append(dl.signed(), dl.Signature[:]...), nil
}

// UnmarshalBinary parses b into dl. It accepts only the canonical encoding of
// a valid delegation (ErrMalformed otherwise) and leaves dl unchanged on
// error. It does not verify the signature.
func (dl *Delegation) UnmarshalBinary(b []byte) error {
	n, err := parseDelegation(b)
	if err != nil {
		return malformed("delegation", err)
	}
	*dl = n
	return nil
}

func parseDelegation(b []byte) (Delegation, error) {
	if len(b) > MaxDelegationSize {
		return Delegation{}, fmt.Errorf("%d bytes, at most %d allowed", len(b), MaxDelegationSize)
	}
	d := newDecoder(b)
	dl, err := d.delegation(), d.Done()
	if err == nil {
		err = dl.validate()
	}
	return dl, err
}

func (d *decoder) delegation() Delegation {
	var dl Delegation
	d.header(delegationMagic)
	dl.Version = formatVersion
	d.Array(dl.CommunityID[:], "community id")
	d.Array(dl.InviteID[:], "invite id")
	dl.InviteKey = d.publicKey("invite key")
	dl.Name = d.Str8("name")
	dl.IPv4 = d.addr4("ipv4")
	dl.Groups = d.groups()
	dl.Expires = d.unix("expires")
	d.Array(dl.Signature[:], "signature")
	return dl
}

// checkSignature verifies that root signed a valid dl.
func (dl *Delegation) checkSignature(root ed25519.PublicKey) error {
	if !verifySignature(root, dl.signed(), dl.Signature) {
		return fmt.Errorf("delegation: %w: not signed by the community root key", ErrBadSignature)
	}
	return nil
}

func (dl *Delegation) clone() *Delegation {
	n := *dl
	n.InviteKey = slices.Clone(dl.InviteKey)
	n.Groups = slices.Clone(dl.Groups)
	return &n
}
