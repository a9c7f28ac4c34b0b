package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// tunnel relays bytes between the client connection cc and dst in both
// directions until both are done, an error or the idle timeout ends it,
// or Run stops. It returns the bytes relayed up and down. The caller closes
// both connections.
//
// Between two TCP connections on Linux a direction first waits until its
// source is readable, holding no buffer, then reads once into a pooled
// buffer and writes it out: an idle tunnel costs two parked goroutines and
// no buffer memory, and a busy one moves data in large writes (splice(2)
// moved it in whatever pieces arrived, which cost the receiver more).
// Each read is charged to the user, which also makes the rate limit work.
func (p *Proxy) tunnel(cc *clientConn, dst net.Conn, u *user) (upN, downN int64) {
	p.tunnels.Add(1)
	p.tunnelsActive.Add(1)
	defer p.tunnelsActive.Add(-1)
	src := net.Conn(cc.Conn)
	if cc.tcp != nil {
		src = cc.tcp
	}
	for _, c := range []net.Conn{src, dst} {
		if c, ok := c.(*net.TCPConn); ok {
			limitUnsent(c)
		}
	}
	t := &pipe{p: p, u: u, done: cc.done}
	t.last.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Go(func() { downN = t.copy(src, dst, down) })
	upN = t.copy(dst, src, up)
	wg.Wait()
	return upN, downN
}

// pipe is the state the two directions of a tunnel share.
type pipe struct {
	p    *Proxy
	u    *user
	done <-chan struct{}
	last atomic.Int64 // UnixNano of the last bytes in either direction
}

// chunk returns how many bytes one copy step may move: small enough for
// the rate limit to be smooth, large enough to be cheap.
func (t *pipe) chunk() int64 {
	const most = 256 << 10
	if r := t.p.cfg.UserRate; r > 0 {
		return min(most, max(r/16, 4<<10))
	}
	return most
}

// copy moves bytes from src to dst in direction d until src ends (then it
// half-closes dst), an error, or both directions idle for
// TunnelIdleTimeout. On anything but a clean end it closes both.
func (t *pipe) copy(dst, src net.Conn, d direction) int64 {
	idle := t.p.cfg.TunnelIdleTimeout
	chunk := t.chunk()
	var total int64
	abort := func() {
		src.Close()
		dst.Close()
	}
	for {
		src.SetReadDeadline(time.Now().Add(idle))
		n, err := copyChunk(dst, src, chunk)
		total += n
		if n > 0 {
			t.last.Store(time.Now().UnixNano())
			wait, qerr := t.p.account(t.u, d, int(n))
			if qerr != nil || !pause(wait, t.done) {
				abort()
				return total
			}
		}
		switch {
		case err == nil:
			continue
		case errors.Is(err, io.EOF):
			if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
				return total
			}
			abort()
			return total
		case errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, t.last.Load())) < idle:
			continue // the other direction is busy
		default:
			abort()
			return total
		}
	}
}

// copyChunk copies up to n bytes; it returns io.EOF when src ended first.
// Between TCP connections it reads once when src is readable (see tunnel);
// otherwise it copies through a pooled buffer.
func copyChunk(dst, src net.Conn, n int64) (int64, error) {
	if d, ok := dst.(*net.TCPConn); ok {
		if s, ok := src.(*net.TCPConn); ok {
			if w, err, ok := copyReady(d, s, n); ok {
				return w, err
			}
		}
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	w, err := io.CopyBuffer(onlyWriter{dst}, &io.LimitedReader{R: src, N: n}, *bp)
	if err == nil && w < n {
		err = io.EOF
	}
	return w, err
}

// tunnelBufPool holds the buffers of copyReady: large, because a busy
// tunnel then writes fewer, larger segments.
var tunnelBufPool = sync.Pool{New: func() any { b := make([]byte, 128<<10); return &b }}

// onlyWriter hides a ReaderFrom, so that io.CopyBuffer uses the buffer.
type onlyWriter struct{ io.Writer }
