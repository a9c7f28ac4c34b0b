//go:build router

package appliance

import (
	"context"
	"crypto/tls"
	"errors"
)

// The router profile serves no HTTPS: on OpenWrt, LuCI (uhttpd) owns the
// router's ports 80 and 443 and its certificate, and a TLS server would
// link crypto/tls, X.509 and the NIST curves, over 1.5 MB of a mipsle
// cloudboxd. cloudboxd answers over plain HTTP on the LAN (port 8080) and
// over the encrypted overlay. --https is off by default in host mode, as
// the router runs it; given, HTTPS reports this error in its status.
var errNoHTTPS = errors.New("the router profile of cloudboxd has no HTTPS: use its HTTP address on the LAN, or the overlay")

// certAuthority is empty in the router profile: there is no HTTPS
// certificate to issue, /ca.crt answers 404 and /api/v1/tls reports none.
type certAuthority struct{}

// certAuthorityConfig is the full profile's; the router profile ignores it.
type certAuthorityConfig struct {
	stateDir, node, domain string
	addrs                  any
	now                    any
	logger                 any
}

func openCertAuthority(certAuthorityConfig) (*certAuthority, error) { return &certAuthority{}, nil }

func (*certAuthority) info() tlsInfo          { return tlsInfo{} }
func (*certAuthority) fingerprint() string    { return "" }
func (*certAuthority) certPEM() []byte        { return nil }
func (*certAuthority) caDER() []byte          { return nil }
func (*certAuthority) tlsConfig() *tls.Config { return nil }

func (s *httpsService) serve(context.Context) error { return errNoHTTPS }
