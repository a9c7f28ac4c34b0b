package dnsproxy

import (
	"context"
	"encoding/binary"
	"net/netip"

	"github.com/miekg/dns"
)

// request is one query being answered.
type request struct {
	// p is the query packet. The slow parser may replace it with a
	// canonical copy.
	p   []byte
	q   query
	src netip.Addr
	tcp bool
	// malformed is set by respond when p is not a DNS query.
	malformed bool
}

// scratch holds the buffers one goroutine reuses from query to query.
type scratch struct {
	key []byte
	out []byte
}

func newScratch(outCap int) *scratch {
	return &scratch{key: make([]byte, 0, maxNameLen+5), out: make([]byte, 0, outCap)}
}

// respond answers r at now (nanoseconds since the epoch) without waiting
// for the network. It returns the response, in sc.out, or nil to send
// nothing; or upstream true when the answer must come from the upstreams,
// which respondUpstream then gets. On the hot path, a cache hit or a zone
// answer, it does not allocate.
func (s *Server) respond(ctx context.Context, c *counters, sc *scratch, r *request, now int64) (resp []byte, upstream bool) {
	c.queries.Add(1)
	if s.limiter != nil && !r.src.IsLoopback() && !s.limiter.allow(r.src, now) {
		c.rateLimited.Add(1)
		return nil, false
	}
	q, err := parseQuery(r.p)
	if err == errUnusual {
		var p []byte
		resp, p = s.parseSlow(r.p, s.isAllowed(r.src), r.tcp)
		switch {
		case resp != nil:
			if !s.isAllowed(r.src) {
				c.refused.Add(1)
			}
			return resp, false
		case p != nil:
			r.p = p
			q, err = parseQuery(p)
		}
	}
	if err != nil {
		c.malformed.Add(1)
		r.malformed = true
		return nil, false
	}
	r.q = q
	if !s.isAllowed(r.src) {
		return s.refuse(c, sc, r, 0), false
	}
	// Zone transfers are not offered (RFC 5936 §4.2 lets a server refuse
	// them); over UDP they are not even valid.
	if q.qtype == typeAXFR || q.qtype == typeIXFR {
		return s.refuse(c, sc, r, s.raBit), false
	}
	sc.key = appendKey(sc.key[:0], r.p, &q)
	name := sc.key[:q.nameLen()]
	if zd := s.zone.Load(); inZone(name, zd.apex) {
		if q.qclass != classINET {
			return s.refuse(c, sc, r, s.raBit), false
		}
		c.zoneAnswers.Add(1)
		pk := &zd.nxdomain
		if zn := zd.names[string(name)]; zn != nil {
			if pk = zn.lookup(q.qtype); pk == nil {
				pk = &zd.nodata
			}
		}
		flags := responseFlags(&q, flagAA|s.raBit, pk.rcode)
		sc.out = appendResponse(sc.out[:0], r.p, &q, flags, pk.an, pk.ns, pk.ar, pk.body, s.udpSize, pk.rcode)
		return s.fit(c, sc.out, r), false
	}
	if len(s.cfg.Upstreams) == 0 || q.qclass != classINET {
		return s.refuse(c, sc, r, s.raBit), false
	}
	if s.cache != nil {
		if e := s.cache.get(sc.key); e != nil {
			switch {
			case now < e.expires:
				c.cacheHits.Add(1)
				s.maybePrefetch(ctx, e, now)
				sc.out = appendEntry(sc.out[:0], r.p, &q, e, now, false, s.udpSize)
				return s.fit(c, sc.out, r), false
			case now < e.staleUntil && now < e.recheck.Load():
				c.staleServed.Add(1)
				sc.out = appendEntry(sc.out[:0], r.p, &q, e, now, true, s.udpSize)
				return s.fit(c, sc.out, r), false
			}
		}
	}
	c.cacheMisses.Add(1)
	return nil, true
}

// respondUpstream answers r, which respond passed on, from the upstreams:
// one exchange for all identical queries in flight, then the cache. When no
// upstream answers it serves what the cache has, stale or not, and SERVFAIL
// when it has nothing.
func (s *Server) respondUpstream(ctx context.Context, c *counters, sc *scratch, r *request) []byte {
	sc.key = appendKey(sc.key[:0], r.p, &r.q)
	e, err := s.resolve(ctx, c, string(sc.key), r.q.flags&flagCD != 0)
	now := s.nanotime()
	if err != nil && s.cache != nil {
		if e = s.cache.get(sc.key); e != nil && now >= e.expires {
			if now >= e.staleUntil {
				e = nil
			} else {
				// RFC 8767 §5: after a failed refresh, answer stale for a
				// while without asking again.
				e.recheck.Store(now + int64(staleRecheck))
				c.staleServed.Add(1)
				sc.out = appendEntry(sc.out[:0], r.p, &r.q, e, now, true, s.udpSize)
				return s.fit(c, sc.out, r)
			}
		}
	}
	if e == nil {
		c.servFail.Add(1)
		flags := responseFlags(&r.q, flagRA, rcodeServFail)
		sc.out = appendResponse(sc.out[:0], r.p, &r.q, flags, 0, 0, 0, nil, s.udpSize, rcodeServFail)
		return sc.out
	}
	sc.out = appendEntry(sc.out[:0], r.p, &r.q, e, now, false, s.udpSize)
	return s.fit(c, sc.out, r)
}

