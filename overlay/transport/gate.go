package transport

import (
	"sync/atomic"
	"time"
)

// DefaultInflight is the number of data packets a Gate lets into WireGuard
// when Config.Inflight is 0.
//
// wireguard-go holds every packet in a 64 KiB buffer from its first read to
// its last write, and its queues hold up to 1024 batches of 128 packets: a
// single TCP stream that outruns the CPU fills them with thousands of
// packets, hundreds of MiB. 128 packets are four of WireGuard's batches (see
// DefaultBatchSize) in flight, enough to keep both cores of a small box busy.
const DefaultInflight = 128

// DefaultBatchSize is the batch size the Bind reports to WireGuard when
// Config.BatchSize is 0.
const DefaultBatchSize = 32

// gateStall is how long a waiting Gate tolerates no progress before it
// concludes that the packets it counts were dropped inside WireGuard
// (replayed, unauthenticated, no peer, no session), which it is not told
// about, and forgets them.
const gateStall = 20 * time.Millisecond

// Gate bounds the data packets in flight through WireGuard in one
// direction, between the point where they enter (a socket or TUN read) and
// the point where they leave (a TUN write or socket send). The entering side
// calls Wait before reading a batch and Add after; the leaving side calls
// Done. When the bound is reached Wait blocks, so the backlog stays in the
// kernel (socket buffer, TUN queue), whose queue management drops and
// signals congestion, instead of in WireGuard's unbounded queues.
//
// The counting is an estimate: packets WireGuard drops on the way are never
// reported as Done. A Wait that sees no Done for a while resets the count,
// so a lost packet costs at most one such pause. The zero Gate and a nil
// Gate do not limit anything.
type Gate struct {
	limit  int64
	n      atomic.Int64  // packets in flight, estimated
	done   atomic.Uint64 // packets reported Done, for progress
	resets atomic.Uint64
	wake   chan struct{} // one token per Done, for a waiter
}

// NewGate returns a Gate that admits up to limit packets in flight; limit
// <= 0 means no limit.
func NewGate(limit int) *Gate {
	g := &Gate{wake: make(chan struct{}, 1)}
	if limit > 0 {
		g.limit = int64(limit)
	}
	return g
}

// Wait blocks while the Gate is full. t is the caller's own timer (each
// waiting goroutine has one, so that waiting does not allocate); it must be
// stopped or expired, and is left so. Any number of goroutines may wait at
// once (a Bind has one per socket).
func (g *Gate) Wait(t *time.Timer) {
	if g == nil || g.limit == 0 || g.n.Load() < g.limit {
		return
	}
	seen := g.done.Load()
	t.Reset(gateStall)
	defer t.Stop()
	// Done leaves one token for all waiters; whoever leaves passes it on,
	// so that every waiter sees the room, not only the first.
	defer g.wakeOne()
	for g.n.Load() >= g.limit {
		select {
		case <-g.wake:
		case <-t.C:
			if d := g.done.Load(); d != seen {
				seen = d
				t.Reset(gateStall)
				continue
			}
			// Nothing left in a whole stall period: what we count was
			// dropped inside WireGuard.
			g.n.Store(0)
			g.resets.Add(1)
			return
		}
	}
}

// Add counts k packets that entered.
func (g *Gate) Add(k int) {
	if g == nil || k <= 0 {
		return
	}
	g.n.Add(int64(k))
}

// Done counts k packets that left, and wakes a waiter.
func (g *Gate) Done(k int) {
	if g == nil || k <= 0 {
		return
	}
	g.done.Add(uint64(k))
	for {
		// After a reset, packets counted before it leave: do not go below
		// zero, which would admit more than the limit.
		v := g.n.Load()
		if g.n.CompareAndSwap(v, max(v-int64(k), 0)) {
			break
		}
	}
	g.wakeOne()
}

// wakeOne leaves a token for a waiter, unless one is there already.
func (g *Gate) wakeOne() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// InFlight returns the current estimate.
func (g *Gate) InFlight() int {
	if g == nil {
		return 0
	}
	return int(max(g.n.Load(), 0))
}

// Resets counts the times the Gate forgot packets that never left.
func (g *Gate) Resets() uint64 {
	if g == nil {
		return 0
	}
	return g.resets.Load()
}
