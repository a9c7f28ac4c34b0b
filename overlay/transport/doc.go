// Package transport carries the overlay's packets between boxes: it is the
// conn.Bind that wireguard-go's device sends and receives through, and it
// decides, packet by packet, which underlay path reaches a peer.
//
// WireGuard messages (first byte 1 to 4 followed by three zero bytes) travel
// on direct paths exactly as wireguard-go sends them, with no extra header.
// Everything the transport adds starts with Magic (0xCB), a byte WireGuard
// never uses as a message type, followed by a type byte:
//
//	relay forward  0xCB 0x01 dst node key (32)    inner packet   A -> R
//	relayed        0xCB 0x02 src node key (32)    inner packet   R -> B
//	disco          0xCB 0x03 sender node key (32) nonce (24) box  any -> any
//	relay hop      0xCB 0x04 hops, 0, src ID (15), dst ID (15)    R -> R'
//
// The inner packet of a relay envelope is a WireGuard message or a disco
// message; the relay rewrites the header in place and forwards the rest
// untouched. It cannot read it: WireGuard sessions and disco boxes exist only
// between the two ends. A relay forwards only between peers it is configured
// with, only from an address it knows belongs to the sender, and only to a
// peer it reaches directly or through a confirmed relay path of its own
// (multi-hop, at most MaxRelays relays; see relayhop.go).
//
// Disco (package overlay/disco) finds the paths: every box pings every
// candidate endpoint of every peer, keeps round-trip times and the time of
// the last pong, and sends over the best live direct path; without one it
// relays through a peer it reaches directly whose pings come back (that
// peer reaches the other end directly or through relays of its own), and
// goes back to direct as soon as a direct pong arrives. While relayed it
// sends a call-me-maybe through the relay so that both ends ping each other
// at the same moment, which opens most NAT mappings (hole punching).
//
// LAN discovery (announce.go, lan.go) finds peers on the same LAN that no
// roster record or bootstrap names an endpoint for. RunLAN sends, at start
// and every LANConfig.Interval, an announce to 224.0.0.1 and ff02::1 on each
// multicast interface but the overlay's, to a port of its own
// (DefaultLANPort):
//
//	announce       0xCB 0x05 node key (32)        overlay port (2)
//
// It is not authenticated. A receiver that has the key as a peer only adds
// the sender's address with that port as a candidate endpoint and pings it;
// the sealed disco ping/pong decides, so a forged announce costs one ping.
// Announces are rate-limited, and those of unknown keys, from link-local
// IPv6 sources (the socket sends without zones) or malformed are dropped;
// Stats counts each.
//
// WireGuard is configured with one Endpoint per peer (ParseEndpoint of the
// peer's node key in hex) and with roaming disabled, so WireGuard never
// changes where it sends; the Bind does.
//
// The package does not manage WireGuard itself, the TUN device, or which
// peers exist: the owner (overlay.Engine) calls SetPeers.
package transport
