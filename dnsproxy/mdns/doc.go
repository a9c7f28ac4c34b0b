// Package mdns is the box's Multicast DNS responder and browser on its LAN
// (RFC 6762, with DNS-SD records of RFC 6763).
//
// A [Responder] speaks mDNS on exactly one interface, the box's LAN. It
// answers for "<Hostname>.local" (A/AAAA and the reverse PTRs of its
// addresses) and for the DNS-SD records of the services it is given: the
// service type enumeration PTR "_services._dns-sd._udp.local" (RFC 6763 §9),
// one PTR per type (§4.1), SRV and TXT per instance (§5–6), with the
// additional records of §12. Services of other boxes of the community are
// advertised the same way with their own target host names and addresses,
// which makes the box a discovery proxy in the spirit of RFC 8766: LAN
// clients browsing with avahi or dns-sd see the whole community, while
// multicast never leaves the LAN (the catalog, not mDNS, crosses the
// overlay).
//
// What it implements of RFC 6762: probing and announcing (§8, simplified:
// three probes, then two announcements one second apart, again on every
// change), goodbyes with TTL 0 for removed records and on stop (§10.1),
// QU and QM questions (§5.4), direct unicast queries (§5.5), legacy unicast
// queries from ports other than 5353 answered by unicast with the query's
// ID, its question and TTLs of at most ten seconds (§6.7), the cache-flush
// bit on unique records (§10.2), known-answer suppression (§7.1), at most one
// multicast of a record per second (§6), host records with TTL 120 s and
// the others with 75 minutes (§10), responses ignored unless they come from
// port 5353 (§6), and messages split so that each fits one Ethernet frame.
//
// The browser (Config.Browse) looks for services of the given types on the
// LAN: it asks with exponentially spaced queries carrying known answers
// (§5.2, §7.1), listens to every response passively, resolves SRV, TXT and
// addresses, refreshes records at 80–95 % of their TTL, honours the
// cache-flush bit and goodbyes, and reports complete services through
// [Responder.Found]. Its cache is bounded; records beyond the bound are
// dropped and counted.
//
// # What it does not do
//
// It does not rename itself on a conflict (a conflicting record of another
// host is logged and counted; the records stay), does not probe again for
// services added by Update (they are announced directly), does not delay
// shared answers by 20–120 ms to aggregate them, sends no NSEC negative
// answers, and does not reflect multicast between interfaces: one
// Responder, one interface.
package mdns
