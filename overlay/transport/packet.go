package transport

import "golang.org/x/crypto/nacl/box"

// Framing of the packets the transport adds to WireGuard's. See the package
// documentation for the layout.
const (
	// Magic is the first byte of every packet the transport adds. WireGuard
	// message types are 1 to 4, so the two never collide.
	Magic = 0xCB

	// TypeRelayFwd asks the receiving relay to forward the inner packet to
	// the peer named in the header.
	TypeRelayFwd = 0x01
	// TypeRelayed carries an inner packet that a relay forwarded from the
	// peer named in the header.
	TypeRelayed = 0x02
	// TypeDisco carries a sealed disco message from the named sender.
	TypeDisco = 0x03
	// TypeRelayHop carries an inner packet between two relays, naming its
	// source and destination by node ID and counting the hops left (see
	// relayhop.go).
	TypeRelayHop = 0x04

	// HeaderLen is the length of every transport header: magic, type, node
	// key. The relay header adds exactly this to a WireGuard packet.
	HeaderLen = 2 + len(Key{})

	// minWireGuardLen is the shortest WireGuard message (a keepalive: 16
	// bytes of header and a 16-byte tag).
	minWireGuardLen = 32
	// minDiscoLen is the shortest disco packet: header, nonce, tag, and the
	// two-byte message header.
	minDiscoLen = HeaderLen + 24 + box.Overhead + 2
)

// kind classifies a received datagram.
type kind uint8

const (
	kindMalformed kind = iota
	kindWireGuard
	kindRelayFwd
	kindRelayed
	kindDisco
	kindRelayHop
)

func (k kind) String() string {
	switch k {
	case kindWireGuard:
		return "wireguard"
	case kindRelayFwd:
		return "relay-forward"
	case kindRelayed:
		return "relayed"
	case kindDisco:
		return "disco"
	case kindRelayHop:
		return "relay-hop"
	}
	return "malformed"
}

// isWireGuard reports whether b looks like a WireGuard message: a
// little-endian uint32 type of 1 to 4 and at least a keepalive's length.
// WireGuard checks the rest.
func isWireGuard(b []byte) bool {
	return len(b) >= minWireGuardLen && b[0] >= 1 && b[0] <= 4 && b[1] == 0 && b[2] == 0 && b[3] == 0
}

// classify looks at the first bytes of a datagram. It does not authenticate
// anything. For relay envelopes it also checks that the inner packet is a
// WireGuard or disco message, so a relay never forwards arbitrary bytes.
func classify(b []byte) kind {
	if isWireGuard(b) {
		return kindWireGuard
	}
	if len(b) < HeaderLen || b[0] != Magic {
		return kindMalformed
	}
	switch b[1] {
	case TypeDisco:
		if len(b) < minDiscoLen {
			return kindMalformed
		}
		return kindDisco
	case TypeRelayFwd, TypeRelayed, TypeRelayHop:
		inner := b[HeaderLen:]
		if !isWireGuard(inner) && !(len(inner) >= minDiscoLen && inner[0] == Magic && inner[1] == TypeDisco) {
			return kindMalformed
		}
		switch {
		case b[1] == TypeRelayFwd:
			return kindRelayFwd
		case b[1] == TypeRelayed:
			return kindRelayed
		case b[hopReserved] != 0 || b[hopLeft] > MaxRelays-2:
			return kindMalformed
		}
		return kindRelayHop
	}
	return kindMalformed
}

// headerKey returns the node key in a transport header. b must be at least
// HeaderLen long.
func headerKey(b []byte) Key {
	return Key(b[2:HeaderLen])
}

// appendHeader appends a transport header.
func appendHeader(b []byte, typ byte, k Key) []byte {
	b = append(b, Magic, typ)
	return append(b, k[:]...)
}
