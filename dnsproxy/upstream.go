package dnsproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// flight is one upstream resolution that identical queries wait for.
type flight struct {
	done chan struct{}
	// Set before done is closed.
	e   *entry
	err error
}

// flights are the resolutions in progress, by cache key.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

// resolve returns the answer for the question in key (see appendKey) from
// the upstreams, and caches it when it may. Concurrent calls for the same
// key share one resolution. cd is the CD bit to send (RFC 4035 §3.2.2); the
// first query of a burst decides it.
func (s *Server) resolve(ctx context.Context, c *counters, key string, cd bool) (*entry, error) {
	s.flights.mu.Lock()
	if f, ok := s.flights.m[key]; ok {
		s.flights.mu.Unlock()
		c.coalesced.Add(1)
		select {
		case <-f.done:
			return f.e, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	s.flights.m[key] = f
	s.flights.mu.Unlock()

	f.e, f.err = s.resolveNow(ctx, c, key, cd)

	s.flights.mu.Lock()
	delete(s.flights.m, key)
	s.flights.mu.Unlock()
	close(f.done)
	return f.e, f.err
}

func (s *Server) resolveNow(ctx context.Context, c *counters, key string, cd bool) (*entry, error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	m, err := s.exchange(ctx, c, key, cd)
	if err != nil {
		return nil, err
	}
	now := s.nanotime()
	e, kind, err := newEntry(key, m, now, s.cfg.MaxTTL, s.cfg.MaxNegativeTTL, s.cfg.StaleFor)
	if err != nil {
		c.upstreamErrors.Add(1)
		return nil, err
	}
	if kind != notCacheable && s.cache != nil {
		s.cache.put(e, now)
	}
	return e, nil
}

// exchange asks the upstreams in turn, starting with the last one that
// answered, until one gives an answer other than SERVFAIL or REFUSED.
func (s *Server) exchange(ctx context.Context, c *counters, key string, cd bool) (*dns.Msg, error) {
	ups := s.cfg.Upstreams
	start := int(s.lastGood.Load())
	var errs []error
	for i := range ups {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		n := (start + i) % len(ups)
		c.upstreamQueries.Add(1)
		m, err := s.ask(ctx, ups[n], key, cd)
		if err == nil && (m.Rcode == dns.RcodeServerFailure || m.Rcode == dns.RcodeRefused) {
			err = fmt.Errorf("upstream %s answered %s", ups[n], dns.RcodeToString[m.Rcode])
		}
		if err == nil {
			if n != start {
				s.lastGood.Store(int32(n))
			}
			return m, nil
		}
		c.upstreamErrors.Add(1)
		s.log.Debug("upstream failed", "upstream", ups[n], "error", err)
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("%w: %w", ErrNoUpstream, errors.Join(errs...))
}

// ask sends the question in key to one upstream over UDP, and again over
// TCP if the answer is truncated (RFC 7766 §5).
func (s *Server) ask(ctx context.Context, addr, key string, cd bool) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.UpstreamTimeout)
	defer cancel()
	id := uint16(rand.Uint32())
	q := upstreamQuery(id, key, cd, s.udpSize)
	p, err := s.askOnce(ctx, "udp", addr, q, key)
	if err == nil && p[2]&(flagTC>>8) != 0 {
		p, err = s.askOnce(ctx, "tcp", addr, q, key)
	}
	if err != nil {
		return nil, err
	}
	m := new(dns.Msg)
	if err := m.Unpack(p); err != nil {
		return nil, fmt.Errorf("reading answer of %s: %w", addr, err)
	}
	return m, nil
}

// upstreamQuery packs a recursive query for the question in key, with an
// OPT record advertising udpSize and the key's DO bit (RFC 6891, RFC 3225).
func upstreamQuery(id uint16, key string, cd bool, udpSize uint16) []byte {
	flags := uint16(flagRD)
	if cd {
		flags |= flagCD
	}
	b := make([]byte, 0, headerLen+len(key)+optLen)
	b = append(b, byte(id>>8), byte(id), byte(flags>>8), byte(flags), 0, 1, 0, 0, 0, 0, 0, 1)
	b = append(b, key[:len(key)-1]...) // QNAME, QTYPE, QCLASS
	var do byte
	if keyDO(key) {
		do = 0x80
	}
	return append(b, 0, 0, typeOPT, byte(udpSize>>8), byte(udpSize), 0, 0, do, 0, 0, 0)
}

// askOnce sends q to addr over network and returns the first answer that
// matches it: same ID, QR set, the same question (RFC 5452 §9.1); others
// are ignored, as late answers to earlier queries or forgeries.
func (s *Server) askOnce(ctx context.Context, network, addr string, q []byte, key string) ([]byte, error) {
	conn, err := s.cfg.Dial(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("dialing %s %s: %w", network, addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if network == "tcp" {
		// RFC 1035 §4.2.2: a two-byte length before each message.
		msg := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(q)), uint16(len(q)))
		if _, err := conn.Write(append(msg, q...)); err != nil {
			return nil, fmt.Errorf("writing to tcp %s: %w", addr, err)
		}
		var l [2]byte
		if _, err := io.ReadFull(conn, l[:]); err != nil {
			return nil, fmt.Errorf("reading from tcp %s: %w", addr, err)
		}
		p := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(conn, p); err != nil {
			return nil, fmt.Errorf("reading from tcp %s: %w", addr, err)
		}
		if !answers(p, q, key) {
			return nil, fmt.Errorf("answer from tcp %s does not match the query", addr)
		}
		return p, nil
	}
	if _, err := conn.Write(q); err != nil {
		return nil, fmt.Errorf("writing to udp %s: %w", addr, err)
	}
	// Read into a buffer larger than the payload size we advertise, for
	// servers that ignore it; an answer larger still arrives cut, does not
	// parse, and counts as that upstream's failure.
	bp := udpBufs.Get().(*[]byte)
	defer udpBufs.Put(bp)
	buf := *bp
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("reading from udp %s: %w", addr, err)
		}
		if answers(buf[:n], q, key) {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
}

var udpBufs = sync.Pool{New: func() any { b := make([]byte, udpBufSize); return &b }}

// answers reports whether p is a response to the query q for key.
func answers(p, q []byte, key string) bool {
	name := keyName(key)
	end := headerLen + len(name) + 4
	if len(p) < end || p[0] != q[0] || p[1] != q[1] || p[2]&(flagQR>>8) == 0 ||
		binary.BigEndian.Uint16(p[4:]) != 1 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := p[headerLen+i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	// QTYPE and QCLASS follow the name in both.
	return string(p[headerLen+len(name):end]) == key[len(name):len(name)+4]
}
