//go:build !router

package plainhttp

import (
	"io"
	"net/http"
)

// NewServer returns net/http's server in the full profile (this package's
// in the router profile).
func NewServer(cfg ServerConfig) HTTPServer {
	return &http.Server{
		Handler:           cfg.Handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          cfg.ErrorLog,
		ConnContext:       cfg.ConnContext,
		ConnState:         cfg.ConnState,
	}
}

// NewClient returns net/http's client with a Transport of its own in the
// full profile (this package's in the router profile).
func NewClient(cfg ClientConfig) HTTPClient {
	return &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{
		IdleConnTimeout:     cfg.IdleConnTimeout,
		MaxIdleConnsPerHost: cfg.MaxIdleConnsPerHost,
		DisableKeepAlives:   cfg.DisableKeepAlives,
	}}
}

// WriteRequest writes req as a client request: req.Write in the full
// profile (writeRequest, without IDNA, in the router profile).
func WriteRequest(w io.Writer, req *http.Request) error { return req.Write(w) }
