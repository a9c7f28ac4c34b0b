package mdns

import (
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/miekg/dns"
)

const (
	// mdnsPort is the mDNS UDP port (RFC 6762 §5).
	mdnsPort = 5353
	// flushBit is the cache-flush bit in a record's class and quBit the
	// unicast-response bit in a question's class (RFC 6762 §10.2, §5.4).
	flushBit = 1 << 15
	quBit    = 1 << 15
	// maxPacket bounds every message sent, so that it fits one Ethernet
	// frame with IPv6 and UDP headers (RFC 6762 §17).
	maxPacket = 1400
	// legacyTTL caps the TTLs in answers to legacy unicast queries
	// (RFC 6762 §6.7), legacySize their size without EDNS(0).
	legacyTTL  = 10
	legacySize = 512
	// rateLimit is the least time between two multicasts of one record on
	// one interface (RFC 6762 §6).
	rateLimit = time.Second
	// probeWait is the time between probes (RFC 6762 §8.1) and
	// announceWait the time between the two announcements (§8.3).
	probeWait    = 250 * time.Millisecond
	announceWait = time.Second
	// maxBrowseWait caps the interval between browse queries, which starts
	// at one second and doubles (RFC 6762 §5.2).
	maxBrowseWait = time.Hour
	// maxResolveWait caps the backoff of queries that complete a service
	// found incomplete (its SRV, TXT or addresses missing).
	maxResolveWait = time.Minute
)

// family is a set of IP families, for multicast on IPv4, IPv6 or both.
type family uint8

const (
	fam4 family = 1 << iota
	fam6
)

// outgoing is a message the run loop sends.
type outgoing struct {
	msg *dns.Msg
	// to is the unicast destination; the zero value means multicast on
	// the families fams.
	to   netip.AddrPort
	fams family
}

// task is a scheduled probe or announcement.
type task struct {
	at    time.Time
	probe bool
	first bool            // the first probe asks for unicast answers (QU)
	keys  map[string]bool // records to announce; nil means all
}

// backoff is the state of a repeated query.
type backoff struct {
	next  time.Time
	every time.Duration
}

// core is the protocol logic without sockets: it takes packets and the
// clock and returns what to send. It is owned by the run loop (or a test)
// and not safe for concurrent use.
type core struct {
	// immutable after newCore
	log       *slog.Logger
	host      string            // "<Hostname>.local."
	typeNames map[string]string // browsed "_ipp._tcp.local." -> "_ipp._tcp"
	fams      family            // the families with a socket
	m         *counters

	zone       *zone
	lastMcast  map[string]time.Time // family and rrKey -> last multicast
	tasks      []task               // sorted by at
	cache      *cache
	browse     map[string]*backoff // type name -> next browse query
	resolve    map[string]*backoff // question -> next resolve query
	need       []dns.Question      // questions that would complete found services
	conflicted map[string]bool     // names whose conflicts were logged
	found      []Found
	// foundChanged is set when found changes; the run loop clears it.
	foundChanged bool
}

func newCore(log *slog.Logger, host string, browse []string, maxCache int, fams family, m *counters) *core {
	c := &core{
		log: log, host: host, typeNames: map[string]string{}, fams: fams, m: m,
		zone:      &zone{byName: map[string][]*record{}, instances: map[string]bool{}, hosts: map[string]bool{}},
		lastMcast: map[string]time.Time{}, cache: newCache(maxCache),
		browse: map[string]*backoff{}, resolve: map[string]*backoff{}, conflicted: map[string]bool{},
	}
	for _, t := range browse {
		c.typeNames[canon(t+"."+local)] = t
	}
	return c
}

// wire returns the copy of r to send, with ttl and, for unique records
// when flush is set, the cache-flush bit.
func wire(r *record, ttl uint32, flush bool) dns.RR {
	rr := dns.Copy(r.rr)
	rr.Header().Ttl = ttl
	if flush && r.unique {
		rr.Header().Class |= flushBit
	}
	return rr
}

func fullTTL(r *record) uint32 { return r.rr.Header().Ttl }

