package services

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// announceLoop re-advertises this box's summary whenever it changes.
func (c *Catalog) announceLoop(ctx context.Context, ml *memberlist.Memberlist) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.announce:
			if err := ml.UpdateNode(announceTimeout); err != nil {
				c.log.Debug("catalog announce", "err", err)
			}
		}
	}
}

// maintainLoop joins and re-joins the gossip, renews this box's lease,
// expires others' and retries pulls that are due.
func (c *Catalog) maintainLoop(ctx context.Context, ml *memberlist.Memberlist) {
	var joinAt time.Time
	joinFailures := 0
	t := time.NewTicker(maintainEvery)
	defer t.Stop()
	for {
		now := time.Now()
		if joinFailures > 0 && ml.NumMembers() > 1 {
			joinAt = now // no longer alone: someone joined this box during the back-off
		}
		if !now.Before(joinAt) {
			if c.join(ml) {
				joinFailures = 0
				joinAt = now.Add(rejoinEvery)
			} else {
				joinFailures++
				joinAt = now.Add(min(time.Duration(joinFailures)*rejoinEvery, 6*rejoinEvery))
			}
		}
		c.readmit(ml)
		c.renew()
		c.sweep()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// join contacts a few roster members that memberlist does not count as
// alive: all of them when this box is alone, one otherwise (to heal a
// partition). It reports whether this box is in touch with anyone.
func (c *Catalog) join(ml *memberlist.Memberlist) bool {
	alive := aliveNames(ml)
	var missing []memberlist.Address
	for id, m := range c.roster.all() {
		if a, ok := c.joinAddr(id, m); ok && !alive[id] {
			missing = append(missing, a)
		}
	}
	if len(missing) == 0 {
		return true
	}
	alone := len(alive) <= 1
	n := 1
	if alone {
		n = joinFanout
	}
	joined, err := join(ml, randomSubset(missing, n))
	if err != nil && alone {
		c.log.Debug("catalog join", "err", err)
	}
	return joined > 0 || !alone
}

// readmit joins, a few a second, the members whose gossip was refused
// while the roster did not list them yet (a box that joined the community
// through another box is unknown to the others until their rosters sync).
// memberlist drops a refused alive message without a trace and its
// broadcast is not repeated, so without this it would learn of the member
// only at the next join or push/pull, tens of seconds later.
func (c *Catalog) readmit(ml *memberlist.Memberlist) {
	roster := c.roster.all()
	alive := aliveNames(ml)
	now := time.Now()
	var addrs []memberlist.Address
	c.mu.Lock()
	for id, at := range c.refused {
		m, ok := roster[id]
		switch {
		case ok && alive[id]: // readmitted meanwhile
			delete(c.refused, id)
		case ok && len(addrs) < joinFanout:
			delete(c.refused, id)
			if a, ok := c.joinAddr(id, m); ok {
				addrs = append(addrs, a)
			}
		case !ok && now.Sub(at) > refusedMemory:
			delete(c.refused, id)
		}
	}
	c.mu.Unlock()
	if len(addrs) == 0 {
		return
	}
	if _, err := join(ml, addrs); err != nil {
		c.log.Debug("catalog readmission", "err", err)
	}
}

// aliveNames is the set of nodes memberlist counts as alive, this one
// included.
func aliveNames(ml *memberlist.Memberlist) map[string]bool {
	alive := make(map[string]bool)
	for _, n := range ml.Members() {
		alive[n.Name] = true
	}
	return alive
}

// joinAddr is the gossip address of member m (ID id); false for this box
// and members without an address.
func (c *Catalog) joinAddr(id string, m Member) (memberlist.Address, bool) {
	a := c.gossipAddr(m)
	if id == c.cfg.Self.NodeID || !a.IsValid() {
		return memberlist.Address{}, false
	}
	return memberlist.Address{Addr: a.String(), Name: id}, true
}

// renew re-signs this box's catalog when two thirds of its lease passed.
func (c *Catalog) renew() {
	now := c.cfg.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Before(c.own.payload.Expires.Add(-c.cfg.Lease / 3)) {
		return
	}
	if err := c.resignLocked(); err != nil {
		c.log.Error("catalog renewal", "err", err)
		return
	}
	c.afterOwnChangeLocked()
}

// sweep drops expired documents and those of members gone from the
// roster, and queues the pulls that are due.
func (c *Catalog) sweep() {
	now := c.cfg.Now()
	roster := c.roster.all()
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := false
	for id, p := range c.peers {
		if _, ok := roster[id]; !ok {
			if p.doc != nil {
				changed = true
			}
			delete(c.peers, id)
			continue
		}
		if p.doc != nil && !now.Before(p.doc.payload.Expires) {
			c.log.Info("catalog lease expired", "node", id)
			p.doc = nil
			c.stats.expired++
			changed = true
		}
		c.queuePullLocked(p)
	}
	if changed {
		c.changedLocked()
	}
}

// needsPull reports whether p announces a catalog newer than the one held.
func (p *peer) needsPull() bool {
	if !p.alive || !p.hasMeta || p.pulling {
		return false
	}
	if p.doc == nil {
		return true
	}
	d := p.doc.meta
	return d.Hash != p.meta.Hash && !(d.Epoch == p.meta.Epoch && d.Version >= p.meta.Version)
}

func (c *Catalog) queuePullLocked(p *peer) {
	if p.queued || !p.needsPull() || time.Now().Before(p.retryAt) {
		return
	}
	select {
	case c.pullq <- p.id:
		p.queued = true
	default: // full: the next sweep retries
	}
}

func (c *Catalog) pullLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-c.pullq:
			c.pull(ctx, id)
		}
	}
}

