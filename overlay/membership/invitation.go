package membership

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// TokenPrefix starts every invitation token.
const TokenPrefix = "cloudbox-invite:"

// MaxInvitationSize bounds the binary encoding inside a token; the largest
// valid one is 1177 bytes.
const MaxInvitationSize = 2 << 10

const invitationMagic = "CBI1"

// maxTokenLen is the length of a token holding MaxInvitationSize bytes.
var maxTokenLen = len(TokenPrefix) + base64.RawURLEncoding.EncodedLen(MaxInvitationSize)

// InviteOptions describe the member an invitation admits.
type InviteOptions struct {
	// Name is the node name of the new member (required), with the limits of
	// Certificate.Name.
	Name string

	// IPv4 is the new member's overlay address (required), inside the
	// community prefix. Choosing a free one is the caller's job.
	IPv4 netip.Addr

	// Groups are the new member's groups, with the limits of
	// Certificate.Groups except that the order does not matter. Nil means
	// none.
	Groups []string

	// Expires is the end of redemption (required): after it the token is
	// useless.
	Expires time.Time

	// Bootstrap lists at most 16 endpoints (address and UDP port, no zone)
	// where members may be reached. Nil means none: the new box must find a
	// member on its own, for example on the LAN.
	Bootstrap []netip.AddrPort
}

// Invitation is a one-time bearer token that admits one box: whoever holds
// it can issue the certificate it describes, so it must travel over a
// trusted channel (shown as a QR code, typed in). It carries the public
// community description, which the new box trusts from then on, a delegation
// signed by the root key, the invitation's private key and bootstrap
// endpoints.
//
// An Invitation is immutable and safe for concurrent use.
type Invitation struct {
	community  Community
	delegation Delegation
	key        ed25519.PrivateKey
	bootstrap  []netip.AddrPort
}

// NewInvitation creates an invitation for the member opts describes, signed
// with the root key of c. A nil rand means crypto/rand.
func NewInvitation(root ed25519.PrivateKey, c Community, opts InviteOptions, rand io.Reader) (*Invitation, error) {
	inv, err := newInvitation(root, c, opts, randOrDefault(rand))
	if err != nil {
		return nil, fmt.Errorf("creating invitation for %q: %w", opts.Name, err)
	}
	return inv, nil
}

func newInvitation(root ed25519.PrivateKey, c Community, opts InviteOptions, rand io.Reader) (*Invitation, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := checkRootKey(root, c); err != nil {
		return nil, err
	}
	if !c.IPv4.Contains(opts.IPv4) {
		return nil, fmt.Errorf("ipv4 %v: %w %v", opts.IPv4, ErrOutsidePrefix, c.IPv4)
	}
	if opts.Expires.IsZero() {
		return nil, fmt.Errorf("expires: missing")
	}
	if err := checkBootstrap(opts.Bootstrap); err != nil {
		return nil, err
	}
	invPub, invKey, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("generating invitation key: %w", err)
	}
	dl := Delegation{
		Version:     formatVersion,
		CommunityID: c.ID(),
		InviteKey:   invPub,
		Name:        opts.Name,
		IPv4:        opts.IPv4,
		Groups:      slices.Sorted(slices.Values(opts.Groups)),
		Expires:     truncateTime(opts.Expires),
	}
	if _, err := io.ReadFull(rand, dl.InviteID[:]); err != nil {
		return nil, fmt.Errorf("generating invitation id: %w", err)
	}
	if err := dl.validate(); err != nil {
		return nil, err
	}
	copy(dl.Signature[:], ed25519.Sign(root, dl.signed()))
	return &Invitation{
		community:  c.clone(),
		delegation: dl,
		key:        invKey,
		bootstrap:  slices.Clone(opts.Bootstrap),
	}, nil
}

func checkBootstrap(eps []netip.AddrPort) error {
	if len(eps) > maxBootstrap {
		return fmt.Errorf("bootstrap: %d endpoints, at most %d allowed", len(eps), maxBootstrap)
	}
	for _, ep := range eps {
		if a := ep.Addr(); !ep.IsValid() || a.IsUnspecified() || a.Zone() != "" || ep.Port() == 0 {
			return fmt.Errorf("bootstrap endpoint %v: want an address without zone and a port", ep)
		}
	}
	return nil
}

// Community returns the community the invitation is for.
func (inv *Invitation) Community() Community { return inv.community.clone() }

// Delegation returns the delegation signed by the root key.
func (inv *Invitation) Delegation() Delegation { return *inv.delegation.clone() }

// Bootstrap returns the bootstrap endpoints.
func (inv *Invitation) Bootstrap() []netip.AddrPort { return slices.Clone(inv.bootstrap) }

