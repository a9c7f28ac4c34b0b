package transport

import (
	"net/netip"
	"slices"
	"time"

	"github.com/cloudbox/cloudbox/overlay/disco"
	"golang.zx2c4.com/wireguard/conn"
)

// Timing holds the intervals of path discovery. The zero value of each
// field means the default in DefaultTiming.
type Timing struct {
	// Heartbeat is how often each candidate path of each peer is pinged.
	Heartbeat time.Duration
	// Trust is how long a path stays live after its last pong. It spans
	// more than two heartbeats so one lost ping does not drop a path.
	Trust time.Duration
	// DirectGrace is how long a new peer is tried only directly before
	// relaying is considered.
	DirectGrace time.Duration
	// CallMeMaybe is how often a relayed peer is asked to punch a hole.
	CallMeMaybe time.Duration
	// LearnedTTL is how long an endpoint learned from disco (not configured)
	// is kept after it was last confirmed.
	LearnedTTL time.Duration
}

// DefaultTiming is used for every zero field of Config.Timing. With it a
// dead path is noticed within 5 s and a new direct path within 2 s.
var DefaultTiming = Timing{
	Heartbeat:   2 * time.Second,
	Trust:       5 * time.Second,
	DirectGrace: 3 * time.Second,
	CallMeMaybe: 5 * time.Second,
	LearnedTTL:  2 * time.Minute,
}

func (t Timing) withDefaults() Timing {
	d := DefaultTiming
	if t.Heartbeat > 0 {
		d.Heartbeat = t.Heartbeat
	}
	if t.Trust > 0 {
		d.Trust = t.Trust
	}
	if t.DirectGrace > 0 {
		d.DirectGrace = t.DirectGrace
	}
	if t.CallMeMaybe > 0 {
		d.CallMeMaybe = t.CallMeMaybe
	}
	if t.LearnedTTL > 0 {
		d.LearnedTTL = t.LearnedTTL
	}
	return d
}

const (
	// maxDirectPaths bounds the candidate endpoints kept per peer.
	maxDirectPaths = 16
	// maxRelayProbes bounds the relays probed at once for one peer.
	maxRelayProbes = 3
	// maxPending bounds the outstanding pings per peer.
	maxPending = 64
)

// target is where a ping goes: a direct address, or a peer through a relay.
type target struct {
	addr netip.AddrPort // direct when valid
	via  Key            // relay when addr is not valid
}

func (t target) relayed() bool { return !t.addr.IsValid() }

// directPath is one candidate underlay endpoint of a peer.
type directPath struct {
	addr       netip.AddrPort
	ep         conn.Endpoint // inner Bind's endpoint for addr
	configured bool          // from SetPeers; learned paths expire
	added      time.Time
	lastPing   time.Time
	lastPong   time.Time
	rtt        time.Duration
}

func (d *directPath) live(now time.Time, trust time.Duration) bool {
	return !d.lastPong.IsZero() && now.Sub(d.lastPong) < trust
}

// relayPath is a peer reached through another peer.
type relayPath struct {
	lastPing time.Time
	lastPong time.Time
	rtt      time.Duration
}

func (r *relayPath) live(now time.Time, trust time.Duration) bool {
	return !r.lastPong.IsZero() && now.Sub(r.lastPong) < trust
}

type pendingPing struct {
	to   target
	sent time.Time
}

// choiceKind says how packets to a peer leave.
type choiceKind uint8

const (
	choiceNone choiceKind = iota
	choiceDirect
	choiceRelay
)

// choice is where packets to a peer go now.
type choice struct {
	kind      choiceKind
	addr      netip.AddrPort // choiceDirect
	ep        conn.Endpoint  // choiceDirect
	via       Key            // choiceRelay
	confirmed bool           // a pong came back over it within Trust
	rtt       time.Duration
	// While unconfirmed, handshake messages also go the other way, so that
	// a lost guess does not cost WireGuard's 5 s handshake retry.
	altEP  conn.Endpoint // a direct guess, when the choice is a relay
	altVia Key           // a relay, when the choice is a direct guess
}

