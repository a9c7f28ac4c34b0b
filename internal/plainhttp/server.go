package plainhttp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
)

// bufferLimit is how much of a response the server buffers to send it
// with a Content-Length; a longer one is sent chunked.
const bufferLimit = 64 << 10

// maxDrain is how much of an unread request body the server reads to keep
// the connection; it closes the connection after a longer one.
const maxDrain = 256 << 10

// shutdownPoll is how often Shutdown looks whether the connections are
// done.
const shutdownPoll = 10 * time.Millisecond

// Server is a plain HTTP/1.1 server with keep-alive. Set Config, then call
// Serve; it is safe for concurrent use. After Shutdown or Close, Serve
// returns http.ErrServerClosed and the server cannot be used again.
type Server struct {
	// Config is read by Serve; do not change it after.
	Config ServerConfig

	// mu guards the following.
	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	wg        sync.WaitGroup // one per connection
}

// conn is a connection the server accepted.
type conn struct {
	c net.Conn
	// mu guards idle: true while the connection waits for a request.
	mu   sync.Mutex
	idle bool
}

func (c *conn) setIdle(idle bool) {
	c.mu.Lock()
	c.idle = idle
	c.mu.Unlock()
}

// Serve accepts connections on ln and serves them until Shutdown or Close,
// then returns http.ErrServerClosed; it closes ln. Another accept error
// ends it too, after closing ln.
func (s *Server) Serve(ln net.Listener) error {
	defer ln.Close()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners, s.conns = make(map[net.Listener]struct{}), make(map[*conn]struct{})
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	var pause time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of file descriptors and the like: back off as
				// net/http does.
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				s.logf("plainhttp: accept error: %v; retrying in %v", err, pause)
				time.Sleep(pause)
				continue
			}
			return fmt.Errorf("accepting: %w", err)
		}
		pause = 0
		c := &conn{c: nc}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return http.ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.setState(nc, http.StateNew)
		go s.serveConn(c)
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// close stops accepting and returns the connections.
func (s *Server) close() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns
}

