package membership

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"io"
	"slices"
	"time"
)

// Validity limits.
const (
	// DefaultValidity is the lifetime of a certificate when the caller
	// passes zero.
	DefaultValidity = 365 * 24 * time.Hour

	// MaxDelegatedValidity bounds certificates signed by an invitation key:
	// they must end at most this long after the invitation expires. The
	// holder of an invitation token can backdate a certificate to before
	// the expiry, but cannot make it last longer than a timely redemption
	// could.
	MaxDelegatedValidity = 400 * 24 * time.Hour

	// ClockSkew is how far apart the clocks of two boxes may be: a
	// certificate is accepted this long before it starts and after it ends.
	ClockSkew = 5 * time.Minute
)

// MaxMembershipSize bounds the encoding of a Membership.
const MaxMembershipSize = 2 << 10

const membershipMagic = "CBM1"

// Membership is the chain a box presents to prove it is a member: its
// certificate, and, when the certificate was issued with an invitation, the
// invitation's delegation. It does not carry the community: the verifier
// uses its own, the only trust anchor.
type Membership struct {
	// Delegation is nil when the root key signed the certificate (a renewed
	// certificate); otherwise the invitation key named in it did.
	Delegation *Delegation

	// Certificate is the node's certificate.
	Certificate Certificate
}

// NodeID returns the node ID of the certificate's node key.
func (m *Membership) NodeID() string { return m.Certificate.NodeID() }

func (m *Membership) validate() error {
	if m.Delegation != nil {
		if err := m.Delegation.validate(); err != nil {
			return fmt.Errorf("delegation: %w", err)
		}
	}
	if err := m.Certificate.validate(); err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	return nil
}

// MarshalBinary returns the encoding of m, or an error naming the first
// invalid field.
func (m *Membership) MarshalBinary() ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("encoding membership: %w", err)
	}
	e := newEncoder(1024)
	e.header(membershipMagic)
	if m.Delegation != nil {
		e.Bytes16(append(m.Delegation.signed(), m.Delegation.Signature[:]...))
	} else {
		e.U16(0)
	}
	e.Bytes16(append(m.Certificate.signed(), m.Certificate.Signature[:]...))
	return e.Bytes(), nil
}

// UnmarshalBinary parses b into m. It accepts only the canonical encoding of
// a valid membership (ErrMalformed otherwise) and leaves m unchanged on
// error. It verifies nothing: see [VerifyMembership].
func (m *Membership) UnmarshalBinary(b []byte) error {
	if len(b) > MaxMembershipSize {
		return malformed("membership", fmt.Errorf("%d bytes, at most %d allowed", len(b), MaxMembershipSize))
	}
	d := newDecoder(b)
	n, err := d.membership(), d.Done()
	if err != nil {
		return malformed("membership", err)
	}
	*m = n
	return nil
}

// membership reads a length-prefixed delegation (empty for none) and a
// length-prefixed certificate.
func (d *decoder) membership() Membership {
	var m Membership
	d.header(membershipMagic)
	if raw := d.Bytes16("delegation"); len(raw) > 0 {
		dl, err := parseDelegation(raw)
		if err != nil {
			d.Failf("delegation: %w", err)
		}
		m.Delegation = &dl
	}
	var err error
	if m.Certificate, err = parseCertificate(d.Bytes16("certificate")); err != nil {
		d.Failf("certificate: %w", err)
	}
	return m
}

func (m *Membership) clone() *Membership {
	n := &Membership{Certificate: m.Certificate.clone()}
	if m.Delegation != nil {
		n.Delegation = m.Delegation.clone()
	}
	return n
}

// VerifyMembership reports whether m proves membership in c at now. It
// accepts a certificate signed by the root key of c, or one signed by an
// invitation key together with the delegation of that key signed by the root
// key, where the certificate says exactly what the delegation grants and
// starts before the delegation expires. The certificate must be for c, hold
// an address in c's IPv4 prefix, be valid at now give or take ClockSkew, and
// not be revoked by revoked (nil means none; it must already be verified,
// see [RevocationList.Verify]).
//
// VerifyMembership does not know which invitations were redeemed: whoever
// accepts members also asks [Redemptions.Check].
func VerifyMembership(c Community, m *Membership, now time.Time, revoked *RevocationList) error {
	if err := verifyMembership(c, m, now, revoked); err != nil {
		if m != nil {
			return fmt.Errorf("verifying membership of node %s: %w", m.NodeID(), err)
		}
		return fmt.Errorf("verifying membership: %w", err)
	}
	return nil
}

func verifyMembership(c Community, m *Membership, now time.Time, revoked *RevocationList) error {
	if err := verifyChain(c, m); err != nil {
		return err
	}
	cert := &m.Certificate
	if now.Add(ClockSkew).Before(cert.NotBefore) {
		return fmt.Errorf("certificate %w: it starts at %s", ErrNotYetValid, cert.NotBefore.Format(time.RFC3339))
	}
	if !now.Add(-ClockSkew).Before(cert.NotAfter) {
		return fmt.Errorf("certificate %w at %s", ErrExpired, cert.NotAfter.Format(time.RFC3339))
	}
	if revoked != nil {
		if revoked.CommunityID != c.ID() {
			return fmt.Errorf("revocation list is for community %s: %w", revoked.CommunityID, ErrWrongCommunity)
		}
		if r, ok := revoked.Lookup(m); ok {
			return fmt.Errorf("%s %w (sequence %d): %q", r.Kind, ErrRevoked, revoked.Sequence, r.Reason)
		}
	}
	return nil
}

