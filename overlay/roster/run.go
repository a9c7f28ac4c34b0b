package roster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cloudbox/cloudbox/overlay/membership"
)

// FetchFunc fetches the snapshot of a member. The daemon's fetches GET
// SnapshotPath from the member's overlay address (see Fetch). It must
// return when ctx is done.
type FetchFunc func(ctx context.Context, peer Peer) (*Snapshot, error)

// Run keeps the roster in sync with the other members until ctx is done,
// then returns nil after every goroutine it started has returned. Every
// Config.Interval (±25 %), starting right away, it runs a round:
//
//   - it drops members whose certificate ended and the endpoints of
//     members not heard of for Config.EndpointTTL, and prunes redemption
//     records that no longer matter (membership.Redemptions.Prune);
//   - with Config.RootKey, it renews every certificate that
//     membership.NeedsRenewal;
//   - it fetches, concurrently, the snapshots of up to Config.Fanout
//     random members, each within Config.FetchTimeout, and applies them.
//
// Failed fetches are counted in Stats, not returned. Run may run once at a
// time (ErrRunning otherwise).
func (r *Roster) Run(ctx context.Context, fetch FetchFunc) error {
	if fetch == nil {
		return errors.New("running roster: no fetch function")
	}
	if !r.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer r.running.Store(false)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		r.round(ctx, fetch)
		t.Reset(jitter(r.cfg.Interval))
	}
}

// jitter returns d scaled by a random factor in [0.75, 1.25).
func jitter(d time.Duration) time.Duration {
	return d*3/4 + rand.N(d/2+1)
}

// round is one anti-entropy round; it returns when its fetches have.
func (r *Roster) round(ctx context.Context, fetch FetchFunc) {
	r.maintain(r.now())
	peers := r.Peers()
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	peers = peers[:min(len(peers), r.cfg.Fanout)]
	snaps := make([]*Snapshot, len(peers))
	errs := make([]error, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() {
			fctx, cancel := context.WithTimeout(ctx, r.cfg.FetchTimeout)
			defer cancel()
			snaps[i], errs[i] = fetch(fctx, p)
			if errs[i] == nil && snaps[i] == nil {
				errs[i] = errors.New("fetch returned no snapshot")
			}
		})
	}
	wg.Wait()
	for i, p := range peers {
		err := errs[i]
		if err == nil {
			err = r.Apply(snaps[i])
		}
		if err != nil {
			r.stats.add(&r.stats.fetchesFailed, 1)
			r.log.Debug("anti-entropy fetch failed", "node", membership.NodeID(p.NodeKey), "name", p.Name, "err", err)
			continue
		}
		r.stats.add(&r.stats.snapshotsFetched, 1)
	}
}

// maintain drops ended members, ages out endpoints, prunes redemptions and,
// with the root key, renews certificates.
func (r *Roster) maintain(now time.Time) {
	var res result
	r.mu.Lock()
	for key, e := range r.records {
		if key == r.selfKey {
			continue
		}
		if !now.Add(-membership.ClockSkew).Before(e.m.Certificate.NotAfter) {
			r.log.Info("member's certificate ended", "node", membership.NodeID(key), "name", e.m.Certificate.Name, "not_after", e.m.Certificate.NotAfter)
			r.dropLocked(key, &res)
			continue
		}
		if len(e.eps) > 0 && now.Sub(e.seen) > r.cfg.EndpointTTL {
			e.eps = nil
			res.peers, res.roster = true, true
		}
	}
	if r.redemptions.Prune(now) > 0 {
		res.redemptions = true
	}
	if r.cfg.RootKey != nil {
		r.renewLocked(now, &res)
	}
	r.mu.Unlock()
	r.finish(res) // errors are logged and counted; the state in memory holds
}

// renewLocked renews every certificate that needs it with the root key.
// The renewed chains spread with the snapshots; their owners adopt them.
func (r *Roster) renewLocked(now time.Time, res *result) {
	for key, e := range r.records {
		if !membership.NeedsRenewal(&e.m.Certificate, now) {
			continue
		}
		m, err := membership.Renew(r.cfg.RootKey, r.c, e.m, r.revocations, now, r.cfg.RenewValidity, nil)
		var raw []byte
		if err == nil {
			raw, err = m.MarshalBinary()
		}
		if err == nil && r.size+len(raw)-len(e.chain) > recordBudget {
			err = fmt.Errorf("renewing node %s: %w", membership.NodeID(key), ErrFull)
		}
		if err != nil {
			r.stats.add(&r.stats.renewalsFailed, 1)
			r.log.Warn("renewal failed", "node", membership.NodeID(key), "name", e.m.Certificate.Name, "err", err)
			continue
		}
		r.size += len(raw) - len(e.chain)
		e.m, e.chain = m, raw
		res.roster = true
		r.stats.add(&r.stats.renewals, 1)
		r.log.Info("certificate renewed", "node", membership.NodeID(key), "name", m.Certificate.Name, "not_after", m.Certificate.NotAfter)
		if key == r.selfKey {
			r.adoptSelfLocked(m, res)
		}
	}
}