// allow takes a token of p's pull budget: pullBurst pulls, then pullRate a
// second, so a box that churns versions costs the others little.
func (p *peer) allow(now time.Time) (bool, time.Time) {
	p.tokens = min(pullBurst, p.tokens+now.Sub(p.refilled).Seconds()*pullRate)
	p.refilled = now
	if p.tokens >= 1 {
		p.tokens--
		return true, time.Time{}
	}
	return false, now.Add(time.Duration((1 - p.tokens) / pullRate * float64(time.Second)))
}

// pull fetches the announced catalog of node id from its owner, or from
// another member when the owner does not answer.
func (c *Catalog) pull(ctx context.Context, id string) {
	now := time.Now()
	c.mu.Lock()
	p := c.peers[id]
	if p == nil {
		c.mu.Unlock()
		return
	}
	p.queued = false
	if !p.needsPull() {
		c.mu.Unlock()
		return
	}
	ok, retry := p.allow(now)
	if !ok {
		c.stats.pullsLimited++
		p.retryAt = retry
		c.mu.Unlock()
		return
	}
	want := p.meta
	p.pulling = true
	if want.Entries == 0 { // nothing to fetch: an empty catalog
		p.pulling = false
		c.acceptEmptyLocked(p, want)
		c.mu.Unlock()
		return
	}
	var others []string
	for oid, o := range c.peers {
		if oid != id && o.alive {
			others = append(others, oid)
		}
	}
	c.mu.Unlock()

	err := c.fetchFrom(ctx, id, id, want)
	if err != nil && len(others) > 0 {
		err = fmt.Errorf("%w; %w", err, c.fetchFrom(ctx, others[rand.IntN(len(others))], id, want))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p.pulling = false
	if err != nil {
		p.pullErrors++
		p.retryAt = time.Now().Add(min(time.Duration(1<<min(p.pullErrors, 5))*time.Second, maxPullBackoff))
		c.log.Debug("catalog pull failed", "node", id, "err", err)
		return
	}
	p.pullErrors = 0
	c.queuePullLocked(p) // a newer version may have been announced meanwhile
}

// fetchFrom fetches owner's catalog from member src and accepts it.
func (c *Catalog) fetchFrom(ctx context.Context, src, owner string, want meta) error {
	m, ok := c.roster.get(src)
	if !ok {
		return fmt.Errorf("member %s is not in the roster", src)
	}
	ctx, cancel := context.WithTimeout(ctx, pullTimeout)
	defer cancel()
	raw, err := c.cfg.Fetch(ctx, m, owner)
	c.mu.Lock()
	if err != nil {
		c.stats.pullErrors++
	} else {
		c.stats.pulls++
	}
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("pulling catalog of %s from %s: %w", owner, src, err)
	}
	return c.accept(owner, raw, want, src == owner)
}

