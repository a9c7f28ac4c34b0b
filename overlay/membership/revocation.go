package membership

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"fmt"
	"math"
	"slices"
	"time"
)

// MaxRevocationListSize bounds the encoding of a RevocationList; it holds at
// least 650 entries.
const MaxRevocationListSize = 64 << 10

const revocationMagic = "CBR1"

// RevocationKind says what a Revocation names.
type RevocationKind uint8

// Kinds of revocation.
const (
	// RevokeNodeKey revokes a node key: every certificate for it.
	RevokeNodeKey RevocationKind = 1
	// RevokeSerial revokes one certificate.
	RevokeSerial RevocationKind = 2
	// RevokeInvite revokes an invitation: it can no longer be redeemed,
	// and certificates issued with it are refused. A certificate the root
	// key renewed no longer names the invitation; revoke its node key.
	RevokeInvite RevocationKind = 3
)

// idLen is the length of the ID each kind names.
func (k RevocationKind) idLen() int {
	switch k {
	case RevokeNodeKey:
		return 32
	case RevokeSerial:
		return 8
	case RevokeInvite:
		return 16
	}
	return 0
}

func (k RevocationKind) String() string {
	switch k {
	case RevokeNodeKey:
		return "node key"
	case RevokeSerial:
		return "certificate serial"
	case RevokeInvite:
		return "invitation"
	}
	return fmt.Sprintf("RevocationKind(%d)", uint8(k))
}

// Revocation is one entry of a revocation list.
type Revocation struct {
	// Kind says what ID is.
	Kind RevocationKind
	// ID is a node key (32 bytes), a certificate serial (8 bytes) or an
	// invitation ID (16 bytes).
	ID []byte
	// Reason is shown to administrators: at most 64 bytes of UTF-8
	// without control characters or surrounding spaces; may be empty.
	Reason string
}

// RevokeNodeKeyEntry returns the entry that revokes a node key.
func RevokeNodeKeyEntry(nodeKey [32]byte, reason string) Revocation {
	return Revocation{Kind: RevokeNodeKey, ID: nodeKey[:], Reason: reason}
}

// RevokeSerialEntry returns the entry that revokes one certificate.
func RevokeSerialEntry(serial [8]byte, reason string) Revocation {
	return Revocation{Kind: RevokeSerial, ID: serial[:], Reason: reason}
}

// RevokeInviteEntry returns the entry that revokes an invitation.
func RevokeInviteEntry(inviteID [16]byte, reason string) Revocation {
	return Revocation{Kind: RevokeInvite, ID: inviteID[:], Reason: reason}
}

func (r *Revocation) validate() error {
	n := r.Kind.idLen()
	if n == 0 {
		return fmt.Errorf("revocation kind %d is unknown", r.Kind)
	}
	if len(r.ID) != n {
		return fmt.Errorf("%s revocation: id of %d bytes, want %d", r.Kind, len(r.ID), n)
	}
	if err := checkText(r.Reason, 0, maxReasonLen); err != nil {
		return fmt.Errorf("%s revocation: reason %q: %w", r.Kind, r.Reason, err)
	}
	return nil
}

// compareEntries orders entries by kind, then ID.
func compareEntries(a, b Revocation) int {
	return cmp.Or(cmp.Compare(a.Kind, b.Kind), bytes.Compare(a.ID, b.ID))
}

// RevocationList is the signed list of revoked node keys, certificates and
// invitations of a community. Each list replaces the previous one entirely;
// the one with the highest Sequence wins (see [RevocationList.Newer]). Build
// one with [Revoke]; check one received from elsewhere with
// [RevocationList.Verify].
//
// A verified list is not modified afterwards, so it is safe for concurrent
// reads.
type RevocationList struct {
	// Version is the encoding version, 1.
	Version uint8

	// CommunityID is the community whose root key signs the list.
	CommunityID CommunityID

	// Sequence grows by one with each list.
	Sequence uint64

	// IssuedAt is when the list was made, a whole second.
	IssuedAt time.Time

	// Entries are sorted by Kind, then ID, without duplicates.
	Entries []Revocation

	// Signature is the root key's signature of the encoding up to, and not
	// including, the signature.
	Signature [ed25519.SignatureSize]byte
}

func (l *RevocationList) validate() error {
	if l.Version != formatVersion {
		return fmt.Errorf("version %d, want %d", l.Version, formatVersion)
	}
	if err := checkTime("issued at", l.IssuedAt); err != nil {
		return err
	}
	if len(l.Entries) > math.MaxUint16 {
		return fmt.Errorf("%d entries, at most %d allowed", len(l.Entries), math.MaxUint16)
	}
	for i := range l.Entries {
		if err := l.Entries[i].validate(); err != nil {
			return err
		}
		if i > 0 && compareEntries(l.Entries[i-1], l.Entries[i]) >= 0 {
			return fmt.Errorf("entry %d is not after entry %d", i, i-1)
		}
	}
	return nil
}

func (l *RevocationList) signed() []byte {
	e := newEncoder(64 + len(l.Entries)*48)
	e.header(revocationMagic)
	e.Raw(l.CommunityID[:])
	e.U64(l.Sequence)
	e.unix(l.IssuedAt)
	e.U16(uint16(len(l.Entries)))
	for _, r := range l.Entries {
		e.U8(uint8(r.Kind))
		e.Raw(r.ID)
		e.Str8(r.Reason)
	}
	return e.Bytes()
}