// Shutdown stops accepting, closes idle connections and waits until the
// requests being served are answered or ctx is done, whose error it then
// returns (call Close to cut the remaining connections).
func (s *Server) Shutdown(ctx context.Context) error {
	s.close()
	t := time.NewTicker(shutdownPoll)
	defer t.Stop()
	for {
		s.mu.Lock()
		active := 0
		for c := range s.conns {
			c.mu.Lock()
			if c.idle {
				c.c.Close()
			} else {
				active++
			}
			c.mu.Unlock()
		}
		s.mu.Unlock()
		if active == 0 {
			s.wg.Wait()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close stops accepting, closes every connection and waits for their
// handlers to return.
func (s *Server) Close() error {
	for _, c := range s.close() {
		c.c.Close()
	}
	s.wg.Wait()
	return nil
}

// setState reports a connection's new state to Config.ConnState.
func (s *Server) setState(c net.Conn, state http.ConnState) {
	if s.Config.ConnState != nil {
		s.Config.ConnState(c, state)
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.Config.ErrorLog != nil {
		s.Config.ErrorLog.Printf(format, args...)
		return
	}
	log.Printf(format, args...)
}

// deadline returns now+d, or no deadline for d == 0.
func deadline(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// serveConn answers the requests on c until the client or the server ends
// the connection.
func (s *Server) serveConn(c *conn) {
	defer s.wg.Done()
	hijacked := false
	defer func() {
		if !hijacked {
			c.c.Close()
			s.setState(c.c, http.StateClosed)
		}
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	cfg := &s.Config
	maxHeader := cfg.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = http.DefaultMaxHeaderBytes
	}
	headerTimeout := cmpOr(cfg.ReadHeaderTimeout, cfg.ReadTimeout)
	idleTimeout := cmpOr(cfg.IdleTimeout, cfg.ReadTimeout)
	// lr bounds what ReadRequest may read; the body lifts the bound.
	lr := &io.LimitedReader{R: c.c}
	br := bufio.NewReader(lr)
	bw := bufio.NewWriter(c.c)
	baseCtx := context.WithValue(context.Background(), http.LocalAddrContextKey, c.c.LocalAddr())
	if cfg.ConnContext != nil {
		baseCtx = cfg.ConnContext(baseCtx, c.c)
	}
	for first := true; ; first = false {
		c.setIdle(true)
		if s.isClosed() {
			return
		}
		if !first {
			s.setState(c.c, http.StateIdle)
			c.c.SetReadDeadline(deadline(idleTimeout))
			lr.N = 1
			if _, err := br.Peek(1); err != nil {
				return
			}
		}
		c.setIdle(false)
		s.setState(c.c, http.StateActive)
		start := time.Now()
		c.c.SetReadDeadline(deadline(headerTimeout))
		lr.N = int64(maxHeader) + 4096 // the request line and bufio's slack
		req, err := http.ReadRequest(br)
		if err != nil {
			if lr.N <= 0 {
				writeError(c.c, http.StatusRequestHeaderFieldsTooLarge, "request header too large")
			} else if !errors.Is(err, io.EOF) && !isTimeout(err) {
				writeError(c.c, http.StatusBadRequest, "malformed request")
			}
			return
		}
		lr.N = math.MaxInt64
		if cfg.ReadTimeout > 0 {
			c.c.SetReadDeadline(start.Add(cfg.ReadTimeout))
		} else {
			c.c.SetReadDeadline(time.Time{})
		}
		c.c.SetWriteDeadline(deadline(cfg.WriteTimeout))
		req.RemoteAddr = c.c.RemoteAddr().String()
		ctx, cancel := context.WithCancel(baseCtx)
		req = req.WithContext(ctx)
		w := &response{srv: s, conn: c, bw: bw, br: br, req: req, header: make(http.Header), declared: -1}
		var ec *expectContinue
		if req.ProtoAtLeast(1, 1) && req.ContentLength != 0 && strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
			ec = &expectContinue{ReadCloser: req.Body, w: w}
			req.Body = ec
		}
		ok := s.serveRequest(w, req)
		cancel()
		if w.hijacked {
			hijacked = true
			return
		}
		if !ok || !w.finish() || w.closeAfter || req.Close || s.isClosed() {
			return
		}
		if ec != nil && !ec.sent {
			// The client may or may not send the body it was not
			// asked for: the connection cannot be trusted to start at
			// the next request.
			return
		}
		// Keep the connection only when the rest of the body is short.
		if req.Body != nil {
			n, err := io.CopyN(io.Discard, req.Body, maxDrain+1)
			if n > maxDrain || err != nil && !errors.Is(err, io.EOF) {
				return
			}
		}
	}
}

// serveRequest calls the handler; false means it panicked and the
// connection must be closed.
func (s *Server) serveRequest(w *response, req *http.Request) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				s.logf("plainhttp: panic serving %s: %v\n%s", req.RemoteAddr, v, debug.Stack())
			}
			ok = false
		}
	}()
	s.Config.Handler.ServeHTTP(w, req)
	return true
}

func cmpOr(a, b time.Duration) time.Duration {
	if a > 0 {
		return a
	}
	return b
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// writeError answers a request the server could not read, and the
// connection closes.
func writeError(w io.Writer, code int, msg string) {
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		code, http.StatusText(code), len(msg), msg)
}

// expectContinue is the body of a request that expects 100 Continue
// (RFC 9110, section 10.1.1): the first Read sends it.
type expectContinue struct {
	io.ReadCloser
	w    *response
	sent bool
}

func (e *expectContinue) Read(p []byte) (int, error) {
	if !e.sent {
		e.sent = true
		if !e.w.sent && !e.w.hijacked {
			e.w.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			if err := e.w.bw.Flush(); err != nil {
				return 0, err
			}
		}
	}
	return e.ReadCloser.Read(p)
}

// response is the http.ResponseWriter of one request. It buffers the body
// up to bufferLimit; beyond that, or on Flush, it sends the header and
// streams the body: with the Content-Length the handler set, if any, else
// chunked.
type response struct {
	srv    *Server
	conn   *conn
	bw     *bufio.Writer
	br     *bufio.Reader
	req    *http.Request
	header http.Header

	status     int   // 0 until WriteHeader
	declared   int64 // Content-Length set by the handler, or -1
	written    int64 // body bytes the handler wrote
	sent       bool  // header written to bw
	chunked    bool
	closeAfter bool
	hijacked   bool
	buf        []byte
	err        error // of writing to the connection
}

func (w *response) Header() http.Header { return w.header }