// pack returns messages with header h carrying answers, as many messages as
// needed to stay within maxPacket, and as many additional records as fit
// in the last one (they are optional, RFC 6762 §12).
func pack(h dns.MsgHdr, answers, extra []dns.RR) []*dns.Msg {
	mk := func() *dns.Msg { return &dns.Msg{MsgHdr: h, Compress: true} }
	var out []*dns.Msg
	m := mk()
	for _, rr := range answers {
		m.Answer = append(m.Answer, rr)
		if len(m.Answer) > 1 && m.Len() > maxPacket {
			m.Answer = m.Answer[:len(m.Answer)-1]
			out = append(out, m)
			m = mk()
			m.Answer = append(m.Answer, rr)
		}
	}
	for _, rr := range extra {
		m.Extra = append(m.Extra, rr)
		if m.Len() > maxPacket {
			m.Extra = m.Extra[:len(m.Extra)-1]
			break
		}
	}
	if len(m.Answer) > 0 || len(m.Extra) > 0 {
		out = append(out, m)
	}
	return out
}

func mkey(f family, key string) string { return string(rune('0'+f)) + key }

// multicast returns the multicast responses with answers (and their
// additional records) on every family, leaving out on each family the
// answers multicast there less than a second ago (RFC 6762 §6).
func (c *core) multicast(now time.Time, answers []*record) []outgoing {
	var out []outgoing
	for _, f := range []family{fam4, fam6} {
		if c.fams&f == 0 {
			continue
		}
		var send []*record
		for _, r := range answers {
			k := mkey(f, r.key)
			if last, ok := c.lastMcast[k]; ok && now.Sub(last) < rateLimit {
				c.m.rateLimited.Add(1)
				continue
			}
			c.lastMcast[k] = now
			send = append(send, r)
		}
		out = append(out, c.responses(0, f, netip.AddrPort{}, send, fullTTL, true)...)
	}
	return out
}

// responses builds the responses carrying answers and their additional
// records, to `to` or by multicast on family f.
func (c *core) responses(id uint16, f family, to netip.AddrPort, answers []*record, ttl func(*record) uint32, flush bool) []outgoing {
	if len(answers) == 0 {
		return nil
	}
	var ans, extra []dns.RR
	for _, r := range answers {
		ans = append(ans, wire(r, ttl(r), flush))
	}
	for _, r := range c.zone.additionals(answers) {
		extra = append(extra, wire(r, ttl(r), flush))
	}
	c.m.answered.Add(uint64(len(ans)))
	var out []outgoing
	for _, m := range pack(dns.MsgHdr{Id: id, Response: true, Authoritative: true}, ans, extra) {
		out = append(out, outgoing{msg: m, to: to, fams: f})
	}
	return out
}

// start takes the first zone and schedules probing and announcing
// (RFC 6762 §8) and the first browse queries (§5.2, after 20–120 ms).
func (c *core) start(now time.Time, z *zone) {
	c.zone = z
	d := rand.N(probeWait)
	c.schedule(task{at: now.Add(d), probe: true, first: true})
	c.schedule(task{at: now.Add(d + probeWait), probe: true})
	c.schedule(task{at: now.Add(d + 2*probeWait), probe: true})
	c.schedule(task{at: now.Add(d + 3*probeWait)})
	c.schedule(task{at: now.Add(d + 3*probeWait + announceWait)})
	for tn := range c.typeNames {
		c.browse[tn] = &backoff{next: now.Add(20*time.Millisecond + rand.N(100*time.Millisecond)), every: time.Second}
	}
}

func (c *core) schedule(t task) {
	i := sort.Search(len(c.tasks), func(i int) bool { return c.tasks[i].at.After(t.at) })
	c.tasks = slices.Insert(c.tasks, i, t)
}