func (c choice) same(d choice) bool {
	return c.kind == d.kind && c.addr == d.addr && c.via == d.via && c.confirmed == d.confirmed
}

// pathSet is the path state of one peer: the state machine that decides
// between direct paths and relays. It does no I/O and reads no clock; the
// Bind calls it with the time and guards it with its mutex.
type pathSet struct {
	timing  Timing
	direct  []*directPath
	relays  map[Key]*relayPath
	pending map[disco.TxID]pendingPing
	start   time.Time // when the peer appeared; DirectGrace counts from here
	lastCMM time.Time
	cur     choice
	// seen holds the source addresses of recent authenticated disco
	// messages from the peer. They identify the peer as the sender of
	// relay envelopes even when they are not usable paths (a multihomed
	// peer answering from another address, an excluded address).
	seen map[netip.AddrPort]time.Time
}

func newPathSet(t Timing, now time.Time) *pathSet {
	return &pathSet{
		timing:  t,
		relays:  make(map[Key]*relayPath),
		pending: make(map[disco.TxID]pendingPing),
		start:   now,
		seen:    make(map[netip.AddrPort]time.Time),
	}
}

// maxSeen bounds the sender addresses remembered per peer.
const maxSeen = 8

// sawFrom records an authenticated message from addr and reports whether
// the address is new.
func (ps *pathSet) sawFrom(addr netip.AddrPort, now time.Time) bool {
	if _, ok := ps.seen[addr]; ok {
		ps.seen[addr] = now
		return false
	}
	if len(ps.seen) >= maxSeen {
		var oldest netip.AddrPort
		for a, t := range ps.seen {
			if !oldest.IsValid() || t.Before(ps.seen[oldest]) {
				oldest = a
			}
		}
		delete(ps.seen, oldest)
	}
	ps.seen[addr] = now
	return true
}

func (ps *pathSet) find(addr netip.AddrPort) *directPath {
	for _, d := range ps.direct {
		if d.addr == addr {
			return d
		}
	}
	return nil
}

// setConfigured makes addrs the configured endpoints. Endpoints no longer
// configured become learned ones and expire unless disco confirms them.
func (ps *pathSet) setConfigured(addrs []netip.AddrPort, mkEP func(netip.AddrPort) conn.Endpoint, now time.Time) {
	for _, d := range ps.direct {
		d.configured = false
	}
	for _, a := range addrs {
		if d := ps.find(a); d != nil {
			d.configured = true
			continue
		}
		if len(ps.direct) >= maxDirectPaths {
			break
		}
		ps.direct = append(ps.direct, &directPath{addr: a, ep: mkEP(a), configured: true, added: now})
	}
	// Configured endpoints first, in the configured order; it is the order
	// of the unconfirmed guess.
	slices.SortStableFunc(ps.direct, func(a, b *directPath) int {
		switch {
		case a.configured == b.configured:
			return 0
		case a.configured:
			return -1
		}
		return 1
	})
}

// addLearned adds an endpoint that disco suggested (a ping's source address
// or a call-me-maybe). It reports whether the endpoint is new.
func (ps *pathSet) addLearned(addr netip.AddrPort, mkEP func(netip.AddrPort) conn.Endpoint, now time.Time) bool {
	if d := ps.find(addr); d != nil {
		return false
	}
	if len(ps.direct) >= maxDirectPaths {
		// Make room by dropping the oldest unconfirmed learned endpoint.
		victim := -1
		for i, d := range ps.direct {
			if d.configured || !d.lastPong.IsZero() {
				continue
			}
			if victim < 0 || d.added.Before(ps.direct[victim].added) {
				victim = i
			}
		}
		if victim < 0 {
			return false
		}
		ps.direct = slices.Delete(ps.direct, victim, victim+1)
	}
	ps.direct = append(ps.direct, &directPath{addr: addr, ep: mkEP(addr), added: now})
	return true
}

