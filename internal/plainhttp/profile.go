package plainhttp

import (
	"context"
	"log"
	"net"
	"net/http"
	"time"
)

// HTTPServer is what the daemon needs of an HTTP server; *http.Server and
// *Server implement it. Serve returns http.ErrServerClosed after Shutdown
// or Close.
type HTTPServer interface {
	Serve(ln net.Listener) error
	Shutdown(ctx context.Context) error
	Close() error
}

// HTTPClient is what the daemon needs of an HTTP client; *http.Client and
// *Client implement it.
type HTTPClient interface {
	Do(req *http.Request) (*http.Response, error)
	CloseIdleConnections()
}

// ServerConfig configures a server; the fields mean what those of
// http.Server of the same names mean. Zero values are those of
// http.Server: no timeouts, http.DefaultMaxHeaderBytes, errors logged by
// the log package.
type ServerConfig struct {
	// Handler answers every request; required.
	Handler http.Handler
	// ReadHeaderTimeout bounds reading a request's header; zero means
	// ReadTimeout.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request; zero means none.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response, from the end of the
	// request's header; zero means none.
	WriteTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a kept-alive
	// connection; zero means ReadTimeout, and if that is zero too, none.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's header; zero means
	// http.DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// ErrorLog receives accept errors and handler panics; nil means the
	// log package's standard logger.
	ErrorLog *log.Logger
	// ConnContext returns the context of a new connection's requests,
	// derived from ctx; nil means ctx.
	ConnContext func(ctx context.Context, c net.Conn) context.Context
	// ConnState is called when a connection changes state: StateNew when
	// accepted (before it is served), StateActive and StateIdle around
	// each request, and once at the end StateHijacked (from the handler's
	// Hijack) or StateClosed; nil means no calls.
	ConnState func(net.Conn, http.ConnState)
}

// ClientConfig configures a client.
type ClientConfig struct {
	// Timeout bounds a whole request, reading the response body
	// included; zero means none (the request's context still applies).
	Timeout time.Duration
	// IdleConnTimeout is how long net/http's client keeps an idle
	// connection (this package's keeps none); zero means no limit.
	IdleConnTimeout time.Duration
	// MaxIdleConnsPerHost is net/http's Transport's; zero means 2.
	MaxIdleConnsPerHost int
	// DisableKeepAlives makes net/http's client use a connection per
	// request, as this package's always does.
	DisableKeepAlives bool
}