// MarshalBinary returns the encoding of l, or an error naming the first
// invalid field.
func (l *RevocationList) MarshalBinary() ([]byte, error) {
	if err := l.validate(); err != nil {
		return nil, fmt.Errorf("encoding revocation list: %w", err)
	}
	b := append(l.signed(), l.Signature[:]...)
	if len(b) > MaxRevocationListSize {
		return nil, fmt.Errorf("encoding revocation list: %d bytes, at most %d allowed", len(b), MaxRevocationListSize)
	}
	return b, nil
}

// UnmarshalBinary parses b into l. It accepts only the canonical encoding of
// a valid list (ErrMalformed otherwise) and leaves l unchanged on error. It
// does not verify the signature.
func (l *RevocationList) UnmarshalBinary(b []byte) error {
	n, err := parseRevocationList(b)
	if err != nil {
		return malformed("revocation list", err)
	}
	*l = n
	return nil
}

func parseRevocationList(b []byte) (RevocationList, error) {
	if len(b) > MaxRevocationListSize {
		return RevocationList{}, fmt.Errorf("%d bytes, at most %d allowed", len(b), MaxRevocationListSize)
	}
	var l RevocationList
	d := newDecoder(b)
	d.header(revocationMagic)
	l.Version = formatVersion
	d.Array(l.CommunityID[:], "community id")
	l.Sequence = d.U64("sequence")
	l.IssuedAt = d.unix("issued at")
	n := int(d.U16("entries"))
	for i := 0; i < n && d.Err() == nil; i++ {
		r := Revocation{Kind: RevocationKind(d.U8("revocation kind"))}
		if d.Err() == nil && r.Kind.idLen() == 0 {
			d.Failf("entry %d: revocation kind %d is unknown", i, r.Kind)
		}
		r.ID = bytes.Clone(d.Take(r.Kind.idLen(), "revocation id"))
		r.Reason = d.Str8("reason")
		l.Entries = append(l.Entries, r)
	}
	d.Array(l.Signature[:], "signature")
	err := d.Done()
	if err == nil {
		err = l.validate()
	}
	return l, err
}

// Verify reports whether l is a list of community c signed by its root key.
func (l *RevocationList) Verify(c Community) error {
	if err := l.validate(); err != nil {
		return fmt.Errorf("verifying revocation list: %w: %w", ErrMalformed, err)
	}
	if l.CommunityID != c.ID() {
		return fmt.Errorf("verifying revocation list: it is for community %s, not %s: %w", l.CommunityID, c.ID(), ErrWrongCommunity)
	}
	if !verifySignature(c.RootKey, l.signed(), l.Signature) {
		return fmt.Errorf("verifying revocation list %d: %w", l.Sequence, ErrBadSignature)
	}
	return nil
}

// Newer reports whether l should replace other: it has a higher sequence, or
// other is nil. A nil l is never newer.
func (l *RevocationList) Newer(other *RevocationList) bool {
	return l != nil && (other == nil || l.Sequence > other.Sequence)
}

// Lookup returns the entry that revokes m's node key, certificate serial or
// invitation, in that order. A nil l revokes nothing.
func (l *RevocationList) Lookup(m *Membership) (Revocation, bool) {
	if l == nil || m == nil {
		return Revocation{}, false
	}
	keys := []Revocation{
		{Kind: RevokeNodeKey, ID: m.Certificate.NodeKey[:]},
		{Kind: RevokeSerial, ID: m.Certificate.Serial[:]},
	}
	if m.Delegation != nil {
		keys = append(keys, Revocation{Kind: RevokeInvite, ID: m.Delegation.InviteID[:]})
	}
	for _, k := range keys {
		if i, ok := slices.BinarySearchFunc(l.Entries, k, compareEntries); ok {
			return l.Entries[i], true
		}
	}
	return Revocation{}, false
}

// Revoke returns the list that follows prev (nil for the first list) with the
// entries added, signed by root at now. An entry whose kind and ID prev
// already holds keeps its old reason. prev must be signed by root.
func Revoke(root ed25519.PrivateKey, prev *RevocationList, now time.Time, add ...Revocation) (*RevocationList, error) {
	l, err := revoke(root, prev, now, add)
	if err != nil {
		return nil, fmt.Errorf("building revocation list: %w", err)
	}
	return l, nil
}

func revoke(root ed25519.PrivateKey, prev *RevocationList, now time.Time, add []Revocation) (*RevocationList, error) {
	if len(root) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("root key: %d bytes, want %d", len(root), ed25519.PrivateKeySize)
	}
	// The community of a root key has no name or prefix that matter here.
	c := Community{RootKey: root.Public().(ed25519.PublicKey)}
	l := &RevocationList{Version: formatVersion, CommunityID: c.ID(), Sequence: 1, IssuedAt: truncateTime(now)}
	if prev != nil {
		if err := prev.Verify(c); err != nil {
			return nil, fmt.Errorf("previous list: %w", err)
		}
		if prev.Sequence == math.MaxUint64 {
			return nil, fmt.Errorf("previous list has the last sequence number")
		}
		l.Sequence = prev.Sequence + 1
		l.Entries = slices.Clone(prev.Entries)
	}
	for _, r := range add {
		if err := r.validate(); err != nil {
			return nil, err
		}
		r.ID = bytes.Clone(r.ID)
		if i, found := slices.BinarySearchFunc(l.Entries, r, compareEntries); !found {
			l.Entries = slices.Insert(l.Entries, i, r)
		}
	}
	copy(l.Signature[:], ed25519.Sign(root, l.signed()))
	if _, err := l.MarshalBinary(); err != nil {
		return nil, err
	}
	return l, nil
}
