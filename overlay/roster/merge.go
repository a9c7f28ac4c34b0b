package roster

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/cloudbox/cloudbox/overlay/membership"
)

// errFuture means a record's Updated is ahead of this box's clock by more
// than membership.ClockSkew: its endpoints are ignored, its chain is not.
var errFuture = errors.New("record updated in the future")

// incoming is a record on its way into the roster.
type incoming struct {
	key     [32]byte
	chain   []byte
	m       *membership.Membership // private copy; nil if chain was known
	err     error                  // verification of m without revocations
	eps     []netip.AddrPort
	updated time.Time
	relay   bool
}

// prepare copies records and verifies, without holding mu, the chains that
// the roster does not hold yet. Malformed records are counted and left out.
func (r *Roster) prepare(recs []Record, now time.Time) []incoming {
	r.mu.Lock()
	known := make(map[[32]byte][]byte, len(r.records))
	for k, e := range r.records {
		known[k] = e.chain
	}
	r.mu.Unlock()
	out := make([]incoming, 0, len(recs))
	for _, rec := range recs {
		in, err := r.prepareOne(rec, known, now)
		if err != nil {
			r.stats.refuseRecord(ReasonMalformed)
			r.log.Debug("record refused", "err", err)
			continue
		}
		out = append(out, in)
	}
	return out
}

