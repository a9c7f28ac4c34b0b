package membership

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// MaxRedemptionsSize bounds the encoding of Redemptions, about 2,800
// records.
const MaxRedemptionsSize = 4 << 20

const redemptionsMagic = "CBU1"

// Redemptions records which node key redeemed each invitation, so that an
// invitation admits one box only. A record is the membership chain issued
// with the invitation: it proves itself, so members can pass records on to
// each other (gossip) and check them with [Redemptions.Merge].
//
// The zero value is an empty set ready to use. It is safe for concurrent
// use.
type Redemptions struct {
	mu   sync.Mutex
	byID map[[16]byte]*Membership // mu guards; values are private copies
}

// Check returns ErrInviteUsed if m was issued with an invitation that a
// different node key redeemed. It returns nil for a membership signed by the
// root key, an invitation not seen yet, or the node key that redeemed it.
func (r *Redemptions) Check(m *Membership) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.check(m)
}

func (r *Redemptions) check(m *Membership) error {
	if m.Delegation == nil {
		return nil
	}
	old, ok := r.byID[m.Delegation.InviteID]
	if ok && old.Certificate.NodeKey != m.Certificate.NodeKey {
		return fmt.Errorf("%w: invitation for %q was redeemed by node %s, not %s",
			ErrInviteUsed, m.Delegation.Name, old.NodeID(), m.NodeID())
	}
	return nil
}

// Redeem accepts m as the redemption of its invitation: a member calls it
// when a new box presents the membership it issued with [Invitation.Issue].
// m must verify at now (see [VerifyMembership]), be issued with an
// invitation that has not expired at now, and the invitation must be unused
// or used by the same node key (ErrInviteUsed otherwise); presenting the
// same redemption again is not an error.
func (r *Redemptions) Redeem(c Community, m *Membership, now time.Time, revoked *RevocationList) error {
	if err := VerifyMembership(c, m, now, revoked); err != nil {
		return fmt.Errorf("redeeming invitation: %w", err)
	}
	if m.Delegation == nil {
		return fmt.Errorf("redeeming invitation: %w", errNotDelegated)
	}
	if exp := m.Delegation.Expires; !now.Before(exp) {
		return fmt.Errorf("redeeming invitation for %q: invitation %w at %s", m.Delegation.Name, ErrExpired, exp.Format(time.RFC3339))
	}
	if _, err := r.add(m); err != nil {
		return fmt.Errorf("redeeming invitation: %w", err)
	}
	return nil
}

// Merge adds a redemption record learned from another member. The record
// must be a membership issued with an invitation whose signatures verify
// against c; its validity period is not checked, since a record matters as
// long as certificates from the invitation may exist. Merge reports whether
// the record was new. A record for an invitation another node key redeemed
// is refused with ErrInviteUsed and the first one is kept: two redemptions
// mean the token leaked, and an administrator should revoke the invitation.
func (r *Redemptions) Merge(c Community, m *Membership) (added bool, err error) {
	if err := verifyChain(c, m); err != nil {
		return false, fmt.Errorf("merging redemption: %w", err)
	}
	if m.Delegation == nil {
		return false, fmt.Errorf("merging redemption: %w", errNotDelegated)
	}
	added, err = r.add(m)
	if err != nil {
		return false, fmt.Errorf("merging redemption: %w", err)
	}
	return added, nil
}

func (r *Redemptions) add(m *Membership) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.check(m); err != nil {
		return false, err
	}
	id := m.Delegation.InviteID
	if _, ok := r.byID[id]; ok {
		return false, nil
	}
	if r.byID == nil {
		r.byID = make(map[[16]byte]*Membership)
	}
	r.byID[id] = m.clone()
	return true, nil
}

// Lookup returns the node key that redeemed the invitation inviteID.
func (r *Redemptions) Lookup(inviteID [16]byte) (nodeKey [32]byte, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.byID[inviteID]
	if !ok {
		return [32]byte{}, false
	}
	return m.Certificate.NodeKey, true
}

// Len returns the number of records.
func (r *Redemptions) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byID)
}

// Records returns copies of the records, ordered by invitation ID.
func (r *Redemptions) Records() []*Membership {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Membership, 0, len(r.byID))
	for _, id := range slices.SortedFunc(maps.Keys(r.byID), compareIDs) {
		out = append(out, r.byID[id].clone())
	}
	return out
}

// Prune drops the records of invitations that expired so long ago (more
// than MaxDelegatedValidity plus ClockSkew) that no certificate issued with
// them is still valid at now, and returns how many it dropped.
func (r *Redemptions) Prune(now time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.byID)
	maps.DeleteFunc(r.byID, func(_ [16]byte, m *Membership) bool {
		return !now.Before(m.Delegation.Expires.Add(MaxDelegatedValidity + ClockSkew))
	})
	return n - len(r.byID)
}

var errNotDelegated = errors.New("the certificate was not issued with an invitation")

func compareIDs(a, b [16]byte) int { return bytes.Compare(a[:], b[:]) }

// MarshalBinary returns the encoding of the records, ordered by invitation
// ID.
func (r *Redemptions) MarshalBinary() ([]byte, error) {
	recs := r.Records()
	e := newEncoder(16 + len(recs)*1500)
	e.header(redemptionsMagic)
	e.U32(uint32(len(recs)))
	for _, m := range recs {
		b, err := m.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("encoding redemptions: %w", err)
		}
		e.Bytes16(b)
	}
	if len(e.Bytes()) > MaxRedemptionsSize {
		return nil, fmt.Errorf("encoding redemptions: %d bytes, at most %d allowed", len(e.Bytes()), MaxRedemptionsSize)
	}
	return e.Bytes(), nil
}

// UnmarshalBinary replaces the records with those encoded in b. It accepts
// only the canonical encoding (ErrMalformed otherwise) and leaves r
// unchanged on error. It does not verify signatures: it is meant for this
// box's own file; records from other boxes go through Merge.
func (r *Redemptions) UnmarshalBinary(b []byte) error {
	recs, err := parseRedemptions(b)
	if err != nil {
		return malformed("redemptions", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byID = recs
	return nil
}

func parseRedemptions(b []byte) (map[[16]byte]*Membership, error) {
	if len(b) > MaxRedemptionsSize {
		return nil, fmt.Errorf("%d bytes, at most %d allowed", len(b), MaxRedemptionsSize)
	}
	d := newDecoder(b)
	d.header(redemptionsMagic)
	n := d.U32("records")
	recs := make(map[[16]byte]*Membership)
	var last *[16]byte
	for i := uint32(0); i < n && d.Err() == nil; i++ {
		sub := newDecoder(d.Bytes16("record"))
		m := sub.membership()
		if err := sub.Done(); err != nil {
			d.Failf("record %d: %w", i, err)
			break
		}
		if m.Delegation == nil {
			d.Failf("record %d: %w", i, errNotDelegated)
			break
		}
		id := m.Delegation.InviteID
		if last != nil && compareIDs(*last, id) >= 0 {
			d.Failf("record %d is not after record %d", i, i-1)
			break
		}
		last = &id
		recs[id] = &m
	}
	return recs, d.Done()
}
