//go:build router

package proxy

import (
	"fmt"
	"strings"
	"testing"
)

// TestHTTPSURIRefused: the router profile answers an absolute https://
// URI with 501 and a hint, without contacting the origin; CONNECT still
// works (TestCurlThroughProxy's connect-tls).
func TestHTTPSURIRefused(t *testing.T) {
	o := newOrigin(t, true)
	p, httpAddr, _ := startProxy(t, Config{AllowedDestinations: loopback, AnyPort: true})
	host := strings.TrimPrefix(o.URL, "https://")
	status, body := rawRequest(t, httpAddr, fmt.Sprintf("GET https://%s/small HTTP/1.1\r\nHost: %s\r\n\r\n", host, host))
	if status != 501 || !strings.Contains(body, "CONNECT") {
		t.Errorf("got %d %q, want 501 naming CONNECT", status, body)
	}
	if _, hits := o.lastHeader(); hits != 0 {
		t.Errorf("origin got %d requests, want 0", hits)
	}
	if s := p.Stats(); s.Requests != 0 {
		t.Errorf("Stats().Requests = %d, want 0", s.Requests)
	}
}