// Token returns the invitation as text: TokenPrefix followed by the binary
// encoding in unpadded base64url (RFC 4648, section 5).
func (inv *Invitation) Token() string {
	e := newEncoder(1024)
	e.header(invitationMagic)
	e.community(inv.community)
	e.Bytes16(append(inv.delegation.signed(), inv.delegation.Signature[:]...))
	e.Raw(inv.key.Seed())
	e.U8(uint8(len(inv.bootstrap)))
	for _, ep := range inv.bootstrap {
		if a := ep.Addr(); a.Is4() {
			e.U8(4)
			e.addr4(a)
		} else {
			e.U8(6)
			b := a.As16()
			e.Raw(b[:])
		}
		e.U16(ep.Port())
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(e.Bytes())
}

// ParseInvitation parses and checks a token made by [Invitation.Token]: its
// encoding (ErrMalformed), that the delegation is for the community in the
// token (ErrWrongCommunity), signed by its root key (ErrBadSignature), and
// matches the invitation key. It does not check the expiry, which
// [Invitation.Issue] does. Surrounding white space is not allowed.
func ParseInvitation(token string) (*Invitation, error) {
	inv, err := parseInvitation(token)
	if err != nil {
		return nil, fmt.Errorf("parsing invitation: %w", err)
	}
	return inv, nil
}

func parseInvitation(token string) (*Invitation, error) {
	body, ok := strings.CutPrefix(token, TokenPrefix)
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: token does not start with %q", ErrMalformed, TokenPrefix)
	case len(token) > maxTokenLen:
		return nil, fmt.Errorf("%w: token is %d characters long, at most %d allowed", ErrMalformed, len(token), maxTokenLen)
	case strings.ContainsAny(body, "\r\n"):
		// The base64 decoder skips line breaks, so a token would have
		// several spellings.
		return nil, fmt.Errorf("%w: token contains a line break", ErrMalformed)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("%w: token is not base64url: %w", ErrMalformed, err)
	}
	d := newDecoder(b)
	inv, err := d.invitation(), d.Done()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	c, dl := inv.community, &inv.delegation
	if dl.CommunityID != c.ID() {
		return nil, fmt.Errorf("delegation is for community %s, not %s: %w", dl.CommunityID, c.ID(), ErrWrongCommunity)
	}
	if err := dl.checkSignature(c.RootKey); err != nil {
		return nil, err
	}
	if !bytes.Equal(inv.key.Public().(ed25519.PublicKey), dl.InviteKey) {
		return nil, fmt.Errorf("%w: the invitation key is not the one the delegation names", ErrMalformed)
	}
	if !c.IPv4.Contains(dl.IPv4) {
		return nil, fmt.Errorf("ipv4 %v: %w %v", dl.IPv4, ErrOutsidePrefix, c.IPv4)
	}
	return inv, nil
}

func (d *decoder) invitation() *Invitation {
	inv := new(Invitation)
	d.header(invitationMagic)
	inv.community = d.community()
	var err error
	if inv.delegation, err = parseDelegation(d.Bytes16("delegation")); err != nil {
		d.Failf("delegation: %w", err)
	}
	var seed [ed25519.SeedSize]byte
	d.Array(seed[:], "invitation key")
	inv.key = ed25519.NewKeyFromSeed(seed[:])
	n := d.U8("bootstrap")
	if d.Err() == nil && n > maxBootstrap {
		d.Failf("bootstrap: %d endpoints, at most %d allowed", n, maxBootstrap)
	}
	for i := 0; i < int(n) && d.Err() == nil; i++ {
		var a netip.Addr
		switch fam := d.U8("bootstrap family"); fam {
		case 4:
			a = d.addr4("bootstrap address")
		case 6:
			var b [16]byte
			d.Array(b[:], "bootstrap address")
			a = netip.AddrFrom16(b)
		default:
			d.Failf("bootstrap family %d, want 4 or 6", fam)
		}
		inv.bootstrap = append(inv.bootstrap, netip.AddrPortFrom(a, d.U16("bootstrap port")))
	}
	if d.Err() == nil {
		if err := checkBootstrap(inv.bootstrap); err != nil {
			d.Failf("%w", err)
		}
	}
	return inv
}

// Issue redeems the invitation: it issues the certificate the invitation
// describes for nodeKey, signed with the invitation key, valid from now for
// validity (zero means DefaultValidity, at most MaxDelegatedValidity). It
// fails with ErrExpired once the invitation has expired. The caller then
// presents the membership to a member, who records the redemption (see
// [Redemptions.Redeem]); a second node key is refused there. A nil rand
// means crypto/rand.
func (inv *Invitation) Issue(nodeKey [32]byte, now time.Time, validity time.Duration, rand io.Reader) (*Membership, error) {
	m, err := inv.issue(nodeKey, now, validity, rand)
	if err != nil {
		return nil, fmt.Errorf("redeeming invitation for %q: %w", inv.delegation.Name, err)
	}
	return m, nil
}

func (inv *Invitation) issue(nodeKey [32]byte, now time.Time, validity time.Duration, rand io.Reader) (*Membership, error) {
	dl := &inv.delegation
	if !now.Before(dl.Expires) {
		return nil, fmt.Errorf("invitation %w at %s; ask an administrator of community %q for a new one",
			ErrExpired, dl.Expires.Format(time.RFC3339), inv.community.Name)
	}
	validity = validityOrDefault(validity)
	if validity < time.Second || validity > MaxDelegatedValidity {
		return nil, fmt.Errorf("validity %v: want 1s to %v", validity, MaxDelegatedValidity)
	}
	m := &Membership{
		Delegation: dl.clone(),
		Certificate: Certificate{
			Version:     formatVersion,
			CommunityID: dl.CommunityID,
			Name:        dl.Name,
			NodeKey:     nodeKey,
			IPv4:        dl.IPv4,
			Groups:      slices.Clone(dl.Groups),
			NotBefore:   truncateTime(now),
			NotAfter:    truncateTime(now.Add(validity)),
		},
	}
	if err := m.Certificate.sign(inv.key, rand); err != nil {
		return nil, err
	}
	return m, nil
}
