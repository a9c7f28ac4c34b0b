//go:build router

package plainhttp

import (
	"io"
	"net/http"
)

// NewServer returns this package's server in the router profile.
func NewServer(cfg ServerConfig) HTTPServer { return &Server{Config: cfg} }

// NewClient returns this package's client in the router profile.
func NewClient(cfg ClientConfig) HTTPClient { return &Client{Timeout: cfg.Timeout} }

// WriteRequest writes req as a client request without net/http's IDNA
// tables (see writeRequest).
func WriteRequest(w io.Writer, req *http.Request) error { return writeRequest(w, req) }
