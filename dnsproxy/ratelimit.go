package dnsproxy

import (
	"encoding/binary"
	"net/netip"
	"sync"
)

const (
	limiterShards = 16
	// limiterClients bounds the clients tracked per shard; when a shard is
	// full an arbitrary client is forgotten, which at worst gives it a fresh
	// burst.
	limiterClients = 1024
)

// limiter is a token bucket per client: rate tokens per second, at most
// burst, one per query. IPv6 clients share a bucket per /64, the usual size
// of one host's or one LAN's addresses.
type limiter struct {
	perNano float64
	burst   float64
	shards  [limiterShards]limiterShard
}

type limiterShard struct {
	mu sync.Mutex
	m  map[netip.Addr]bucket
	_  [64]byte
}

type bucket struct {
	tokens float64
	last   int64 // nanoseconds since the server's epoch
}

func newLimiter(rate float64, burst int) *limiter {
	l := &limiter{perNano: rate / 1e9, burst: float64(max(burst, 1))}
	for i := range l.shards {
		l.shards[i].m = make(map[netip.Addr]bucket)
	}
	return l
}

// allow takes a token from a's bucket at now, and reports whether there was
// one. It does not allocate once a is known.
func (l *limiter) allow(a netip.Addr, now int64) bool {
	if a.Is6() {
		a = netip.PrefixFrom(a.WithZone(""), 64).Masked().Addr()
	}
	b16 := a.As16()
	h := (binary.LittleEndian.Uint64(b16[:8]) ^ binary.LittleEndian.Uint64(b16[8:])) * 0x9e3779b97f4a7c15
	s := &l.shards[h>>60]
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[a]
	if !ok {
		if len(s.m) >= limiterClients {
			for k := range s.m { // map iteration starts at a random place
				delete(s.m, k)
				break
			}
		}
		b = bucket{tokens: l.burst, last: now}
	}
	if now > b.last {
		b.tokens = min(l.burst, b.tokens+float64(now-b.last)*l.perNano)
		b.last = now
	}
	allowed := b.tokens >= 1
	if allowed {
		b.tokens--
	}
	s.m[a] = b
	return allowed
}
