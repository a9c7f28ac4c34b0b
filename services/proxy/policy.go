package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"
)

// prefixSet is a list of prefixes checked in order; the lists here are
// short, so a linear scan beats anything cleverer.
type prefixSet []netip.Prefix

func (s prefixSet) contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// policy holds the access rules, immutable after New.
type policy struct {
	sources     prefixSet
	denied      prefixSet // DeniedDestinations + Community + LocalNets
	allowed     prefixSet // AllowedDestinations
	tunnelPorts []uint16
	anyPort     bool
}

func newPolicy(cfg Config) policy {
	denied := slices.Concat(DeniedDestinations, cfg.Community, cfg.LocalNets)
	return policy{
		sources:     cfg.AllowedSources,
		denied:      denied,
		allowed:     cfg.AllowedDestinations,
		tunnelPorts: cfg.TunnelPorts,
		anyPort:     cfg.AnyPort,
	}
}

// sourceAllowed reports whether a client at addr may connect.
func (p *policy) sourceAllowed(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	return ok && p.sources.contains(ip)
}

// destAllowed reports whether the gateway may connect to ip.
func (p *policy) destAllowed(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return false
	}
	if p.allowed.contains(ip) {
		return true
	}
	return !p.denied.contains(ip)
}

// portAllowed reports whether a request may reach port: tunnel is CONNECT,
// socks is SOCKS5 (tunnel ports and 80), neither is plain HTTP (80, 443 and
// from 1024 up, the ports Squid's default configuration calls safe, minus
// the rarely used ones).
func (p *policy) portAllowed(port uint16, tunnel, socks bool) bool {
	if p.anyPort {
		return port != 0
	}
	if socks && port == 80 {
		return true
	}
	if tunnel || socks {
		return slices.Contains(p.tunnelPorts, port)
	}
	return port == 80 || port == 443 || port >= 1024
}

// control is the net.Dialer's ControlContext: it runs after name
// resolution, on the address actually dialled, so a name that resolves to
// a denied address (DNS rebinding included) is refused.
func (p *policy) control(_ context.Context, _, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !p.destAllowed(ap.Addr()) {
		return fmt.Errorf("dialing: %w", ErrDeniedDestination)
	}
	return nil
}