// probes returns the probe queries for the unique records: one question of
// type ANY per name, with the proposed records in the authority section
// (RFC 6762 §8.1, §8.2).
func (c *core) probes(first bool) []outgoing {
	var names []string
	groups := map[string][]dns.RR{}
	for _, r := range c.zone.records {
		if !r.unique {
			continue
		}
		n := r.rr.Header().Name
		if groups[canon(n)] == nil {
			names = append(names, n)
		}
		groups[canon(n)] = append(groups[canon(n)], wire(r, fullTTL(r), false))
	}
	class := uint16(dns.ClassINET)
	if first {
		class |= quBit
	}
	var out []outgoing
	m := &dns.Msg{Compress: true}
	for _, n := range names {
		m.Question = append(m.Question, dns.Question{Name: n, Qtype: dns.TypeANY, Qclass: class})
		m.Ns = append(m.Ns, groups[canon(n)]...)
		if len(m.Question) > 1 && m.Len() > maxPacket {
			m.Question = m.Question[:len(m.Question)-1]
			m.Ns = m.Ns[:len(m.Ns)-len(groups[canon(n)])]
			out = append(out, outgoing{msg: m, fams: c.fams})
			m = &dns.Msg{Compress: true}
			m.Question = append(m.Question, dns.Question{Name: n, Qtype: dns.TypeANY, Qclass: class})
			m.Ns = append(m.Ns, groups[canon(n)]...)
		}
	}
	if len(m.Question) > 0 {
		out = append(out, outgoing{msg: m, fams: c.fams})
	}
	return out
}

// announce returns the announcement of the records with the given keys
// (nil: all), as unsolicited multicast responses (RFC 6762 §8.3).
func (c *core) announce(now time.Time, keys map[string]bool) []outgoing {
	var rs []*record
	for _, r := range c.zone.records {
		if keys == nil || keys[r.key] {
			rs = append(rs, r)
		}
	}
	return c.multicast(now, rs)
}

// goodbye returns multicast responses that withdraw rs: the records with
// TTL 0 (RFC 6762 §10.1), without the cache-flush bit so that no other
// record is flushed by mistake.
func (c *core) goodbye(rs []*record) []outgoing {
	var ans []dns.RR
	for _, r := range rs {
		ans = append(ans, wire(r, 0, false))
	}
	c.m.goodbyes.Add(uint64(len(ans)))
	var out []outgoing
	for _, m := range pack(dns.MsgHdr{Response: true, Authoritative: true}, ans, nil) {
		out = append(out, outgoing{msg: m, fams: c.fams})
	}
	return out
}

// stop returns the goodbyes for every record.
func (c *core) stop() []outgoing { return c.goodbye(c.zone.records) }

// update replaces the zone: removed records get goodbyes, new ones are
// announced now and again a second later.
func (c *core) update(now time.Time, z *zone) []outgoing {
	old := c.zone
	c.zone = z
	keep := map[string]bool{}
	for _, r := range z.records {
		keep[r.key] = true
	}
	had := map[string]bool{}
	for _, r := range old.records {
		had[r.key] = true
	}
	var gone []*record
	for _, r := range old.records {
		if !keep[r.key] {
			gone = append(gone, r)
		}
	}
	added := map[string]bool{}
	for k := range keep {
		if !had[k] {
			added[k] = true
		}
	}
	for k := range c.lastMcast {
		if !keep[k[1:]] {
			delete(c.lastMcast, k)
		}
	}
	clear(c.conflicted)
	c.cache.dirty = true // the own instances are not reported as found
	out := c.goodbye(gone)
	if len(added) > 0 {
		out = append(out, c.announce(now, added)...)
		c.schedule(task{at: now.Add(announceWait), keys: added})
	}
	return out
}

// handle processes one packet received from src; multicastDst tells
// whether it was sent to the mDNS group, f the family it came on.
func (c *core) handle(now time.Time, b []byte, src netip.AddrPort, multicastDst bool, f family) []outgoing {
	c.m.received.Add(1)
	var msg dns.Msg
	if err := msg.Unpack(b); err != nil {
		c.m.malformed.Add(1)
		return nil
	}
	// RFC 6762 §18.3, §18.11: other opcodes and response codes are ignored.
	if msg.Opcode != dns.OpcodeQuery || msg.Rcode != dns.RcodeSuccess {
		c.m.ignored.Add(1)
		return nil
	}
	if msg.Response {
		c.handleResponse(now, &msg, src)
		return nil
	}
	return c.handleQuery(now, &msg, src, multicastDst, f)
}

