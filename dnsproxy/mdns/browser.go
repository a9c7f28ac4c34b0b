package mdns

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/miekg/dns"
)

// maxCachedTTL caps the TTL of a learned record, so that a bogus TTL
// cannot pin an entry in the bounded cache for decades.
const maxCachedTTL = 2 * 3600

// cached is one record learned from the LAN.
type cached struct {
	rr       dns.RR // without the cache-flush bit, TTL as received (capped)
	received time.Time
	expires  time.Time
	stage    int // refresh queries sent at 80, 85, 90, 95 % of the TTL (RFC 6762 §5.2)
}

// cache holds the records the browser learned: PTRs of the browsed types,
// SRV and TXT of their instances, addresses of the SRV targets. It is
// bounded by max records; it is owned by the run loop.
type cache struct {
	max    int
	n      int
	byName map[string]map[string]*cached // canonical owner name -> rrKey
	// dirty is set when a record is added or removed; the run loop then
	// recomputes what was found.
	dirty bool
}

func newCache(max int) *cache {
	return &cache{max: max, byName: map[string]map[string]*cached{}}
}

// observe stores a record from a response received at now, with the
// meaning of RFC 6762 §10: TTL 0 is a goodbye (the record goes one second
// later, §10.1) and the cache-flush bit expires the other records of the
// same name and type that are older than one second (§10.2). It reports
// false when the record was dropped because the cache is full.
func (c *cache) observe(now time.Time, rr dns.RR, flush bool) bool {
	h := rr.Header()
	name, key := canon(h.Name), rrKey(rr)
	set := c.byName[name]
	soon := now.Add(time.Second)
	if h.Ttl == 0 {
		if e := set[key]; e != nil && e.expires.After(soon) {
			e.expires = soon
		}
		return true
	}
	if flush {
		for k, e := range set {
			if k != key && e.rr.Header().Rrtype == h.Rrtype && now.Sub(e.received) > time.Second && e.expires.After(soon) {
				e.expires = soon
			}
		}
	}
	ttl := min(h.Ttl, maxCachedTTL)
	if e := set[key]; e != nil {
		e.rr, e.received, e.expires, e.stage = rr, now, now.Add(time.Duration(ttl)*time.Second), 0
		return true
	}
	if c.n >= c.max {
		return false
	}
	if set == nil {
		set = map[string]*cached{}
		c.byName[name] = set
	}
	set[key] = &cached{rr: rr, received: now, expires: now.Add(time.Duration(ttl) * time.Second)}
	c.n++
	c.dirty = true
	return true
}

// expire removes the records whose time is up.
func (c *cache) expire(now time.Time) {
	for name, set := range c.byName {
		for k, e := range set {
			if !e.expires.After(now) {
				delete(set, k)
				c.n--
				c.dirty = true
			}
		}
		if len(set) == 0 {
			delete(c.byName, name)
		}
	}
}

// get returns the records at name of type rrtype, the most recently
// received first.
func (c *cache) get(name string, rrtype uint16) []*cached {
	var out []*cached
	for _, e := range c.byName[canon(name)] {
		if e.rr.Header().Rrtype == rrtype {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b *cached) int {
		return cmp.Or(b.received.Compare(a.received), cmp.Compare(rrKey(a.rr), rrKey(b.rr)))
	})
	return out
}

// isTarget reports whether name is the target of a cached SRV record.
func (c *cache) isTarget(name string) bool {
	name = canon(name)
	for _, set := range c.byName {
		for _, e := range set {
			if srv, ok := e.rr.(*dns.SRV); ok && canon(srv.Target) == name {
				return true
			}
		}
	}
	return false
}

// refresh returns the questions that keep records alive: each record is
// asked for at 80, 85, 90 and 95 % of its TTL (RFC 6762 §5.2) until an
// answer renews it.
func (c *cache) refresh(now time.Time) []dns.Question {
	var qs []dns.Question
	seen := map[string]bool{}
	for name, set := range c.byName {
		for _, e := range set {
			if e.stage >= 4 {
				continue
			}
			ttl := time.Duration(e.rr.Header().Ttl) * time.Second
			if now.Before(e.received.Add(ttl * time.Duration(80+5*e.stage) / 100)) {
				continue
			}
			e.stage++
			t := e.rr.Header().Rrtype
			k := name + "/" + dns.TypeToString[t]
			if !seen[k] {
				seen[k] = true
				qs = append(qs, dns.Question{Name: e.rr.Header().Name, Qtype: t, Qclass: dns.ClassINET})
			}
		}
	}
	slices.SortFunc(qs, func(a, b dns.Question) int {
		return cmp.Compare(a.Name+dns.TypeToString[a.Qtype], b.Name+dns.TypeToString[b.Qtype])
	})
	return qs
}

