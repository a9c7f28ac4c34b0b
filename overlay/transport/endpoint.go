package transport

import (
	"crypto/sha256"
	"net/netip"

	"golang.zx2c4.com/wireguard/conn"
)

// Endpoint is what WireGuard holds for a peer: the peer's node key, not an
// address. The Bind picks the underlay path on every Send. ParseEndpoint
// returns the same *Endpoint for the same peer until the peer is removed.
type Endpoint struct {
	peer *peer
	// dstIP is a stable synthetic address derived from the key, used by
	// WireGuard only as a rate-limiting bucket for relayed handshakes.
	dstIP netip.Addr
}

var _ conn.Endpoint = (*Endpoint)(nil)

func newEndpoint(p *peer) *Endpoint {
	h := sha256.Sum256(p.key[:])
	h[0] = 0xfd // ULA, never routed
	return &Endpoint{peer: p, dstIP: netip.AddrFrom16([16]byte(h[:16]))}
}

// Key returns the peer's node key.
func (e *Endpoint) Key() Key { return e.peer.key }

// ClearSrc implements conn.Endpoint; there is no sticky source.
func (e *Endpoint) ClearSrc() {}

// SrcToString implements conn.Endpoint.
func (e *Endpoint) SrcToString() string { return "" }

// DstToString implements conn.Endpoint: the node key in hex, which
// ParseEndpoint turns back into this Endpoint.
func (e *Endpoint) DstToString() string { return e.peer.key.String() }

// DstToBytes implements conn.Endpoint (WireGuard's cookie MACs): the node
// key, stable across path changes.
func (e *Endpoint) DstToBytes() []byte { return e.peer.key[:] }

// DstIP implements conn.Endpoint.
func (e *Endpoint) DstIP() netip.Addr { return e.dstIP }

// SrcIP implements conn.Endpoint.
func (e *Endpoint) SrcIP() netip.Addr { return netip.Addr{} }

// addrOf returns the underlay address of an endpoint from the inner Bind.
func addrOf(ep conn.Endpoint) netip.AddrPort {
	switch e := ep.(type) {
	case *conn.StdNetEndpoint:
		return e.AddrPort
	case interface{ AddrPort() netip.AddrPort }:
		return e.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(ep.DstToString())
	return ap
}
