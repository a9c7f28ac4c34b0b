// Package dnsproxy is the box's DNS server: it answers for the community zone
// (box names and DNS-SD service discovery) and forwards everything else, with
// a cache, to the upstream resolvers the box was given.
//
// A [Server] listens on UDP and TCP (RFC 1035 §4.2, RFC 7766) on the box's
// LAN and overlay addresses. Its parts:
//
//   - The community zone ([Config].Domain, "cb.home.arpa." by default, see
//     [DefaultDomain]) is answered authoritatively from a [Zone] snapshot that
//     [Server.SetZone] compiles into pre-packed wire answers and swaps in
//     atomically: A/AAAA for box names, and the DNS-SD records of RFC 6763
//     (browse domain §11, service type enumeration §9, PTR §4.1, SRV/TXT §5–6,
//     additional records §12). Names that do not exist get NXDOMAIN, names
//     without the asked type NODATA, both with the SOA in the authority
//     section (RFC 2308 §2), modelled on the locally served zones of RFC 6303.
//   - Everything else goes to the upstreams, tried in turn with failover; the
//     answers are cached by (name, type, class, DO bit) for their TTL, with
//     negative caching (RFC 2308 §5), prefetching of popular names before
//     they expire, coalescing of identical concurrent queries, and serving of
//     stale answers when no upstream answers (RFC 8767).
//   - Only clients in [Config].AllowedNets get answers (REFUSED otherwise),
//     each non-loopback client address is rate limited, UDP answers are
//     truncated to the client's EDNS(0) buffer size (RFC 6891 §6.2.5), and
//     the work in flight is bounded: a burst beyond it is dropped and counted,
//     never queued without bound.
//
// # Hot path
//
// A fixed set of workers per UDP socket read queries with reused buffers. A
// small hand-written parser reads the question straight from the wire; a
// cache hit or a zone answer is served by copying pre-packed bytes behind the
// client's own header ID and question and patching the TTLs at offsets
// recorded when the answer was stored, without allocating. Only what is
// unusual (other opcodes, several questions, compressed question names, EDNS
// versions) goes through github.com/miekg/dns, which is also used to build
// and check every message that is not on the hot path.
//
// # What it does not do
//
// It does not validate DNSSEC (the DO and CD bits are passed on and DO is
// part of the cache key), does not recurse from the root itself, does not do
// zone transfers, and does not speak mDNS (RFC 6762) on the LAN: that is a
// separate component. Counters are returned by [Server.Metrics]; rendering
// them for Prometheus is the daemon's job.
package dnsproxy
