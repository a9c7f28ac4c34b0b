package roster

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/cloudbox/cloudbox/overlay/membership"
)

// Limits of a roster and of its snapshots.
const (
	// MaxMembers is the most records a roster, and a snapshot, holds.
	MaxMembers = 4096

	// MaxEndpoints is the most underlay endpoints one record carries.
	MaxEndpoints = 8

	// MaxSnapshotSize bounds the encoding of a Snapshot.
	MaxSnapshotSize = 4 << 20

	// MaxJoinRequestSize bounds the body of a join request; the largest
	// valid one is about 3.5 KiB.
	MaxJoinRequestSize = 8 << 10
)

const (
	snapshotMagic   = "CBS1"
	snapshotVersion = 1

	flagRelayOK = 1 << 0

	// maxEndpointSize is the largest encoded endpoint: family, IPv6, port.
	maxEndpointSize = 1 + 16 + 2
	// recordOverhead is the most a record adds to its membership: length,
	// updated, flags, endpoint count and MaxEndpoints endpoints.
	recordOverhead = 2 + 8 + 1 + 1 + MaxEndpoints*maxEndpointSize
	// recordBudget is what the records of a roster may take in a snapshot,
	// each counted with recordOverhead: the rest is for the header, the
	// revocation list and the redemption records.
	recordBudget = MaxSnapshotSize - membership.MaxRevocationListSize - 64<<10
)

// Record is what the members of a community know about one member.
type Record struct {
	// Membership is the member's chain. In a Snapshot from DecodeSnapshot
	// it is well-formed but unverified: Apply verifies it.
	Membership *membership.Membership

	// Endpoints are at most MaxEndpoints underlay addresses where the
	// member said it can be reached: unicast, without zone, IPv4 never as
	// IPv4-mapped IPv6, port not 0, none twice.
	Endpoints []netip.AddrPort

	// Updated is when the member reported Endpoints, by its own clock;
	// between 1970 and 2261. The zero time means never, and then
	// Endpoints is empty and RelayOK false. Members keep the endpoints
	// with the latest Updated.
	Updated time.Time

	// RelayOK says the member offers to relay traffic between others.
	RelayOK bool
}

// Snapshot is the state that members exchange: every member's record, the
// revocation list and the redemption records of invitations. Its encoding
// is described in the package comment.
type Snapshot struct {
	// Community is the ID of the community the snapshot is about.
	Community membership.CommunityID

	// Records are at most MaxMembers records in strictly ascending order
	// of node key.
	Records []Record

	// Revocations is the newest revocation list the sender knows, nil if
	// none. From DecodeSnapshot it is unverified: Apply verifies it.
	Revocations *membership.RevocationList

	// Redemptions are redemption records (memberships issued with an
	// invitation) in strictly ascending order of invitation ID. A record
	// chain issued with an invitation counts as a redemption record too, so
	// a roster sends here only those no record carries: invitations of
	// members since renewed or gone.
	Redemptions []*membership.Membership
}

// wireRecord is a record with its membership already encoded.
type wireRecord struct {
	key     [32]byte
	chain   []byte
	eps     []netip.AddrPort
	updated time.Time
	relay   bool
	// invited and invite say whether chain was issued with an invitation,
	// and which; only the roster sets them.
	invited bool
	invite  [16]byte
}

