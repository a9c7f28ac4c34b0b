package transport

import "sync/atomic"

// Stats are the Bind's counters since New. All are monotonic.
type Stats struct {
	// WireGuard messages handed to and taken from WireGuard, on any path.
	WireGuardPacketsIn, WireGuardBytesIn   uint64
	WireGuardPacketsOut, WireGuardBytesOut uint64
	// DataPacketsIn counts WireGuard transport messages that carry data
	// (longer than a keepalive) handed to WireGuard. WireGuard decides
	// whether they authenticate; compare with what reaches the TUN.
	DataPacketsIn uint64
	// HandshakesIn and HandshakesOut count handshake initiations and
	// responses.
	HandshakesIn, HandshakesOut uint64
	// RelayedPacketsIn and RelayedPacketsOut count this box's own WireGuard
	// messages that arrived or left through a relay.
	RelayedPacketsIn, RelayedPacketsOut uint64
	// RelayForwardedPackets and RelayForwardedBytes count packets this box
	// forwarded for two other peers.
	RelayForwardedPackets, RelayForwardedBytes uint64
	// DiscoIn and DiscoOut count disco messages that authenticated, and
	// that were sent.
	DiscoIn, DiscoOut uint64

	// Dropped packets, by reason.
	DropMalformed        uint64 // does not parse as WireGuard or transport
	DropUnknownPeer      uint64 // names a node key that is not a peer
	DropRelayNotAllowed  uint64 // relay envelope from an address that is no peer's
	DropRelayNoPath      uint64 // relay request for a peer this box has no path to, or no hops left for
	DropDiscoAuth        uint64 // disco box did not open: forged or tampered
	DropDiscoUnsolicited uint64 // pong for no outstanding ping (late, replayed or wrong path)
	// SendErrors counts sends the inner Bind failed.
	SendErrors uint64

	// LAN announces (see HandleAnnounce and RunLAN). LANAnnouncesOut
	// counts announces sent, one per interface and address family.
	LANAnnouncesOut         uint64
	LANAnnouncesAccepted    uint64 // named a peer: its endpoint became a candidate
	LANAnnouncesUnknown     uint64 // named a key that is not a peer
	LANAnnouncesUnusable    uint64 // from a link-local IPv6 or excluded address
	LANAnnouncesMalformed   uint64 // does not parse
	LANAnnouncesRateLimited uint64 // beyond the rate limit, not looked at
}

// counters is the live form of Stats.
type counters struct {
	wgPacketsIn, wgBytesIn   atomic.Uint64
	wgPacketsOut, wgBytesOut atomic.Uint64
	dataPacketsIn            atomic.Uint64
	handshakesIn             atomic.Uint64
	handshakesOut            atomic.Uint64
	relayedIn, relayedOut    atomic.Uint64
	fwdPackets, fwdBytes     atomic.Uint64
	discoIn, discoOut        atomic.Uint64
	dropMalformed            atomic.Uint64
	dropUnknownPeer          atomic.Uint64
	dropRelayNotAllowed      atomic.Uint64
	dropRelayNoPath          atomic.Uint64
	dropDiscoAuth            atomic.Uint64
	dropDiscoUnsolicited     atomic.Uint64
	sendErrors               atomic.Uint64
	lanOut, lanAccepted      atomic.Uint64
	lanUnknown, lanUnusable  atomic.Uint64
	lanMalformed             atomic.Uint64
	lanRateLimited           atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		WireGuardPacketsIn:      c.wgPacketsIn.Load(),
		WireGuardBytesIn:        c.wgBytesIn.Load(),
		WireGuardPacketsOut:     c.wgPacketsOut.Load(),
		WireGuardBytesOut:       c.wgBytesOut.Load(),
		DataPacketsIn:           c.dataPacketsIn.Load(),
		HandshakesIn:            c.handshakesIn.Load(),
		HandshakesOut:           c.handshakesOut.Load(),
		RelayedPacketsIn:        c.relayedIn.Load(),
		RelayedPacketsOut:       c.relayedOut.Load(),
		RelayForwardedPackets:   c.fwdPackets.Load(),
		RelayForwardedBytes:     c.fwdBytes.Load(),
		DiscoIn:                 c.discoIn.Load(),
		DiscoOut:                c.discoOut.Load(),
		DropMalformed:           c.dropMalformed.Load(),
		DropUnknownPeer:         c.dropUnknownPeer.Load(),
		DropRelayNotAllowed:     c.dropRelayNotAllowed.Load(),
		DropRelayNoPath:         c.dropRelayNoPath.Load(),
		DropDiscoAuth:           c.dropDiscoAuth.Load(),
		DropDiscoUnsolicited:    c.dropDiscoUnsolicited.Load(),
		SendErrors:              c.sendErrors.Load(),
		LANAnnouncesOut:         c.lanOut.Load(),
		LANAnnouncesAccepted:    c.lanAccepted.Load(),
		LANAnnouncesUnknown:     c.lanUnknown.Load(),
		LANAnnouncesUnusable:    c.lanUnusable.Load(),
		LANAnnouncesMalformed:   c.lanMalformed.Load(),
		LANAnnouncesRateLimited: c.lanRateLimited.Load(),
	}
}

// wireGuardIn counts one received WireGuard message and reports whether it
// carries data.
func (c *counters) wireGuardIn(pkt []byte) (data bool) {
	c.wgPacketsIn.Add(1)
	c.wgBytesIn.Add(uint64(len(pkt)))
	switch pkt[0] {
	case 1, 2:
		c.handshakesIn.Add(1)
	case 4:
		if len(pkt) > minWireGuardLen {
			c.dataPacketsIn.Add(1)
			return true
		}
	}
	return false
}

// wireGuardOut counts a batch of WireGuard messages being sent and returns
// the number that carry data (transport messages longer than a keepalive).
func (c *counters) wireGuardOut(bufs [][]byte) (data int) {
	var n uint64
	var hs uint64
	for _, b := range bufs {
		n += uint64(len(b))
		if len(b) == 0 {
			continue
		}
		switch b[0] {
		case 1, 2:
			hs++
		case 4:
			if len(b) > minWireGuardLen {
				data++
			}
		}
	}
	c.wgPacketsOut.Add(uint64(len(bufs)))
	c.wgBytesOut.Add(n)
	if hs > 0 {
		c.handshakesOut.Add(hs)
	}
	return data
}
