package transport

import "golang.zx2c4.com/wireguard/conn"

// Multi-hop relaying.
//
// A box relays for a peer it does not reach directly by passing the packet
// on along its own confirmed relay path to that peer. Between two relays
// the packet travels in a relay-hop envelope, the same length as the other
// transport headers so that the overlay MTU holds on any number of hops:
//
//	0xCB 0x04 hops left (1) 0x00 src ID (15) dst ID (15)  inner packet
//
// IDs are the first IDLen bytes of node keys, enough to tell the members of
// a community apart (two keys sharing 120 bits cannot be made on purpose);
// a relay that knows two peers with the same ID forwards for neither.
//
// The way through A -> R1 -> R2 -> B:
//
//	A  -> R1  relay forward  dst B          (as for one relay)
//	R1 -> R2  relay hop      src A, dst B   R1's path to B is "relay via R2"
//	R2 -> B   relayed        src A          R2 reaches B directly
//
// No box knows more than its next hop. Paths are learned, as for one
// relay, by pinging a peer through each relay candidate: a relay passes the
// ping on only when it has a path itself, so a pong proves the whole chain.
// A relay forwards over a direct path (confirmed or not, as for one hop)
// or over a confirmed relay path only, never back to the box the packet
// came from nor to its source, and never more than MaxRelays relays in a
// row: the first relay sets hops left to MaxRelays-2, every further relay
// that is not the last takes one off, and a packet with none left that
// cannot be delivered directly is dropped. A packet that comes back to its
// source finds no peer with the source's ID there and is dropped too.
// Relays rewrite the header in place and never see inside the inner
// packet: WireGuard and disco stay end-to-end between A and B.

const (
	// MaxRelays is the most relays one packet passes through.
	MaxRelays = 4
	// IDLen is the length of the node IDs in a relay-hop header.
	IDLen = 15

	// Offsets in a relay-hop header.
	hopLeft     = 2
	hopReserved = 3
	hopSrc      = 4
	hopDst      = hopSrc + IDLen
)

// Every transport header has the same length, so rewrites stay in place.
var _ = [1]struct{}{}[HeaderLen-(hopDst+IDLen)]

// nodeID is the short form of a node key in relay-hop headers.
type nodeID [IDLen]byte

func idOf(k Key) nodeID { return nodeID(k[:IDLen]) }

// addID records p under its node ID in byID; IDs that two peers share map
// to nil, which no lookup accepts.
func addID(byID map[nodeID]*peer, p *peer) {
	id := idOf(p.key)
	if _, dup := byID[id]; dup {
		byID[id] = nil
		return
	}
	byID[id] = p
}

// nextHop returns where a relay sends a packet from src, received from
// the neighbour from, on its way to dst: dst itself (direct) or the next
// relay. It returns nil when the relay has no usable path.
func nextHop(t *peerTable, dst, src, from *peer) (ep conn.Endpoint, direct bool) {
	c := dst.route.Load()
	switch {
	case c == nil:
		return nil, false
	case c.kind == choiceDirect:
		return c.ep, true
	case c.kind == choiceRelay && c.confirmed && c.via != from.key && c.via != src.key:
		return relayEndpoint(t, c.via), false
	}
	return nil, false
}

// putHop rewrites the header of pkt into a relay-hop header.
func putHop(pkt []byte, left byte, src, dst Key) {
	pkt[1], pkt[hopLeft], pkt[hopReserved] = TypeRelayHop, left, 0
	copy(pkt[hopSrc:hopDst], src[:IDLen])
	copy(pkt[hopDst:HeaderLen], dst[:IDLen])
}

// putRelayed rewrites the header of pkt into a relayed header from src.
func putRelayed(pkt []byte, src Key) {
	pkt[1] = TypeRelayed
	copy(pkt[2:HeaderLen], src[:])
}

// pass sends pkt from src, received from the neighbour from, on towards
// dst: rewritten into a relayed header when this box reaches dst directly,
// else into a relay-hop header for the next relay. left is the number of
// relays that may still follow this one.
func (r *receiver) pass(t *peerTable, pkt []byte, src, dst, from *peer, left byte) {
	ep, direct := nextHop(t, dst, src, from)
	switch {
	case ep == nil || (!direct && left == 0):
		r.b.stats.dropRelayNoPath.Add(1)
		return
	case direct:
		putRelayed(pkt, src.key)
	default:
		putHop(pkt, left-1, src.key, dst.key)
	}
	r.queue(pkt, ep)
}
