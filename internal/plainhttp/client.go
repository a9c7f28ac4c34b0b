package plainhttp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// ErrNotPlain is returned for a URL that is not http://.
var ErrNotPlain = errors.New("plainhttp: only http:// URLs (the router profile has no TLS)")

// Client is a plain HTTP/1.1 client: one connection per request, closed
// with the response body. It follows no redirects and uses no proxy. The
// zero value works; it is safe for concurrent use.
type Client struct {
	// Timeout bounds a whole request, reading the response body
	// included; zero means none (the request's context still applies).
	Timeout time.Duration
	// Dialer dials the server; nil means a net.Dialer.
	Dialer interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	}
}

// Do sends req and returns the response, whose body the caller must close.
// The request's context (and Timeout) bounds the whole exchange: when it
// ends, reading the body fails.
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	resp, err := c.do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	return resp, nil
}

func (c *Client) do(req *http.Request) (*http.Response, error) {
	if req.URL == nil || req.URL.Scheme != "http" || req.URL.Host == "" {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, ErrNotPlain
	}
	ctx, cancel := req.Context(), context.CancelFunc(func() {})
	if c.Timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
	}
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	var dialer interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	} = &net.Dialer{}
	if c.Dialer != nil {
		dialer = c.Dialer
	}
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		cancel()
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	// When ctx ends, every read and write on conn fails at once.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, error) {
		stop()
		conn.Close()
		cancel()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (%w)", context.Cause(ctx), err)
		}
		return nil, err
	}
	out := *req // shallow: Write reads, never changes, the rest
	out.Close = true
	if err := WriteRequest(conn, &out); err != nil {
		return fail(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return fail(err)
	}
	resp.Body = &closingBody{ReadCloser: resp.Body, close: func() {
		stop()
		conn.Close()
		cancel()
	}}
	return resp, nil
}

// CloseIdleConnections does nothing: the client keeps no idle connection.
func (c *Client) CloseIdleConnections() {}

// closingBody closes the connection with the body.
type closingBody struct {
	io.ReadCloser
	once  sync.Once
	close func()
}

func (b *closingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.close)
	return err
}
