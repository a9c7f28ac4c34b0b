package voip

import (
	"net/netip"
	"sync"
	"time"
)

// failLimiter counts failed authentications per source address and blocks
// an address that failed too often: a SIP port on a community network is
// scanned constantly. Safe for concurrent use.
type failLimiter struct {
	max    int           // failures allowed within window
	window time.Duration // counting window, also the block time
	limit  int           // most tracked addresses; past it the oldest are dropped

	mu      sync.Mutex
	entries map[netip.Addr]*failEntry
}

type failEntry struct {
	start    time.Time // of the current window
	count    int
	blockEnd time.Time
}

func newFailLimiter(max int, window time.Duration) *failLimiter {
	return &failLimiter{max: max, window: window, limit: 65536, entries: make(map[netip.Addr]*failEntry)}
}

// key groups IPv6 addresses by /64, as one host usually has a whole one.
func limiterKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// blocked reports whether src may not try to authenticate now.
func (l *failLimiter) blocked(src netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entries[limiterKey(src)]
	return e != nil && now.Before(e.blockEnd)
}

// fail records a failure of src and reports whether src is now blocked.
func (l *failLimiter) fail(src netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := limiterKey(src)
	e := l.entries[k]
	if e == nil {
		if len(l.entries) >= l.limit {
			l.prune(now)
		}
		e = &failEntry{start: now}
		l.entries[k] = e
	}
	if now.Sub(e.start) > l.window {
		e.start, e.count = now, 0
	}
	e.count++
	if e.count > l.max {
		e.blockEnd = now.Add(l.window)
		return true
	}
	return false
}

// prune drops entries that neither count nor block any more; when all are
// live it drops everything (better than growing without bound).
func (l *failLimiter) prune(now time.Time) {
	for k, e := range l.entries {
		if now.Sub(e.start) > l.window && !now.Before(e.blockEnd) {
			delete(l.entries, k)
		}
	}
	if len(l.entries) >= l.limit {
		clear(l.entries)
	}
}

// rateLimiter is a token bucket per source address (IPv6 by /64). Safe for
// concurrent use.
type rateLimiter struct {
	rate  float64 // tokens per second
	burst float64

	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(perSecond float64, burst int) *rateLimiter {
	return &rateLimiter{rate: perSecond, burst: float64(burst), buckets: make(map[netip.Addr]*bucket)}
}

// allow takes a token of src's bucket, if there is one.
func (l *rateLimiter) allow(src netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := limiterKey(src)
	b := l.buckets[k]
	if b == nil {
		if len(l.buckets) >= 65536 {
			for k, b := range l.buckets {
				if now.Sub(b.last).Seconds()*l.rate >= l.burst {
					delete(l.buckets, k)
				}
			}
			if len(l.buckets) >= 65536 {
				clear(l.buckets)
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[k] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
