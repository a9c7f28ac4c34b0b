package roster

import (
	"sync"
	"sync/atomic"
)

// Reason says why a join or a record was refused; it is the value of the
// "reason" label when Stats are rendered as metrics.
type Reason string

// Reasons for refusing a join or a record.
const (
	// ReasonMalformed: the request or record does not parse.
	ReasonMalformed Reason = "malformed"
	// ReasonMethod: a join with another method than POST.
	ReasonMethod Reason = "method"
	// ReasonTooLarge: a join body over MaxJoinRequestSize.
	ReasonTooLarge Reason = "too-large"
	// ReasonRateLimited: the source sent too many joins.
	ReasonRateLimited Reason = "rate-limited"
	// ReasonInvalid: a signature does not verify, or a certificate claims
	// what its invitation does not grant.
	ReasonInvalid Reason = "invalid"
	// ReasonWrongCommunity: the chain is for another community.
	ReasonWrongCommunity Reason = "wrong-community"
	// ReasonExpired: the certificate or the invitation ended, or the
	// certificate has not started.
	ReasonExpired Reason = "expired"
	// ReasonRevoked: the revocation list names the node key, the
	// certificate or the invitation.
	ReasonRevoked Reason = "revoked"
	// ReasonInviteUsed: another node key redeemed the invitation.
	ReasonInviteUsed Reason = "invite-used"
	// ReasonFull: the roster is full (Config.MaxMembers or the size
	// budget of a snapshot).
	ReasonFull Reason = "full"
	// ReasonSelf: a join with this box's own node key.
	ReasonSelf Reason = "self"
	// ReasonFuture: the record's Updated is in the future; its chain was
	// merged, its endpoints ignored.
	ReasonFuture Reason = "future"
)

// Stats are the roster's counters since New, all monotonic except Members.
type Stats struct {
	// Members is the number of members, this box included.
	Members int

	// JoinsAccepted counts joins answered with a snapshot, JoinsRefused
	// the others by reason.
	JoinsAccepted uint64
	JoinsRefused  map[Reason]uint64

	// SnapshotsServed counts snapshots sent by the handler (joins not
	// included); SnapshotsFetched counts snapshots Run fetched and
	// applied, FetchesFailed those it could not fetch or that Apply
	// refused as a whole.
	SnapshotsServed  uint64
	SnapshotsFetched uint64
	FetchesFailed    uint64

	// SnapshotsRefused counts snapshots Apply refused as a whole: another
	// community, or a revocation list that does not verify.
	SnapshotsRefused uint64

	// RecordsRefused counts records and redemption records that Apply
	// refused, by reason.
	RecordsRefused map[Reason]uint64

	// MembersDropped counts members removed because they were revoked or
	// their certificate ended.
	MembersDropped uint64

	// RevocationLists counts newer revocation lists adopted.
	RevocationLists uint64

	// Renewals counts certificates this box renewed with the root key,
	// RenewalsFailed those it could not renew, OwnRenewals renewed chains
	// of this box adopted.
	Renewals       uint64
	RenewalsFailed uint64
	OwnRenewals    uint64

	// RedemptionsOmitted counts redemption records left out of served
	// snapshots to keep them within MaxSnapshotSize.
	RedemptionsOmitted uint64

	// PersistErrors counts failed writes to the store.
	PersistErrors uint64
}

// counters holds the values behind Stats.
type counters struct {
	joinsAccepted, snapshotsServed, snapshotsFetched, fetchesFailed atomic.Uint64
	snapshotsRefused, membersDropped, revocationLists               atomic.Uint64
	renewals, renewalsFailed, ownRenewals, redemptionsOmitted       atomic.Uint64
	persistErrors                                                   atomic.Uint64

	mu             sync.Mutex
	joinsRefused   map[Reason]uint64 // mu guards
	recordsRefused map[Reason]uint64 // mu guards
}

func (c *counters) init() {
	c.joinsRefused = make(map[Reason]uint64)
	c.recordsRefused = make(map[Reason]uint64)
}

func (c *counters) add(v *atomic.Uint64, n uint64) { v.Add(n) }

func (c *counters) refuseJoin(why Reason) {
	c.mu.Lock()
	c.joinsRefused[why]++
	c.mu.Unlock()
}

func (c *counters) refuseRecord(why Reason) {
	c.mu.Lock()
	c.recordsRefused[why]++
	c.mu.Unlock()
}

// Stats returns the current counters.
func (r *Roster) Stats() Stats {
	r.mu.Lock()
	members := len(r.records)
	r.mu.Unlock()
	c := &r.stats
	c.mu.Lock()
	jr, rr := make(map[Reason]uint64, len(c.joinsRefused)), make(map[Reason]uint64, len(c.recordsRefused))
	for k, v := range c.joinsRefused {
		jr[k] = v
	}
	for k, v := range c.recordsRefused {
		rr[k] = v
	}
	c.mu.Unlock()
	return Stats{
		Members:            members,
		JoinsAccepted:      c.joinsAccepted.Load(),
		JoinsRefused:       jr,
		SnapshotsServed:    c.snapshotsServed.Load(),
		SnapshotsFetched:   c.snapshotsFetched.Load(),
		FetchesFailed:      c.fetchesFailed.Load(),
		SnapshotsRefused:   c.snapshotsRefused.Load(),
		RecordsRefused:     rr,
		MembersDropped:     c.membersDropped.Load(),
		RevocationLists:    c.revocationLists.Load(),
		Renewals:           c.renewals.Load(),
		RenewalsFailed:     c.renewalsFailed.Load(),
		OwnRenewals:        c.ownRenewals.Load(),
		RedemptionsOmitted: c.redemptionsOmitted.Load(),
		PersistErrors:      c.persistErrors.Load(),
	}
}
