package dnsproxy

import "sync/atomic"

// Metrics are the server's counters since New, for the daemon to export.
// Every counter only grows.
type Metrics struct {
	// Queries counts every UDP packet and TCP message received.
	Queries uint64
	// ZoneAnswers counts answers from the community zone, NXDOMAIN and
	// NODATA included.
	ZoneAnswers uint64
	// CacheHits counts answers from a fresh cache entry, CacheMisses the
	// queries that needed the upstreams (an expired entry is a miss).
	CacheHits   uint64
	CacheMisses uint64
	// StaleServed counts answers from an expired entry because no upstream
	// answered (RFC 8767).
	StaleServed uint64
	// Prefetches counts background refreshes of popular entries.
	Prefetches uint64
	// Coalesced counts queries that waited for an identical query already
	// sent upstream instead of sending their own.
	Coalesced uint64
	// UpstreamQueries counts queries sent to an upstream, UpstreamErrors
	// those that failed (timeout, network error, SERVFAIL, REFUSED, a
	// malformed or mismatched answer).
	UpstreamQueries uint64
	UpstreamErrors  uint64
	// ServFail counts SERVFAIL answers: no upstream answered and nothing
	// stale was cached.
	ServFail uint64
	// Refused counts REFUSED answers: clients outside AllowedNets, zone
	// transfers, other classes, forwarding without upstreams.
	Refused uint64
	// RateLimited counts queries dropped by the per-client rate limit.
	RateLimited uint64
	// Malformed counts packets dropped because they are not a query.
	Malformed uint64
	// Dropped counts queries and TCP connections dropped because too many
	// were in progress (Config.MaxPending, Config.MaxTCPConns).
	Dropped uint64
	// Truncated counts UDP answers cut to the client's size with TC set.
	Truncated uint64
	// CacheEntries is the number of answers in the cache now.
	CacheEntries int
}

// counters are the live form of Metrics. Each UDP worker has its own, so
// that counting on the hot path never contends between cores.
type counters struct {
	queries, zoneAnswers, cacheHits, cacheMisses, staleServed, prefetches, coalesced,
	upstreamQueries, upstreamErrors, servFail, refused, rateLimited, malformed,
	dropped, truncated atomic.Uint64
	_ [64]byte // keep workers' counters on separate cache lines
}

func (c *counters) addTo(m *Metrics) {
	m.Queries += c.queries.Load()
	m.ZoneAnswers += c.zoneAnswers.Load()
	m.CacheHits += c.cacheHits.Load()
	m.CacheMisses += c.cacheMisses.Load()
	m.StaleServed += c.staleServed.Load()
	m.Prefetches += c.prefetches.Load()
	m.Coalesced += c.coalesced.Load()
	m.UpstreamQueries += c.upstreamQueries.Load()
	m.UpstreamErrors += c.upstreamErrors.Load()
	m.ServFail += c.servFail.Load()
	m.Refused += c.refused.Load()
	m.RateLimited += c.rateLimited.Load()
	m.Malformed += c.malformed.Load()
	m.Dropped += c.dropped.Load()
	m.Truncated += c.truncated.Load()
}

// Metrics returns the counters. It is safe to call at any time, also
// concurrently with Run.
func (s *Server) Metrics() Metrics {
	var m Metrics
	s.countersMu.Lock()
	for _, c := range s.counterSets {
		c.addTo(&m)
	}
	s.countersMu.Unlock()
	if s.cache != nil {
		m.CacheEntries = s.cache.len()
	}
	return m
}
