package proxy

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/cloudbox/cloudbox/internal/plainhttp"
)

// upstream forwards plain-HTTP requests to destinations over kept-alive
// connections, synchronously on the client connection's goroutine: no
// goroutine per connection and no hand-offs per request, which is what
// http.Transport costs and a busy one-core gateway cannot afford. (https://
// absolute URIs, rare through a proxy, go through the http.Transport.)
type upstream struct {
	p           *Proxy
	maxIdle     int
	maxIdleHost int
	idleTimeout time.Duration

	mu     sync.Mutex
	idle   map[string][]*upConn // by "host:port", most recent last
	nidle  int
	closed bool
}

// upConn is one connection to a destination with its buffers.
type upConn struct {
	key    string
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
}

func newUpstream(p *Proxy) *upstream {
	return &upstream{p: p, maxIdle: 1024, maxIdleHost: 256, idleTimeout: 90 * time.Second, idle: make(map[string][]*upConn)}
}

// get returns an idle connection to key, or nil.
func (u *upstream) get(key string) *upConn {
	now := time.Now()
	u.mu.Lock()
	defer u.mu.Unlock()
	for l := u.idle[key]; len(l) > 0; l = u.idle[key] {
		c := l[len(l)-1]
		l[len(l)-1] = nil
		if len(l) == 1 {
			delete(u.idle, key)
		} else {
			u.idle[key] = l[:len(l)-1]
		}
		u.nidle--
		if now.Sub(c.idleAt) < u.idleTimeout {
			return c
		}
		c.conn.Close()
	}
	return nil
}

// put keeps c for the next request to its destination, or closes it.
func (u *upstream) put(c *upConn) {
	c.idleAt = time.Now()
	u.mu.Lock()
	if u.closed || u.nidle >= u.maxIdle || len(u.idle[c.key]) >= u.maxIdleHost {
		u.mu.Unlock()
		c.conn.Close()
		return
	}
	u.idle[c.key] = append(u.idle[c.key], c)
	u.nidle++
	u.mu.Unlock()
}

// close closes the idle connections and refuses to keep more.
func (u *upstream) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	for _, l := range u.idle {
		for _, c := range l {
			c.conn.Close()
		}
	}
	clear(u.idle)
	u.nidle = 0
}

// roundTrip sends out to key ("host:port") and reads the response head.
// The caller reads the body and then calls done with whether the whole
// body was read. A kept-alive connection that turns out closed is retried
// once on a new one when out has no body.
func (u *upstream) roundTrip(ctx context.Context, out *http.Request, key string) (resp *http.Response, done func(ok bool), err error) {
	for attempt := 0; ; attempt++ {
		c := u.get(key)
		reused := c != nil
		if c == nil {
			dctx, cancel := context.WithTimeout(ctx, u.p.cfg.DialTimeout)
			conn, err := u.p.dialer.DialContext(dctx, "tcp", key)
			cancel()
			if err != nil {
				return nil, nil, err
			}
			c = &upConn{key: key, conn: conn, br: bufio.NewReaderSize(conn, 4<<10), bw: bufio.NewWriterSize(conn, 4<<10)}
		}
		// A client that leaves (or Run stopping) closes the destination
		// connection, which ends whatever waits on it.
		stop := context.AfterFunc(ctx, func() { c.conn.Close() })
		c.conn.SetReadDeadline(time.Now().Add(u.p.cfg.ResponseHeaderTimeout))
		err = plainhttp.WriteRequest(c.bw, out)
		if err == nil {
			err = c.bw.Flush()
		}
		for err == nil {
			resp, err = http.ReadResponse(c.br, out)
			if err != nil || resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
				break
			}
			resp.Body.Close() // an interim response (1xx): the final one follows
		}
		if err != nil {
			stop()
			c.conn.Close()
			if reused && attempt == 0 && out.Body == nil && ctx.Err() == nil {
				continue
			}
			return nil, nil, err
		}
		c.conn.SetReadDeadline(time.Time{})
		done = func(ok bool) {
			if stop() && ok && !resp.Close && !out.Close {
				u.put(c)
				return
			}
			c.conn.Close()
		}
		return resp, done, nil
	}
}
