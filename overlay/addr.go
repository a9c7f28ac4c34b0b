package overlay

import (
	"crypto/sha256"
	"net/netip"
)

// DefaultIPv6Prefix is the ULA prefix (RFC 4193 section 3.2: fd00::/8 with
// a 40-bit global ID, here the first bytes of SHA-256("cloudbox overlay"))
// used when Config.IPv6 is zero.
var DefaultIPv6Prefix = netip.MustParsePrefix("fd22:a88d:5470::/48")

// AddrFromKey returns the address in prefix whose host bits are the first
// bits of SHA-256(nodeKey): a stable address that every member can compute
// from the node key alone. prefix must be an IPv6 prefix of at most /120.
func AddrFromKey(prefix netip.Prefix, nodeKey [32]byte) netip.Addr {
	h := sha256.Sum256(nodeKey[:])
	net := prefix.Masked().Addr().As16()
	bits := prefix.Bits()
	var out [16]byte
	for i := range out {
		keep := 0 // bits of this byte that come from the prefix
		switch {
		case bits >= 8*(i+1):
			keep = 8
		case bits > 8*i:
			keep = bits - 8*i
		}
		mask := byte(0xff << (8 - keep))
		out[i] = net[i]&mask | h[i]&^mask
	}
	return netip.AddrFrom16(out)
}