// accept verifies a document of owner and stores it. want is the summary
// the owner announced: a copy from another member must be exactly that
// document; the owner may serve a newer one of the same epoch.
func (c *Catalog) accept(owner string, raw []byte, want meta, fromOwner bool) error {
	p, err := c.check(owner, raw)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.stats.rejected[reasonOf(err)]++
		c.log.Warn("catalog document rejected", "node", owner, "err", err)
		return err
	}
	h := docHash(raw)
	pe := c.peers[owner]
	if pe == nil {
		return nil // gone meanwhile
	}
	if cur := pe.doc; cur != nil {
		if cur.meta.Hash == h {
			return nil
		}
		if p.Epoch == cur.meta.Epoch && p.Version <= cur.meta.Version {
			c.stats.rejected[rejectStale]++
			return reject(rejectStale, "version %d, holding %d", p.Version, cur.meta.Version)
		}
	}
	if h != want.Hash && (!fromOwner || p.Epoch != want.Epoch || p.Version < want.Version) {
		c.stats.rejected[rejectStale]++
		return reject(rejectStale, "not the announced version %d", want.Version)
	}
	pe.doc = &remoteDoc{raw: raw, payload: p,
		meta: meta{Epoch: p.Epoch, Version: p.Version, Entries: uint16(len(p.Services)), Hash: h}}
	c.stats.accepted++
	if pe.alive {
		c.changedLocked()
	}
	return nil
}

// check verifies raw as a current catalog document of owner.
func (c *Catalog) check(owner string, raw []byte) (*docPayload, error) {
	m, ok := c.roster.get(owner)
	if !ok {
		return nil, reject(rejectUnknownOwner, "%q is not in the roster", owner)
	}
	p, err := openDocument(raw, m.NodeKey)
	if err != nil {
		return nil, err
	}
	now := c.cfg.Now()
	switch {
	case p.Owner != owner:
		return nil, reject(rejectWrongOwner, "document of %q served as %q's", p.Owner, owner)
	case !now.Before(p.Expires):
		return nil, reject(rejectExpired, "expired at %v", p.Expires)
	case p.Issued.After(now.Add(maxClockSkew)):
		return nil, reject(rejectFuture, "issued at %v, in the future", p.Issued)
	}
	return p, nil
}

// acceptEmptyLocked records an announced empty catalog without a pull:
// nothing to show, nothing to verify.
func (c *Catalog) acceptEmptyLocked(p *peer, want meta) {
	had := p.doc != nil && len(p.doc.payload.Services) > 0
	p.doc = &remoteDoc{meta: want, payload: &docPayload{Owner: p.id, Expires: c.cfg.Now().Add(c.cfg.Lease)}}
	if had {
		c.changedLocked()
	}
}

// healthLoop refreshes the built-in services and checks every TCP service
// of this box each HealthInterval.
func (c *Catalog) healthLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.HealthInterval)
	defer t.Stop()
	for {
		c.refreshBuiltin()
		c.checkHealth(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkHealth dials every TCP service of this box and re-signs when one
// changed state.
func (c *Catalog) checkHealth(ctx context.Context) {
	type target struct {
		key  string
		addr netip.AddrPort
	}
	var targets []target
	c.mu.Lock()
	for _, e := range c.own.payload.Services {
		if !strings.HasSuffix(e.Type, "._tcp") {
			continue // UDP has no connection to test
		}
		addr := e.Addr
		if !addr.IsValid() {
			addr = c.cfg.Self.IPv6
		}
		if !addr.IsValid() {
			addr = c.cfg.Self.IPv4
		}
		if !addr.IsValid() {
			addr = netip.IPv6Loopback()
		}
		s := e.service()
		targets = append(targets, target{s.key(), netip.AddrPortFrom(addr, e.Port)})
	}
	c.mu.Unlock()

	timeout := min(c.cfg.HealthInterval/2, 3*time.Second)
	results := make([]bool, len(targets))
	sem := make(chan struct{}, checkParallel)
	var wg sync.WaitGroup
	for i, tg := range targets {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			results[i] = c.cfg.Check(cctx, tg.addr) == nil
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := false
	for i, tg := range targets {
		old, checked := c.health[tg.key]
		if !checked {
			old = true
		}
		if old != results[i] {
			changed = true
			c.log.Info("catalog service health", "service", tg.key, "healthy", results[i])
		}
		c.health[tg.key] = results[i]
	}
	if changed {
		if err := c.resignLocked(); err != nil {
			c.log.Error("catalog health update", "err", err)
			return
		}
		c.afterOwnChangeLocked()
	}
}