// WriteHeader records the status; 1xx informational answers are not sent.
func (w *response) WriteHeader(code int) {
	if w.status != 0 || w.hijacked || code < 200 {
		return
	}
	w.status = code
	if cl := w.header.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			w.declared = n
		}
	}
}

// bodyAllowed reports whether the response may have a body (RFC 9110,
// section 6.4.1).
func (w *response) bodyAllowed() bool {
	return w.status != http.StatusNoContent && w.status != http.StatusNotModified && w.req.Method != http.MethodHead
}

func (w *response) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.bodyAllowed() {
		if w.req.Method == http.MethodHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.declared >= 0 && w.written+int64(len(p)) > w.declared {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if !w.sent {
		if len(w.buf)+len(p) <= bufferLimit {
			w.buf = append(w.buf, p...)
			return len(p), nil
		}
		// Over the limit: send what is buffered and p as the first chunk.
		w.buf = append(w.buf, p...)
		w.sendHeader(-1)
		w.writeChunk(w.buf)
		w.buf = nil
	} else {
		w.writeChunk(p)
	}
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

func (w *response) writeChunk(p []byte) {
	if len(p) == 0 || w.err != nil {
		return
	}
	if !w.chunked {
		_, w.err = w.bw.Write(p)
		return
	}
	fmt.Fprintf(w.bw, "%x\r\n", len(p))
	w.bw.Write(p)
	_, w.err = w.bw.WriteString("\r\n")
}

// sendHeader writes the status line and header; length is the body's
// length, or -1 for a chunked body of unknown length. The handler's
// Content-Length, if it set one, overrides length.
func (w *response) sendHeader(length int64) {
	w.sent = true
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.declared >= 0 {
		length = w.declared
	}
	h := w.header
	if w.bodyAllowed() && h.Get("Content-Type") == "" && len(w.buf) > 0 {
		if _, set := h["Content-Type"]; !set {
			h.Set("Content-Type", http.DetectContentType(w.buf))
		}
	}
	if _, set := h["Date"]; !set { // a nil Date means none, as in net/http
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	switch {
	case length >= 0 && w.status != http.StatusNotModified && w.status != http.StatusNoContent && w.status >= 200:
		if w.req.Method != http.MethodHead || length > 0 {
			h.Set("Content-Length", strconv.FormatInt(length, 10))
		}
	case length < 0 && w.req.ProtoAtLeast(1, 1):
		h.Del("Content-Length")
		h.Set("Transfer-Encoding", "chunked")
		w.chunked = true
	case length < 0:
		// An HTTP/1.0 client learns the end of the body from the
		// connection's.
		h.Del("Content-Length")
		w.closeAfter = true
	}
	if h.Get("Connection") == "close" {
		w.closeAfter = true
	}
	if w.closeAfter || w.req.Close {
		h.Set("Connection", "close")
	}
	fmt.Fprintf(w.bw, "HTTP/1.1 %d %s\r\n", w.status, http.StatusText(w.status))
	h.Write(w.bw)
	_, w.err = w.bw.WriteString("\r\n")
}

// Flush sends what is buffered; the rest of the body is chunked.
func (w *response) Flush() {
	if w.hijacked {
		return
	}
	if !w.sent {
		w.sendHeader(-1)
		w.writeChunk(w.buf)
		w.buf = nil
	}
	if w.err == nil {
		w.err = w.bw.Flush()
	}
}

// finish completes the response after the handler returned; false means
// the connection failed.
func (w *response) finish() bool {
	if !w.sent {
		n := int64(len(w.buf))
		if !w.bodyAllowed() {
			n = 0
		}
		w.sendHeader(n)
		w.writeChunk(w.buf)
	} else if w.chunked && w.err == nil {
		_, w.err = w.bw.WriteString("0\r\n\r\n")
	}
	if w.declared >= 0 && w.written < w.declared && w.bodyAllowed() {
		w.closeAfter = true // the client waits for the rest: end the connection
	}
	if w.err == nil {
		w.err = w.bw.Flush()
	}
	return w.err == nil
}

// Hijack hands the connection to the handler (http.Hijacker).
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.sent || w.hijacked {
		return nil, nil, errors.New("plainhttp: hijack after the response started")
	}
	w.hijacked = true
	c := w.conn.c
	c.SetDeadline(time.Time{})
	w.srv.setState(c, http.StateHijacked)
	return c, bufio.NewReadWriter(w.br, w.bw), nil
}