// knownAnswers returns the cached PTRs of typeName whose remaining TTL is
// more than half of their TTL, for the answer section of a browse query
// (RFC 6762 §7.1).
func (c *cache) knownAnswers(now time.Time, typeName string) []dns.RR {
	var out []dns.RR
	for _, e := range c.get(typeName, dns.TypePTR) {
		ttl := time.Duration(e.rr.Header().Ttl) * time.Second
		if left := e.expires.Sub(now); left > ttl/2 {
			rr := dns.Copy(e.rr)
			rr.Header().Ttl = uint32(left / time.Second)
			out = append(out, rr)
		}
	}
	return out
}

// found returns the complete services of the browsed types (typeNames
// maps the canonical "_ipp._tcp.local." to "_ipp._tcp"), leaving out the
// instances and hosts of z (this responder's own records, so that a
// service it advertises is not found again through another box), and the
// questions that would complete the others.
func (c *cache) found(typeNames map[string]string, z *zone) ([]Found, []dns.Question) {
	var out []Found
	var need []dns.Question
	for tn, typ := range typeNames {
		for _, p := range c.get(tn, dns.TypePTR) {
			inst := p.rr.(*dns.PTR).Ptr
			if z.instances[canon(inst)] {
				continue
			}
			label, rest := splitFirst(inst)
			if canon(rest) != tn {
				continue // not an instance of this type
			}
			srvs := c.get(inst, dns.TypeSRV)
			txts := c.get(inst, dns.TypeTXT)
			if len(srvs) == 0 {
				need = append(need, dns.Question{Name: inst, Qtype: dns.TypeSRV, Qclass: dns.ClassINET})
			}
			if len(txts) == 0 {
				need = append(need, dns.Question{Name: inst, Qtype: dns.TypeTXT, Qclass: dns.ClassINET})
			}
			if len(srvs) == 0 {
				continue
			}
			srv := srvs[0].rr.(*dns.SRV)
			if z.hosts[canon(srv.Target)] {
				continue
			}
			var addrs []netip.Addr
			for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
				for _, e := range c.get(srv.Target, t) {
					var ip []byte
					switch v := e.rr.(type) {
					case *dns.A:
						ip = v.A
					case *dns.AAAA:
						ip = v.AAAA
					}
					// Link-local addresses are useless beyond the LAN.
					if a, ok := netip.AddrFromSlice(ip); ok && !a.Unmap().IsLinkLocalUnicast() {
						addrs = append(addrs, a.Unmap())
					}
				}
			}
			if len(addrs) == 0 {
				need = append(need,
					dns.Question{Name: srv.Target, Qtype: dns.TypeA, Qclass: dns.ClassINET},
					dns.Question{Name: srv.Target, Qtype: dns.TypeAAAA, Qclass: dns.ClassINET})
				continue
			}
			slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
			f := Found{Instance: unescape(label), Type: typ, Host: srv.Target, Addrs: addrs, Port: srv.Port,
				Expires: p.expires}
			if srvs[0].expires.Before(f.Expires) {
				f.Expires = srvs[0].expires
			}
			if len(txts) > 0 {
				for _, t := range txts[0].rr.(*dns.TXT).Txt {
					if t != "" {
						f.TXT = append(f.TXT, unescape(t))
					}
				}
			}
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b Found) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Instance, b.Instance))
	})
	return out, need
}

// sameFound reports whether a and b describe the same services, ignoring
// when they expire.
func sameFound(a, b []Found) bool {
	return slices.EqualFunc(a, b, func(x, y Found) bool {
		return x.Instance == y.Instance && x.Type == y.Type && x.Host == y.Host && x.Port == y.Port &&
			slices.Equal(x.Addrs, y.Addrs) && slices.Equal(x.TXT, y.TXT)
	})
}
