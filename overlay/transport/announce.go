package transport

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"
)

// LAN discovery: see the package documentation.

const (
	// TypeAnnounce is a LAN announce: 0xCB 0x05, node key (32), overlay
	// UDP port (2, big endian). It is sent to the LAN's link-local
	// multicast groups from the LAN discovery socket, never on the overlay
	// socket, and it is not authenticated.
	TypeAnnounce = 0x05
	// AnnounceLen is the length of an announce.
	AnnounceLen = HeaderLen + 2

	// DefaultLANPort is the UDP port of LAN discovery: every box sends its
	// announces to it and listens on it.
	DefaultLANPort = 51819
	// DefaultLANInterval is how often a box announces itself.
	DefaultLANInterval = 15 * time.Second

	// announceRate and announceBurst bound the announces handled: a
	// token bucket of announceBurst tokens refilled at announceRate per
	// second, shared by all senders. A LAN of 100 boxes announcing on two
	// families every 15 s needs 14 per second.
	announceRate  = 50
	announceBurst = 100
)

// ErrMalformedAnnounce is returned by ParseAnnounce.
var ErrMalformedAnnounce = errors.New("malformed LAN announce")

// AppendAnnounce appends the announce of node key k listening on port.
func AppendAnnounce(b []byte, k Key, port uint16) []byte {
	b = appendHeader(b, TypeAnnounce, k)
	return binary.BigEndian.AppendUint16(b, port)
}

// ParseAnnounce returns the node key and overlay port of an announce. It
// accepts exactly AnnounceLen bytes with a non-zero key and port.
func ParseAnnounce(b []byte) (Key, uint16, error) {
	if len(b) != AnnounceLen || b[0] != Magic || b[1] != TypeAnnounce {
		return Key{}, 0, ErrMalformedAnnounce
	}
	k := headerKey(b)
	port := binary.BigEndian.Uint16(b[HeaderLen:])
	if k.IsZero() || port == 0 {
		return Key{}, 0, ErrMalformedAnnounce
	}
	return k, port, nil
}

// announceLimiter is a token bucket. Guarded by Bind.mu.
type announceLimiter struct {
	tokens float64
	last   time.Time
}

func (l *announceLimiter) allow(now time.Time) bool {
	if l.last.IsZero() {
		l.tokens = announceBurst
	} else if d := now.Sub(l.last); d > 0 {
		l.tokens = min(announceBurst, l.tokens+d.Seconds()*announceRate)
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

// HandleAnnounce handles an announce received on the LAN from address
// from. When it names a peer, the sender's address with the announced port
// becomes a candidate endpoint of that peer and is pinged at once; disco
// decides whether it is real, so a forged announce can make the box send a
// ping and no more. Announces of unknown keys, of this box's own key, from
// unusable addresses (link-local IPv6, excluded ranges), malformed ones and
// those beyond the rate limit are dropped and counted in Stats.
func (b *Bind) HandleAnnounce(from netip.Addr, pkt []byte) {
	now := b.now()
	b.mu.Lock()
	ok := b.announces.allow(now)
	b.mu.Unlock()
	if !ok {
		b.stats.lanRateLimited.Add(1)
		return
	}
	k, port, err := ParseAnnounce(pkt)
	if err != nil {
		b.stats.lanMalformed.Add(1)
		return
	}
	if k == b.public {
		return // our own, looped back
	}
	t := b.table.Load()
	p := t.byKey[k]
	if p == nil {
		b.stats.lanUnknown.Add(1)
		return
	}
	from = from.Unmap()
	ap := netip.AddrPortFrom(from, port)
	if from.Zone() != "" || from.IsLinkLocalUnicast() || !b.usable(ap) {
		b.stats.lanUnusable.Add(1)
		return
	}
	b.stats.lanAccepted.Add(1)
	var out []outgoing
	b.mu.Lock()
	if b.port != 0 {
		if p.paths.addLearned(ap, b.innerEndpoint, now) {
			b.log.Debug("learned endpoint on the lan", "peer", p.String(), "addr", ap)
		}
		if o, ok := b.pingSoonLocked(t, p, ap, now); ok {
			out = append(out, o)
		}
	}
	b.mu.Unlock()
	b.sendControl(out)
}
