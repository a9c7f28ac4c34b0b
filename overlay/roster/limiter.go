package roster

import (
	"net/netip"
	"sync"
	"time"
)

// maxLimited bounds the sources the join limiter tracks; when it is full
// the source seen longest ago is forgotten.
const maxLimited = 4096

// limiter is a token bucket per source: an IPv4 address, or the /64 of an
// IPv6 address (one host usually has a whole /64).
type limiter struct {
	every time.Duration // one token per every
	burst float64

	mu      sync.Mutex
	buckets map[netip.Prefix]*bucket // mu guards
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(every time.Duration, burst int) *limiter {
	return &limiter{every: every, burst: float64(burst), buckets: make(map[netip.Prefix]*bucket)}
}

// sourceOf returns the bucket key of a source address.
func sourceOf(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, err := a.Prefix(bits)
	if err != nil { // invalid address: one bucket for all of them
		return netip.Prefix{}
	}
	return p
}

// allow takes a token for src at now; if there is none, it reports how long
// until there is one.
func (l *limiter) allow(src netip.Addr, now time.Time) (ok bool, retry time.Duration) {
	key := sourceOf(src)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxLimited {
			l.evictLocked()
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(l.burst, b.tokens+float64(elapsed)/float64(l.every))
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(l.every))
}

// evictLocked forgets the source seen longest ago.
func (l *limiter) evictLocked() {
	var oldest netip.Prefix
	var at time.Time
	first := true
	for k, b := range l.buckets {
		if first || b.last.Before(at) {
			oldest, at, first = k, b.last, false
		}
	}
	delete(l.buckets, oldest)
}