// bestDirect returns the live direct path with the lowest RTT, keeping the
// current one unless another is clearly (20 %) faster.
func (ps *pathSet) bestDirect(now time.Time) *directPath {
	var best *directPath
	for _, d := range ps.direct {
		if d.live(now, ps.timing.Trust) && (best == nil || d.rtt < best.rtt) {
			best = d
		}
	}
	if best != nil && ps.cur.kind == choiceDirect && ps.cur.addr != best.addr {
		if d := ps.find(ps.cur.addr); d != nil && d.live(now, ps.timing.Trust) && d.rtt <= best.rtt+best.rtt/5 {
			return d
		}
	}
	return best
}

func (ps *pathSet) hasLiveDirect(now time.Time) bool {
	return ps.bestDirect(now) != nil
}

// due returns the pings to send now and whether a call-me-maybe is due.
// relays lists the peers that could relay to this one, best first.
func (ps *pathSet) due(now time.Time, relays []Key) (pings []target, callMeMaybe bool) {
	for _, d := range ps.direct {
		if now.Sub(d.lastPing) >= ps.timing.Heartbeat {
			pings = append(pings, target{addr: d.addr})
		}
	}
	if ps.hasLiveDirect(now) {
		return pings, false
	}
	probes := 0
	// Keep probing the relay in use, then the best candidates.
	if ps.cur.kind == choiceRelay && slices.Contains(relays, ps.cur.via) {
		if r := ps.relays[ps.cur.via]; r == nil || now.Sub(r.lastPing) >= ps.timing.Heartbeat {
			pings = append(pings, target{via: ps.cur.via})
		}
		probes++
	}
	for _, k := range relays {
		if probes >= maxRelayProbes {
			break
		}
		if ps.cur.kind == choiceRelay && k == ps.cur.via {
			continue
		}
		probes++
		if r := ps.relays[k]; r == nil || now.Sub(r.lastPing) >= ps.timing.Heartbeat {
			pings = append(pings, target{via: k})
		}
	}
	if len(relays) > 0 && len(ps.direct) > 0 && now.Sub(ps.lastCMM) >= ps.timing.CallMeMaybe {
		ps.lastCMM = now
		callMeMaybe = true
	}
	return pings, callMeMaybe
}

// sent records a ping.
func (ps *pathSet) sent(to target, tx disco.TxID, now time.Time) {
	if to.relayed() {
		r := ps.relays[to.via]
		if r == nil {
			r = &relayPath{}
			ps.relays[to.via] = r
		}
		r.lastPing = now
	} else if d := ps.find(to.addr); d != nil {
		d.lastPing = now
	}
	if len(ps.pending) >= maxPending {
		ps.prunePending(now, true)
	}
	ps.pending[tx] = pendingPing{to: to, sent: now}
}

// prunePending forgets pings older than Trust, or all of them when full.
func (ps *pathSet) prunePending(now time.Time, all bool) {
	for tx, p := range ps.pending {
		if all || now.Sub(p.sent) >= ps.timing.Trust {
			delete(ps.pending, tx)
		}
	}
}

// pongResult says what a pong changed.
type pongResult uint8

const (
	pongUnsolicited pongResult = iota // unknown txid or wrong path: ignored
	pongOK                            // path confirmed again
	pongNewDirect                     // a direct path confirmed for the first time
)

// onPong processes a pong that arrived directly (via zero) or through the
// relay via.
func (ps *pathSet) onPong(tx disco.TxID, via Key, now time.Time) pongResult {
	p, ok := ps.pending[tx]
	if !ok {
		return pongUnsolicited
	}
	rtt := now.Sub(p.sent)
	if p.to.relayed() {
		// A relayed ping must be answered through a relay, though not
		// necessarily the one it went through: over several hops the way
		// back may end at another neighbour. The txid proves the ping
		// reached the peer through p.to.via, which is what counts.
		if via.IsZero() {
			return pongUnsolicited
		}
		delete(ps.pending, tx)
		r := ps.relays[p.to.via]
		if r == nil {
			r = &relayPath{}
			ps.relays[p.to.via] = r
		}
		r.lastPong, r.rtt = now, rtt
		return pongOK
	}
	// A direct ping must be answered directly. The answer may come from
	// another source address than the one pinged (a multihomed peer without
	// sticky sockets): the txid, sealed by the peer, proves the ping got
	// there and the pong came back, which is what confirms the path.
	if !via.IsZero() {
		return pongUnsolicited
	}
	delete(ps.pending, tx)
	d := ps.find(p.to.addr)
	if d == nil {
		return pongUnsolicited
	}
	first := d.lastPong.IsZero()
	d.lastPong, d.rtt = now, rtt
	if first {
		return pongNewDirect
	}
	return pongOK
}

