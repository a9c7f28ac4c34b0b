package dnsproxy

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// entry is one cached upstream answer, packed for the hot path. Everything
// but the atomics is immutable once the entry is in the cache; a refresh
// replaces the whole entry.
type entry struct {
	key string // see appendKey

	// The response: its RCODE, whether the upstream set AD, the section
	// counts (without OPT) and everything after the question.
	rcode      int
	ad         bool
	an, ns, ar uint16
	body       []byte
	// ttlOff are the offsets in body of each record's TTL field, ttl the
	// TTLs as stored, so that a hit can give the remaining TTLs by patching.
	ttlOff []uint16
	ttl    []uint32

	// Times in nanoseconds since the server's epoch: when the answer came,
	// when it expires (its smallest TTL later), and until when it may be
	// served stale (RFC 8767 §4).
	stored, expires, staleUntil int64

	hits        atomic.Uint32
	prefetching atomic.Bool
	// recheck is the time until which the entry is served stale without
	// asking the upstreams, after they failed to refresh it (RFC 8767 §5).
	recheck atomic.Int64
}

// ttlLeft is the number of whole seconds of TTL the record at ttlOff[i] has
// left at now.
func (e *entry) ttlLeft(i int, now int64) uint32 {
	age := (now - e.stored) / int64(time.Second)
	t := int64(e.ttl[i]) - age
	if t < 0 {
		return 0
	}
	return uint32(t)
}

// appendEntry appends the response to q in p from e. stale sets every TTL to
// 30 seconds (RFC 8767 §4).
func appendEntry(dst, p []byte, q *query, e *entry, now int64, stale bool, udpSize uint16) []byte {
	bits := uint16(flagRA)
	// RFC 6840 §5.8: AD only for clients that asked with DO or AD.
	if e.ad && (q.do || q.flags&flagAD != 0) {
		bits |= flagAD
	}
	base := len(dst) + q.end
	dst = appendResponse(dst, p, q, responseFlags(q, bits, e.rcode), e.an, e.ns, e.ar, e.body, udpSize, e.rcode)
	for i, off := range e.ttlOff {
		t := uint32(staleTTL)
		if !stale {
			t = e.ttlLeft(i, now)
		}
		binary.BigEndian.PutUint32(dst[base+int(off):], t)
	}
	return dst
}

// cacheable tells what newEntry made of a response.
type cacheable int

const (
	notCacheable cacheable = iota
	positive
	negative
)

// newEntry packs an upstream response r to the question in key for the
// cache. The answer's TTL is the smallest in its answer section, capped at
// maxTTL; a negative answer's (NXDOMAIN or NODATA) is that of the SOA in
// its authority section, the smaller of the SOA's TTL and its MINIMUM field
// (RFC 2308 §5), capped at maxNeg. Negative answers without an SOA, and
// other RCODEs, are not cacheable (RFC 2308 §5), but still packed, to be
// given to the client that asked.
func newEntry(key string, r *dns.Msg, now int64, maxTTL, maxNeg time.Duration, staleFor time.Duration) (*entry, cacheable, error) {
	kind := notCacheable
	extra := r.Extra[:0:0]
	for _, rr := range r.Extra {
		switch rr.Header().Rrtype {
		case dns.TypeOPT, dns.TypeTSIG, dns.TypeSIG:
			continue
		}
		extra = append(extra, rr)
	}
	r.Extra = extra

	capTTL := uint32(maxTTL / time.Second)
	ttl := capTTL
	for _, sec := range [][]dns.RR{r.Answer, r.Ns, r.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			h.Ttl = min(h.Ttl, capTTL)
		}
	}
	for _, rr := range r.Answer {
		ttl = min(ttl, rr.Header().Ttl)
	}
	switch {
	case r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0:
		kind = positive
	case r.Rcode == dns.RcodeNameError || r.Rcode == dns.RcodeSuccess:
		for _, rr := range r.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				// RFC 2308 §3: the SOA is given with the negative TTL.
				soa.Hdr.Ttl = min(soa.Hdr.Ttl, soa.Minttl, uint32(maxNeg/time.Second))
				ttl = min(ttl, soa.Hdr.Ttl)
				kind = negative
				break
			}
		}
	}

	r.Compress = true
	w, err := r.Pack()
	if err != nil {
		return nil, notCacheable, fmt.Errorf("packing answer: %w", err)
	}
	end, err := skipName(w, headerLen)
	if err != nil {
		return nil, notCacheable, fmt.Errorf("packing answer: %w", err)
	}
	end += 4
	if end != headerLen+len(keyName(key))+4 {
		return nil, notCacheable, fmt.Errorf("packing answer: question of %d bytes, want %d", end-headerLen, len(keyName(key))+4)
	}
	e := &entry{
		key:    key,
		rcode:  r.Rcode,
		ad:     r.AuthenticatedData,
		an:     uint16(len(r.Answer)),
		ns:     uint16(len(r.Ns)),
		ar:     uint16(len(r.Extra)),
		body:   w[end:],
		stored: now,
	}
	offs, _, err := rrTTLOffsets(nil, w, end, len(r.Answer)+len(r.Ns)+len(r.Extra))
	if err != nil {
		return nil, notCacheable, fmt.Errorf("walking packed answer: %w", err)
	}
	e.ttlOff = make([]uint16, len(offs))
	e.ttl = make([]uint32, len(offs))
	for i, o := range offs {
		e.ttlOff[i] = uint16(o - end)
		e.ttl[i] = binary.BigEndian.Uint32(w[o:])
	}
	e.expires = now + int64(ttl)*int64(time.Second)
	e.staleUntil = e.expires
	if staleFor > 0 {
		e.staleUntil += int64(staleFor)
	}
	return e, kind, nil
}

const cacheShards = 16

// cache maps keys (see appendKey) to entries. Lookups take a shard's read
// lock and do not allocate. When a shard is full, the entry with the
// earliest end of life among a few sampled ones is evicted.
type cache struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]*entry
	_  [64]byte // keep shards' locks on separate cache lines
}

func newCache(size int) *cache {
	c := &cache{seed: maphash.MakeSeed(), perShard: max(1, (size+cacheShards-1)/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*entry)
	}
	return c
}

func (c *cache) shard(key []byte) *cacheShard {
	return &c.shards[maphash.Bytes(c.seed, key)%cacheShards]
}

// get returns the entry for key, or nil.
func (c *cache) get(key []byte) *entry {
	s := c.shard(key)
	s.mu.RLock()
	e := s.m[string(key)]
	s.mu.RUnlock()
	return e
}

// put stores e, replacing an entry with the same key.
func (c *cache) put(e *entry, now int64) {
	s := c.shard([]byte(e.key))
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[e.key]; !ok && len(s.m) >= c.perShard {
		// Sampled eviction: map iteration starts at a random place.
		var victim string
		var end int64
		n := 0
		for k, o := range s.m {
			if o.staleUntil <= now {
				victim = k
				break
			}
			if n == 0 || o.staleUntil < end {
				victim, end = k, o.staleUntil
			}
			if n++; n == 8 {
				break
			}
		}
		delete(s.m, victim)
	}
	s.m[e.key] = e
}

// len returns the number of entries.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