func (r *Roster) prepareOne(rec Record, known map[[32]byte][]byte, now time.Time) (incoming, error) {
	if rec.Membership == nil {
		return incoming{}, fmt.Errorf("%w: record without membership", ErrMalformed)
	}
	raw, err := rec.Membership.MarshalBinary()
	if err != nil {
		return incoming{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := checkEndpoints(rec.Endpoints); err != nil {
		return incoming{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if _, err := encodeUpdated(rec.Updated); err != nil {
		return incoming{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	in := incoming{
		key:     rec.Membership.Certificate.NodeKey,
		chain:   raw,
		eps:     slices.Clone(rec.Endpoints),
		updated: rec.Updated,
		relay:   rec.RelayOK,
	}
	if rec.Updated.IsZero() {
		in.eps, in.relay = nil, false
	}
	if !bytes.Equal(known[in.key], raw) {
		in.verify(r.c, now)
	}
	return in, nil
}

// verify parses and verifies in.chain, except for revocations.
func (in *incoming) verify(c membership.Community, now time.Time) {
	in.m = new(membership.Membership)
	if in.err = in.m.UnmarshalBinary(in.chain); in.err == nil {
		in.err = membership.VerifyMembership(c, in.m, now, nil)
	}
}

// mergeLocked merges one record: a chain new to the roster must verify
// (in.err), not be revoked, and not use an invitation another node key
// redeemed; of two chains for one node key the one that ends later wins;
// of two endpoint lists the one with the later Updated wins. This box's
// own endpoints are never replaced. It returns errFuture when only the
// endpoints were refused.
func (r *Roster) mergeLocked(in *incoming, now time.Time, res *result) error {
	e := r.records[in.key]
	if e == nil || !bytes.Equal(e.chain, in.chain) {
		if in.m == nil { // known in prepare, replaced since
			in.verify(r.c, now)
		}
		if err := r.admitLocked(in, res); err != nil {
			return err
		}
		switch {
		case e == nil:
			if len(r.records) >= r.maxMembs {
				return fmt.Errorf("node %s: %w: %d members", membership.NodeID(in.key), ErrFull, len(r.records))
			}
			e = &entry{m: in.m, chain: in.chain, seen: now}
			if r.size+e.size() > recordBudget {
				return fmt.Errorf("node %s: %w: snapshot size budget used up", membership.NodeID(in.key), ErrFull)
			}
			r.records[in.key] = e
			r.size += e.size()
			res.roster, res.peers = true, res.peers || in.key != r.selfKey
		case in.m.Certificate.NotAfter.After(e.m.Certificate.NotAfter):
			grow := len(in.chain) - len(e.chain)
			if r.size+grow > recordBudget {
				return fmt.Errorf("node %s: %w: snapshot size budget used up", membership.NodeID(in.key), ErrFull)
			}
			old := &e.m.Certificate
			if old.Name != in.m.Certificate.Name || old.IPv4 != in.m.Certificate.IPv4 || !slices.Equal(old.Groups, in.m.Certificate.Groups) {
				res.peers = true
			}
			e.m, e.chain = in.m, in.chain
			r.size += grow
			res.roster = true
			if in.key == r.selfKey {
				r.adoptSelfLocked(in.m, res)
			}
		}
	}
	if in.key == r.selfKey {
		return nil
	}
	if in.updated.After(now.Add(membership.ClockSkew)) {
		return fmt.Errorf("node %s: %w: %s", membership.NodeID(in.key), errFuture, in.updated.Format(time.RFC3339))
	}
	if in.updated.After(e.updated) {
		switch {
		case !slices.Equal(e.eps, in.eps) || e.relay != in.relay:
			res.peers, res.roster = true, true
		case len(in.eps) > 0 && now.Sub(e.seen) > r.cfg.EndpointTTL:
			res.peers = true // aged-out endpoints are back
		}
		e.eps, e.updated, e.relay, e.seen = in.eps, in.updated, in.relay, now
	}
	return nil
}

// admitLocked checks a chain new to the roster against the revocation list
// and the redemptions, and records its redemption.
func (r *Roster) admitLocked(in *incoming, res *result) error {
	if in.err != nil {
		return in.err
	}
	if rv, ok := r.revocations.Lookup(in.m); ok {
		return fmt.Errorf("node %s: %s %w (sequence %d): %q", membership.NodeID(in.key), rv.Kind, membership.ErrRevoked, r.revocations.Sequence, rv.Reason)
	}
	dl := in.m.Delegation
	if dl == nil {
		return nil
	}
	if _, ok := r.redemptions.Lookup(dl.InviteID); ok {
		return r.redemptions.Check(in.m)
	}
	if _, err := r.redemptions.Merge(r.c, in.m); err != nil {
		return err
	}
	res.redemptions = true
	return nil
}

func (r *Roster) adoptSelfLocked(m *membership.Membership, res *result) {
	r.self = m
	res.self = true
	r.stats.add(&r.stats.ownRenewals, 1)
	r.log.Info("renewed membership adopted", "node", m.NodeID(), "not_after", m.Certificate.NotAfter)
}

// setRevocationsLocked replaces the revocation list with l, a verified list
// newer than the current one, and drops the members it revokes.
func (r *Roster) setRevocationsLocked(l *membership.RevocationList, raw []byte, res *result) {
	r.revocations, r.revRaw = l, raw
	res.revocations = true
	r.stats.add(&r.stats.revocationLists, 1)
	r.log.Info("revocation list adopted", "sequence", l.Sequence, "entries", len(l.Entries))
	for key, e := range r.records {
		rv, ok := l.Lookup(e.m)
		if !ok {
			continue
		}
		if key == r.selfKey {
			r.log.Error("this box is revoked", "node", membership.NodeID(key), "kind", rv.Kind.String(), "reason", rv.Reason)
			continue
		}
		r.dropLocked(key, res)
		r.log.Info("member revoked", "node", membership.NodeID(key), "name", e.m.Certificate.Name, "reason", rv.Reason)
	}
}

func (r *Roster) dropLocked(key [32]byte, res *result) {
	r.size -= r.records[key].size()
	delete(r.records, key)
	res.peers, res.roster = true, true
	r.stats.add(&r.stats.membersDropped, 1)
}

// Apply merges a snapshot received from another member: a newer revocation
// list first (verified with RevocationList.Verify; members it revokes are
// dropped), then the redemption records (membership.Redemptions.Merge),
// then every record by the rules of the package comment. Records that are
// refused are counted in Stats; Apply fails only when the whole snapshot
// is refused: it is for another community or its revocation list does not
// verify. Apply keeps no reference to s.
func (r *Roster) Apply(s *Snapshot) error {
	if err := r.apply(s); err != nil {
		r.stats.add(&r.stats.snapshotsRefused, 1)
		return fmt.Errorf("applying snapshot: %w", err)
	}
	return nil
}

func (r *Roster) apply(s *Snapshot) error {
	if s == nil {
		return fmt.Errorf("%w: no snapshot", ErrMalformed)
	}
	if s.Community != r.id {
		return fmt.Errorf("snapshot of community %s, not %s: %w", s.Community, r.id, membership.ErrWrongCommunity)
	}
	now := r.now()
	var list *membership.RevocationList
	var listRaw []byte
	if s.Revocations != nil {
		r.mu.Lock()
		newer := s.Revocations.Newer(r.revocations)
		r.mu.Unlock()
		if newer {
			var err error
			if list, listRaw, err = copyRevocations(s.Revocations); err == nil {
				err = list.Verify(r.c)
			}
			if err != nil {
				return fmt.Errorf("revocation list: %w", err)
			}
		}
	}
	var res result
	if list != nil {
		r.mu.Lock()
		if list.Newer(r.revocations) {
			r.setRevocationsLocked(list, listRaw, &res)
		}
		r.mu.Unlock()
	}
	for _, m := range s.Redemptions {
		if m == nil || m.Delegation == nil {
			r.stats.refuseRecord(ReasonMalformed)
			continue
		}
		if k, ok := r.redemptions.Lookup(m.Delegation.InviteID); ok && k == m.Certificate.NodeKey {
			continue
		}
		added, err := r.redemptions.Merge(r.c, m)
		if err != nil {
			r.stats.refuseRecord(reasonOf(err))
			r.log.Warn("redemption record refused", "err", err)
			continue
		}
		if added {
			res.redemptions = true
		}
	}
	ins := r.prepare(s.Records, now)
	r.mu.Lock()
	for i := range ins {
		if err := r.mergeLocked(&ins[i], now, &res); err != nil {
			r.stats.refuseRecord(reasonOf(err))
			r.log.Debug("record refused", "node", membership.NodeID(ins[i].key), "err", err)
		}
	}
	r.mu.Unlock()
	r.finish(res) // errors are logged and counted; the state in memory holds
	return nil
}

// copyRevocations returns a private copy of l and its encoding.
func copyRevocations(l *membership.RevocationList) (*membership.RevocationList, []byte, error) {
	raw, err := l.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	n := new(membership.RevocationList)
	if err := n.UnmarshalBinary(raw); err != nil {
		return nil, nil, err
	}
	return n, raw, nil
}

// Revoke adds entries to the revocation list: it signs the next list with
// Config.RootKey (ErrNoRootKey without it), drops the members it revokes,
// persists the list and returns the error of persisting it. The list
// spreads to the other members with the snapshots.
func (r *Roster) Revoke(entries ...membership.Revocation) error {
	if r.cfg.RootKey == nil {
		return fmt.Errorf("revoking: %w", ErrNoRootKey)
	}
	var res result
	r.mu.Lock()
	l, err := membership.Revoke(r.cfg.RootKey, r.revocations, r.now(), entries...)
	var raw []byte
	if err == nil {
		raw, err = l.MarshalBinary()
	}
	if err == nil {
		r.setRevocationsLocked(l, raw, &res)
	}
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("revoking: %w", err)
	}
	return r.finish(res)
}

// reasonOf classifies why a record or a join was refused.
func reasonOf(err error) Reason {
	switch {
	case errors.Is(err, errFuture):
		return ReasonFuture
	case errors.Is(err, membership.ErrRevoked):
		return ReasonRevoked
	case errors.Is(err, membership.ErrInviteUsed):
		return ReasonInviteUsed
	case errors.Is(err, membership.ErrWrongCommunity):
		return ReasonWrongCommunity
	case errors.Is(err, membership.ErrExpired), errors.Is(err, membership.ErrNotYetValid):
		return ReasonExpired
	case errors.Is(err, ErrFull):
		return ReasonFull
	case errors.Is(err, membership.ErrMalformed), errors.Is(err, ErrMalformed):
		return ReasonMalformed
	}
	return ReasonInvalid
}
