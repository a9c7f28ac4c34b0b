//go:build !router

package proxy

import (
	"net"
	"net/http"
	"time"
)

// newHTTPSTransport returns the client of https:// absolute URIs: a
// net/http Transport dialling through d.
func newHTTPSTransport(d *net.Dialer, cfg Config) roundTripper {
	return &http.Transport{
		DialContext:            d.DialContext,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    256,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    cfg.DialTimeout,
		ResponseHeaderTimeout:  cfg.ResponseHeaderTimeout,
		ExpectContinueTimeout:  time.Second,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
		WriteBufferSize:        8 << 10,
		ReadBufferSize:         16 << 10,
	}
}