// handleQuery answers a query (RFC 6762 §5.4, §5.5, §6, §6.7, §7.1).
func (c *core) handleQuery(now time.Time, msg *dns.Msg, src netip.AddrPort, multicastDst bool, f family) []outgoing {
	c.m.queries.Add(1)
	legacy := src.Port() != mdnsPort
	if legacy {
		c.m.legacy.Add(1)
	}
	known := map[string]uint32{}
	if !legacy {
		for _, rr := range msg.Answer {
			rr.Header().Class &^= flushBit
			known[rrKey(rr)] = rr.Header().Ttl
		}
	}
	var mc, uc []*record
	seen := map[string]bool{}
	for _, q := range msg.Question {
		qu := q.Qclass&quBit != 0
		if class := q.Qclass &^ quBit; class != dns.ClassINET && class != dns.ClassANY {
			continue
		}
		for _, r := range c.zone.match(q.Name, q.Qtype) {
			if seen[r.key] {
				continue
			}
			seen[r.key] = true
			if ttl, ok := known[r.key]; ok && ttl >= fullTTL(r)/2 {
				c.m.suppressed.Add(1)
				continue
			}
			last, sent := c.lastMcast[mkey(f, r.key)]
			recent := sent && now.Sub(last) < time.Duration(fullTTL(r))*time.Second/4
			switch {
			case legacy, !multicastDst, qu && recent:
				uc = append(uc, r)
			default:
				mc = append(mc, r)
			}
		}
	}
	if legacy {
		return c.legacyAnswer(msg, src, f, uc)
	}
	out := c.responses(msg.Id, f, src, uc, fullTTL, false)
	return append(out, c.multicast(now, mc)...)
}

// legacyAnswer is the unicast answer to a query from a port other than
// 5353: the query's ID and question, TTLs of at most ten seconds, no
// cache-flush bits, truncated to what the querier can receive (§6.7).
func (c *core) legacyAnswer(msg *dns.Msg, src netip.AddrPort, f family, rs []*record) []outgoing {
	if len(rs) == 0 {
		return nil
	}
	capTTL := func(r *record) uint32 { return min(fullTTL(r), legacyTTL) }
	m := &dns.Msg{MsgHdr: dns.MsgHdr{Id: msg.Id, Response: true, Authoritative: true, RecursionDesired: msg.RecursionDesired}, Compress: true}
	m.Question = msg.Question
	for _, r := range rs {
		m.Answer = append(m.Answer, wire(r, capTTL(r), false))
	}
	for _, r := range c.zone.additionals(rs) {
		m.Extra = append(m.Extra, wire(r, capTTL(r), false))
	}
	size := legacySize
	if opt := msg.IsEdns0(); opt != nil {
		size = max(int(opt.UDPSize()), legacySize)
		m.SetEdns0(uint16(min(size, 9000)), false)
	}
	m.Truncate(size)
	c.m.answered.Add(uint64(len(m.Answer)))
	return []outgoing{{msg: m, to: src, fams: f}}
}

// handleResponse learns from a response: it detects conflicts with this
// responder's unique records and feeds the browser's cache.
func (c *core) handleResponse(now time.Time, msg *dns.Msg, src netip.AddrPort) {
	if src.Port() != mdnsPort { // RFC 6762 §6
		c.m.badPort.Add(1)
		return
	}
	c.m.responses.Add(1)
	rrs := make([]dns.RR, 0, len(msg.Answer)+len(msg.Extra))
	flush := map[dns.RR]bool{}
	for _, rr := range append(msg.Answer, msg.Extra...) {
		h := rr.Header()
		if h.Class&flushBit != 0 {
			flush[rr] = true
			h.Class &^= flushBit
		}
		if h.Class == dns.ClassINET {
			rrs = append(rrs, rr)
		}
	}
	// Services first, then addresses, so that the addresses of a target
	// that arrives in the same packet are kept.
	for _, addrs := range []bool{false, true} {
		for _, rr := range rrs {
			t := rr.Header().Rrtype
			if (t == dns.TypeA || t == dns.TypeAAAA) != addrs {
				continue
			}
			c.checkConflict(rr)
			if c.relevant(rr) && !c.cache.observe(now, rr, flush[rr]) {
				c.m.cacheFull.Add(1)
			}
		}
	}
}