// expire forgets stale learned endpoints, sender addresses, relays and
// pings. It reports whether an address was removed.
func (ps *pathSet) expire(now time.Time) (removed bool) {
	ttl := ps.timing.LearnedTTL
	ps.direct = slices.DeleteFunc(ps.direct, func(d *directPath) bool {
		if d.configured {
			return false
		}
		last := d.added
		if d.lastPong.After(last) {
			last = d.lastPong
		}
		if now.Sub(last) > ttl {
			removed = true
			return true
		}
		return false
	})
	for k, r := range ps.relays {
		if now.Sub(r.lastPing) > ttl && now.Sub(r.lastPong) > ttl {
			delete(ps.relays, k)
		}
	}
	for a, t := range ps.seen {
		if now.Sub(t) > ttl {
			delete(ps.seen, a)
			removed = true
		}
	}
	ps.prunePending(now, false)
	return removed
}

// relaySwitchMargin is how much faster, at least, another relay must be
// before a peer's packets leave the relay they use.
const relaySwitchMargin = 2 * time.Millisecond

// choose decides where packets go now and remembers it. relays lists the
// peers that could relay to this one (they have a live direct path from us),
// best first.
//
// In order: the best live direct path; the best live relay among relays; an
// unconfirmed direct guess during DirectGrace; an unconfirmed relay; an
// unconfirmed direct guess; nothing.
func (ps *pathSet) choose(now time.Time, relays []Key) choice {
	c := ps.decide(now, relays)
	ps.cur = c
	return c
}

func (ps *pathSet) decide(now time.Time, relays []Key) choice {
	if d := ps.bestDirect(now); d != nil {
		return choice{kind: choiceDirect, addr: d.addr, ep: d.ep, confirmed: true, rtt: d.rtt}
	}
	var best Key
	var bestRelay *relayPath
	for _, k := range relays {
		r := ps.relays[k]
		if r == nil || !r.live(now, ps.timing.Trust) {
			continue
		}
		if bestRelay == nil || r.rtt < bestRelay.rtt {
			best, bestRelay = k, r
		}
	}
	if bestRelay != nil && ps.cur.kind == choiceRelay && ps.cur.via != best {
		// Stay on the current relay unless another is clearly faster: by a
		// fifth and by relaySwitchMargin, so that sub-millisecond jitter on
		// a LAN does not move packets back and forth between relays.
		if r := ps.relays[ps.cur.via]; r != nil && r.live(now, ps.timing.Trust) && slices.Contains(relays, ps.cur.via) && r.rtt <= bestRelay.rtt+max(bestRelay.rtt/5, relaySwitchMargin) {
			best, bestRelay = ps.cur.via, r
		}
	}
	if bestRelay != nil {
		return choice{kind: choiceRelay, via: best, confirmed: true, rtt: bestRelay.rtt}
	}
	guess := func() choice {
		d := ps.direct[0]
		c := choice{kind: choiceDirect, addr: d.addr, ep: d.ep}
		if len(relays) > 0 {
			c.altVia = relays[0]
		}
		return c
	}
	if len(ps.direct) > 0 && now.Sub(ps.start) < ps.timing.DirectGrace {
		return guess()
	}
	if len(relays) > 0 {
		c := choice{kind: choiceRelay, via: relays[0]}
		if ps.cur.kind == choiceRelay && slices.Contains(relays, ps.cur.via) {
			c.via = ps.cur.via
		}
		if len(ps.direct) > 0 {
			c.altEP = ps.direct[0].ep
		}
		return c
	}
	if len(ps.direct) > 0 {
		return guess()
	}
	return choice{}
}