// refuse answers r with REFUSED (RFC 1035 §4.1.1).
func (s *Server) refuse(c *counters, sc *scratch, r *request, bits uint16) []byte {
	c.refused.Add(1)
	flags := responseFlags(&r.q, bits, rcodeRefused)
	sc.out = appendResponse(sc.out[:0], r.p, &r.q, flags, 0, 0, 0, nil, s.udpSize, rcodeRefused)
	return sc.out
}

// isAllowed reports whether src is in the allowed networks.
func (s *Server) isAllowed(src netip.Addr) bool {
	for _, p := range *s.allowed.Load() {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

// fit returns resp cut to the size r's client accepts.
func (s *Server) fit(c *counters, resp []byte, r *request) []byte {
	limit := responseLimit(&r.q, r.tcp, int(s.udpSize))
	if len(resp) <= limit {
		return resp
	}
	c.truncated.Add(1)
	return truncate(resp, limit)
}

// truncate cuts resp to limit bytes (RFC 1035 §4.2.1), keeping the records
// that fit. It sets the TC bit when answer or authority records had to go,
// not when only additional ones did (RFC 2181 §9): a DNS-SD browse answer
// without its additional records is still complete. It allocates; big UDP
// answers are rare.
func truncate(resp []byte, limit int) []byte {
	m := new(dns.Msg)
	if err := m.Unpack(resp); err == nil {
		an, ns := len(m.Answer), len(m.Ns)
		m.Truncate(limit)
		m.Truncated = len(m.Answer) < an || len(m.Ns) < ns
		if b, err := m.Pack(); err == nil && len(b) <= limit {
			return b
		}
	}
	// Only the header and the question, which always fit: a query's
	// question is at most 259 bytes.
	end, err := skipName(resp, headerLen)
	if err != nil || end+4 > len(resp) {
		return nil
	}
	b := append([]byte(nil), resp[:end+4]...)
	b[2] |= flagTC >> 8
	binary.BigEndian.PutUint32(b[6:], 0) // ANCOUNT, NSCOUNT
	binary.BigEndian.PutUint16(b[10:], 0)
	return b
}

// parseSlow handles a query the fast parser called unusual, with
// miekg/dns. It returns either a response (NOTIMP for other opcodes,
// FORMERR for several questions or OPT records, BADVERS for other EDNS
// versions, REFUSED for clients not allowed) or a canonical query packet
// that parseQuery accepts, or neither for packets that are not DNS queries.
func (s *Server) parseSlow(p []byte, allowed, tcp bool) (resp, canon []byte) {
	m := new(dns.Msg)
	if err := m.Unpack(p); err != nil || m.Response {
		return nil, nil
	}
	opts := 0
	for _, rr := range m.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			opts++
		}
	}
	opt := m.IsEdns0()
	rcode := -1
	switch {
	case !allowed:
		rcode = dns.RcodeRefused
	case m.Opcode != dns.OpcodeQuery:
		rcode = dns.RcodeNotImplemented // RFC 1035 §4.1.1
	case len(m.Question) != 1 || opts > 1:
		rcode = dns.RcodeFormatError // RFC 9619 §4, RFC 6891 §6.1.1
	case opt != nil && opt.Version() != 0:
		rcode = dns.RcodeBadVers // RFC 6891 §6.1.3
	}
	if rcode >= 0 {
		r := new(dns.Msg)
		r.SetRcode(m, rcode)
		if opt != nil {
			r.SetEdns0(s.udpSize, false)
		}
		b, err := r.Pack()
		if err != nil {
			return nil, nil
		}
		limit := minUDPSize
		if tcp || opt != nil {
			limit = maxMsgSize
		}
		if len(b) > limit {
			b = truncate(b, limit)
		}
		return b, nil
	}
	// Rebuild the query in the common shape: same ID and flags, the
	// question with its name uncompressed, and the OPT record's payload
	// size and DO bit without options.
	q := m.Question[0]
	b := make([]byte, headerLen, headerLen+maxNameLen+4+optLen)
	binary.BigEndian.PutUint16(b, m.Id)
	binary.BigEndian.PutUint16(b[2:], binary.BigEndian.Uint16(p[2:])&^opcodeMask)
	b[5] = 1
	buf := make([]byte, maxNameLen+1)
	n, err := dns.PackDomainName(q.Name, buf, 0, nil, false)
	if err != nil {
		return nil, nil
	}
	b = append(b, buf[:n]...)
	b = binary.BigEndian.AppendUint16(b, q.Qtype)
	b = binary.BigEndian.AppendUint16(b, q.Qclass)
	if opt != nil {
		b[11] = 1
		var do byte
		if opt.Do() {
			do = 0x80
		}
		sz := opt.UDPSize()
		b = append(b, 0, 0, typeOPT, byte(sz>>8), byte(sz), 0, 0, do, 0, 0, 0)
	}
	return nil, b
}

// maybePrefetch refreshes e in the background when it is popular and close
// to expiry: at least PrefetchHits hits, in the last tenth of its TTL.
func (s *Server) maybePrefetch(ctx context.Context, e *entry, now int64) {
	if s.cfg.PrefetchHits < 0 {
		return
	}
	if h := e.hits.Add(1); h < uint32(s.cfg.PrefetchHits) {
		return
	}
	if (e.expires-now)*10 > e.expires-e.stored || !e.prefetching.CompareAndSwap(false, true) {
		return
	}
	select {
	case s.prefetches <- struct{}{}:
	default:
		e.prefetching.Store(false)
		return
	}
	c := s.shared
	s.wg.Go(func() {
		defer func() { <-s.prefetches }()
		c.prefetches.Add(1)
		if _, err := s.resolve(ctx, c, e.key, false); err != nil {
			e.prefetching.Store(false) // a later hit tries again
		}
	})
}