// checkConflict counts and logs (once per name) a record of another host
// with the name and type of one of this responder's unique records but
// other data (RFC 6762 §9). Nothing is renamed.
func (c *core) checkConflict(rr dns.RR) {
	h := rr.Header()
	if h.Ttl == 0 {
		return
	}
	key, clash := rrKey(rr), false
	for _, r := range c.zone.byName[canon(h.Name)] {
		if !r.unique || r.rr.Header().Rrtype != h.Rrtype {
			continue
		}
		if r.key == key {
			return
		}
		clash = true
	}
	if !clash {
		return
	}
	c.m.conflicts.Add(1)
	if n := canon(h.Name); !c.conflicted[n] {
		c.conflicted[n] = true
		c.log.Warn("mdns name conflict", "name", h.Name, "type", dns.TypeToString[h.Rrtype], "theirs", rr.String())
	}
}

// relevant reports whether the browser keeps rr: a PTR of a browsed type,
// the SRV or TXT of an instance of one, the address of an SRV target.
func (c *core) relevant(rr dns.RR) bool {
	h := rr.Header()
	switch h.Rrtype {
	case dns.TypePTR:
		_, ok := c.typeNames[canon(h.Name)]
		return ok
	case dns.TypeSRV, dns.TypeTXT:
		_, rest := splitFirst(h.Name)
		_, ok := c.typeNames[canon(rest)]
		return ok
	case dns.TypeA, dns.TypeAAAA:
		return len(c.typeNames) > 0 && c.cache.isTarget(h.Name)
	}
	return false
}

// tick runs what is due at now: probes and announcements, cache expiry,
// browse, refresh and resolve queries.
func (c *core) tick(now time.Time) []outgoing {
	var out []outgoing
	for len(c.tasks) > 0 && !c.tasks[0].at.After(now) {
		t := c.tasks[0]
		c.tasks = c.tasks[1:]
		if t.probe {
			out = append(out, c.probes(t.first)...)
		} else {
			out = append(out, c.announce(now, t.keys)...)
		}
	}
	if len(c.typeNames) == 0 {
		return out
	}
	c.cache.expire(now)
	var qs []dns.Question
	var known []dns.RR
	for _, tn := range sortedKeys(c.typeNames) {
		b := c.browse[tn]
		if b == nil || now.Before(b.next) {
			continue
		}
		qs = append(qs, dns.Question{Name: tn, Qtype: dns.TypePTR, Qclass: dns.ClassINET})
		known = append(known, c.cache.knownAnswers(now, tn)...)
		b.next, b.every = now.Add(b.every), min(2*b.every, maxBrowseWait)
	}
	qs = append(qs, c.cache.refresh(now)...)
	if c.cache.dirty {
		c.cache.dirty = false
		found, need := c.cache.found(c.typeNames, c.zone)
		if !sameFound(found, c.found) {
			c.foundChanged = true
		}
		c.found, c.need = found, need
		wanted := map[string]bool{}
		for _, q := range need {
			wanted[q.String()] = true
		}
		for k := range c.resolve {
			if !wanted[k] {
				delete(c.resolve, k)
			}
		}
	}
	for _, q := range c.need {
		k := q.String()
		b := c.resolve[k]
		if b == nil {
			b = &backoff{next: now, every: time.Second}
			c.resolve[k] = b
		}
		if now.Before(b.next) {
			continue
		}
		b.next, b.every = now.Add(b.every), min(2*b.every, maxResolveWait)
		qs = append(qs, q)
	}
	if len(qs) == 0 {
		return out
	}
	m := &dns.Msg{Question: qs, Compress: true}
	for _, rr := range known {
		m.Answer = append(m.Answer, rr)
		if m.Len() > maxPacket {
			m.Answer = m.Answer[:len(m.Answer)-1]
			break
		}
	}
	c.m.querySent.Add(1)
	return append(out, outgoing{msg: m, fams: c.fams})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