// Encode returns the encoding of s. It fails with ErrMalformed naming the
// first invalid field, or ErrTooLarge when the encoding would exceed
// MaxSnapshotSize.
func (s *Snapshot) Encode() ([]byte, error) {
	recs := make([]wireRecord, len(s.Records))
	for i, rec := range s.Records {
		if rec.Membership == nil {
			return nil, fmt.Errorf("encoding snapshot: %w: record %d has no membership", ErrMalformed, i)
		}
		b, err := rec.Membership.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("encoding snapshot: %w: record %d: %w", ErrMalformed, i, err)
		}
		recs[i] = wireRecord{key: rec.Membership.Certificate.NodeKey, chain: b, eps: rec.Endpoints, updated: rec.Updated, relay: rec.RelayOK}
	}
	var rev []byte
	if s.Revocations != nil {
		var err error
		if rev, err = s.Revocations.MarshalBinary(); err != nil {
			return nil, fmt.Errorf("encoding snapshot: %w: %w", ErrMalformed, err)
		}
	}
	reds := make([][]byte, len(s.Redemptions))
	var last []byte
	for i, m := range s.Redemptions {
		if m == nil || m.Delegation == nil {
			return nil, fmt.Errorf("encoding snapshot: %w: redemption %d was not issued with an invitation", ErrMalformed, i)
		}
		id := m.Delegation.InviteID[:]
		if last != nil && bytes.Compare(last, id) >= 0 {
			return nil, fmt.Errorf("encoding snapshot: %w: redemption %d is not after redemption %d", ErrMalformed, i, i-1)
		}
		last = id
		b, err := m.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("encoding snapshot: %w: redemption %d: %w", ErrMalformed, i, err)
		}
		reds[i] = b
	}
	return encodeSnapshot(s.Community, recs, rev, reds)
}

// encodeSnapshot is the encoder shared by Snapshot.Encode and the roster,
// which keeps its chains encoded. recs must be sorted by key and reds by
// invitation ID.
func encodeSnapshot(id membership.CommunityID, recs []wireRecord, rev []byte, reds [][]byte) ([]byte, error) {
	if len(recs) > MaxMembers {
		return nil, fmt.Errorf("encoding snapshot: %w: %d records, at most %d allowed", ErrMalformed, len(recs), MaxMembers)
	}
	size := len(snapshotMagic) + 1 + len(id) + 2 + 4 + len(rev) + 4
	for _, r := range recs {
		size += 2 + len(r.chain) + 8 + 1 + 1 + len(r.eps)*maxEndpointSize
	}
	for _, b := range reds {
		size += 2 + len(b)
	}
	if size > MaxSnapshotSize {
		return nil, fmt.Errorf("encoding snapshot: %w: %d bytes or more, at most %d allowed", ErrTooLarge, size, MaxSnapshotSize)
	}
	e := newEncoder(size)
	e.Raw([]byte(snapshotMagic))
	e.U8(snapshotVersion)
	e.Raw(id[:])
	e.U16(uint16(len(recs)))
	for i, r := range recs {
		if i > 0 && bytes.Compare(recs[i-1].key[:], r.key[:]) >= 0 {
			return nil, fmt.Errorf("encoding snapshot: %w: record %d (node %s) is not after record %d", ErrMalformed, i, membership.NodeID(r.key), i-1)
		}
		if err := checkEndpoints(r.eps); err != nil {
			return nil, fmt.Errorf("encoding snapshot: %w: record %d (node %s): %w", ErrMalformed, i, membership.NodeID(r.key), err)
		}
		upd, err := encodeUpdated(r.updated)
		if err == nil && upd == 0 && (len(r.eps) > 0 || r.relay) {
			err = fmt.Errorf("endpoints or relay without an update time")
		}
		if err != nil {
			return nil, fmt.Errorf("encoding snapshot: %w: record %d (node %s): %w", ErrMalformed, i, membership.NodeID(r.key), err)
		}
		e.Bytes16(r.chain)
		e.U64(upd)
		var flags uint8
		if r.relay {
			flags |= flagRelayOK
		}
		e.U8(flags)
		e.U8(uint8(len(r.eps)))
		for _, ap := range r.eps {
			e.endpoint(ap)
		}
	}
	e.Bytes32(rev)
	e.U32(uint32(len(reds)))
	for _, b := range reds {
		e.Bytes16(b)
	}
	return e.Bytes(), nil
}

// DecodeSnapshot parses an encoded snapshot. It accepts only the canonical
// encoding of a snapshot within the limits (ErrMalformed otherwise) and
// allocates in proportion to b. It verifies no signature: Apply does.
func DecodeSnapshot(b []byte) (*Snapshot, error) {
	s, err := decodeSnapshot(b)
	if err != nil {
		return nil, fmt.Errorf("decoding snapshot: %w: %w", ErrMalformed, err)
	}
	return s, nil
}