// verifyChain checks everything about m that does not depend on the time:
// structure, community, signatures, address, and the match between a
// delegation and the certificate issued with it.
func verifyChain(c Community, m *Membership) error {
	if m == nil {
		return fmt.Errorf("%w: no membership", ErrMalformed)
	}
	if err := m.validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	cert := &m.Certificate
	if id := c.ID(); cert.CommunityID != id {
		return fmt.Errorf("certificate is for community %s, not %s: %w", cert.CommunityID, id, ErrWrongCommunity)
	}
	if !c.IPv4.Contains(cert.IPv4) {
		return fmt.Errorf("ipv4 %v: %w %v", cert.IPv4, ErrOutsidePrefix, c.IPv4)
	}
	dl := m.Delegation
	if dl == nil {
		if !bytes.Equal(cert.IssuerKey, c.RootKey) {
			return fmt.Errorf("certificate: %w: issuer is neither the root key nor an invitation key", ErrBadSignature)
		}
		return cert.checkSignature()
	}
	if dl.CommunityID != cert.CommunityID {
		return fmt.Errorf("delegation is for community %s, not %s: %w", dl.CommunityID, cert.CommunityID, ErrWrongCommunity)
	}
	if err := dl.checkSignature(c.RootKey); err != nil {
		return err
	}
	if !bytes.Equal(cert.IssuerKey, dl.InviteKey) {
		return fmt.Errorf("certificate: %w: issuer is not the invitation key", ErrBadSignature)
	}
	if err := cert.checkSignature(); err != nil {
		return err
	}
	switch {
	case cert.Name != dl.Name:
		return fmt.Errorf("%w: name %q, invitation %q", ErrMismatch, cert.Name, dl.Name)
	case cert.IPv4 != dl.IPv4:
		return fmt.Errorf("%w: ipv4 %v, invitation %v", ErrMismatch, cert.IPv4, dl.IPv4)
	case !slices.Equal(cert.Groups, dl.Groups):
		return fmt.Errorf("%w: groups %q, invitation %q", ErrMismatch, cert.Groups, dl.Groups)
	case !cert.NotBefore.Before(dl.Expires):
		return fmt.Errorf("certificate starts at %s, but the invitation %w at %s",
			cert.NotBefore.Format(time.RFC3339), ErrExpired, dl.Expires.Format(time.RFC3339))
	case cert.NotAfter.After(dl.Expires.Add(MaxDelegatedValidity)):
		return fmt.Errorf("%w: certificate ends at %s, after the latest end the invitation allows, %s", ErrMismatch,
			cert.NotAfter.Format(time.RFC3339), dl.Expires.Add(MaxDelegatedValidity).Format(time.RFC3339))
	}
	return nil
}

// Renew issues a new certificate for the member m, signed directly by the
// root key: same node key, name, address and groups, a new serial, valid
// from now for validity (zero means DefaultValidity). m must verify at now
// against c and revoked. A nil rand means crypto/rand.
func Renew(root ed25519.PrivateKey, c Community, m *Membership, revoked *RevocationList, now time.Time, validity time.Duration, rand io.Reader) (*Membership, error) {
	if err := renew(root, c, m, revoked, now, validity); err != nil {
		return nil, fmt.Errorf("renewing certificate: %w", err)
	}
	old := &m.Certificate
	cert := Certificate{
		Version:     formatVersion,
		CommunityID: c.ID(),
		Name:        old.Name,
		NodeKey:     old.NodeKey,
		IPv4:        old.IPv4,
		Groups:      slices.Clone(old.Groups),
		NotBefore:   truncateTime(now),
		NotAfter:    truncateTime(now.Add(validityOrDefault(validity))),
	}
	if err := cert.sign(root, rand); err != nil {
		return nil, fmt.Errorf("renewing certificate of node %s: %w", m.NodeID(), err)
	}
	return &Membership{Certificate: cert}, nil
}

func renew(root ed25519.PrivateKey, c Community, m *Membership, revoked *RevocationList, now time.Time, validity time.Duration) error {
	if err := checkRootKey(root, c); err != nil {
		return err
	}
	if validity < 0 {
		return fmt.Errorf("validity %v is negative", validity)
	}
	return VerifyMembership(c, m, now, revoked)
}

func validityOrDefault(v time.Duration) time.Duration {
	if v == 0 {
		return DefaultValidity
	}
	return v
}

// NeedsRenewal reports whether less than a third of cert's validity remains
// at now (or it has ended).
func NeedsRenewal(cert *Certificate, now time.Time) bool {
	// Renew when 3*(NotAfter-now) < NotAfter-NotBefore, computed in seconds
	// and nanoseconds so that long certificates cannot overflow a
	// time.Duration. The remaining time is sec minus frac nanoseconds.
	sec := cert.NotAfter.Unix() - now.Unix()
	frac := int64(now.Nanosecond())
	total := cert.NotAfter.Unix() - cert.NotBefore.Unix()
	d := 3*sec - total // renew when d < 3*frac/1e9, which is in [0, 3)
	return d < 0 || d < 3 && d*1e9 < 3*frac
}