func decodeSnapshot(b []byte) (*Snapshot, error) {
	if len(b) > MaxSnapshotSize {
		return nil, fmt.Errorf("%d bytes, at most %d allowed", len(b), MaxSnapshotSize)
	}
	d := newDecoder(b)
	d.Header(snapshotMagic, snapshotVersion)
	s := new(Snapshot)
	copy(s.Community[:], d.Take(len(s.Community), "community id"))
	n := d.U16("records")
	if d.Err() == nil && n > MaxMembers {
		d.Failf("%d records, at most %d allowed", n, MaxMembers)
	}
	for i := 0; i < int(n) && d.Err() == nil; i++ {
		rec, err := d.record()
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		if i > 0 {
			prev := s.Records[i-1].Membership.Certificate.NodeKey
			if key := rec.Membership.Certificate.NodeKey; bytes.Compare(prev[:], key[:]) >= 0 {
				return nil, fmt.Errorf("record %d (node %s) is not after record %d", i, membership.NodeID(key), i-1)
			}
		}
		s.Records = append(s.Records, rec)
	}
	if rev := d.Bytes32("revocation list"); d.Err() == nil && len(rev) > 0 {
		l := new(membership.RevocationList)
		if err := l.UnmarshalBinary(rev); err != nil {
			return nil, err
		}
		s.Revocations = l
	}
	n32 := d.U32("redemptions")
	for i := uint32(0); i < n32 && d.Err() == nil; i++ {
		m := new(membership.Membership)
		if err := m.UnmarshalBinary(d.Bytes16("redemption")); d.Err() == nil && err != nil {
			return nil, fmt.Errorf("redemption %d: %w", i, err)
		}
		if d.Err() != nil {
			break
		}
		if m.Delegation == nil {
			return nil, fmt.Errorf("redemption %d was not issued with an invitation", i)
		}
		if i > 0 {
			prev := s.Redemptions[i-1].Delegation.InviteID
			if bytes.Compare(prev[:], m.Delegation.InviteID[:]) >= 0 {
				return nil, fmt.Errorf("redemption %d is not after redemption %d", i, i-1)
			}
		}
		s.Redemptions = append(s.Redemptions, m)
	}
	if err := d.Done(); err != nil {
		return nil, err
	}
	return s, nil
}

func (d *decoder) record() (Record, error) {
	var rec Record
	chain := d.Bytes16("membership")
	upd := d.U64("updated")
	flags := d.U8("flags")
	n := d.U8("endpoints")
	if d.Err() != nil {
		return rec, d.Err()
	}
	m := new(membership.Membership)
	if err := m.UnmarshalBinary(chain); err != nil {
		return rec, err
	}
	rec.Membership = m
	var err error
	if rec.Updated, err = decodeUpdated(upd); err != nil {
		return rec, err
	}
	if flags&^flagRelayOK != 0 {
		return rec, fmt.Errorf("unknown flags %#02x", flags)
	}
	rec.RelayOK = flags&flagRelayOK != 0
	if n > MaxEndpoints {
		return rec, fmt.Errorf("%d endpoints, at most %d allowed", n, MaxEndpoints)
	}
	for i := 0; i < int(n) && d.Err() == nil; i++ {
		ap := d.endpoint("endpoint")
		if d.Err() == nil && slices.Contains(rec.Endpoints, ap) {
			return rec, fmt.Errorf("endpoint %v: listed twice", ap)
		}
		rec.Endpoints = append(rec.Endpoints, ap)
	}
	if d.Err() != nil {
		return rec, d.Err()
	}
	if rec.Updated.IsZero() && (len(rec.Endpoints) > 0 || rec.RelayOK) {
		return rec, fmt.Errorf("endpoints or relay without an update time")
	}
	return rec, nil
}

// compareKeys orders node keys.
func compareKeys(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) }
