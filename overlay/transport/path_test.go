package transport

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/overlay/disco"
	"golang.zx2c4.com/wireguard/conn"
)

var (
	e1 = netip.MustParseAddrPort("192.0.2.1:51820")
	e2 = netip.MustParseAddrPort("[2001:db8::1]:51820")
	r1 = Key{1}
	r2 = Key{2}
)

func stdEP(ap netip.AddrPort) conn.Endpoint { return &conn.StdNetEndpoint{AddrPort: ap} }

// pathHarness drives a pathSet with a fake clock.
type pathHarness struct {
	t   *testing.T
	ps  *pathSet
	now time.Time
	// last txid sent per target
	tx map[target]disco.TxID
}

func newPathHarness(t *testing.T, eps ...netip.AddrPort) *pathHarness {
	h := &pathHarness{t: t, now: time.Unix(1_000_000, 0), tx: map[target]disco.TxID{}}
	h.ps = newPathSet(DefaultTiming, h.now)
	h.ps.setConfigured(eps, stdEP, h.now)
	return h
}

func (h *pathHarness) advance(d time.Duration) { h.now = h.now.Add(d) }

// ping sends the pings that are due, remembering their txids.
func (h *pathHarness) ping(relays ...Key) {
	pings, _ := h.ps.due(h.now, relays)
	for _, to := range pings {
		tx := disco.NewTxID()
		h.ps.sent(to, tx, h.now)
		h.tx[to] = tx
	}
}

// pongDirect answers the last ping to addr.
func (h *pathHarness) pongDirect(addr netip.AddrPort) pongResult {
	return h.ps.onPong(h.tx[target{addr: addr}], Key{}, h.now)
}

// pongRelay answers the last ping through relay via.
func (h *pathHarness) pongRelay(via Key) pongResult {
	return h.ps.onPong(h.tx[target{via: via}], via, h.now)
}

func (h *pathHarness) want(relays []Key, kind choiceKind, addr netip.AddrPort, via Key, confirmed bool) {
	h.t.Helper()
	c := h.ps.choose(h.now, relays)
	if c.kind != kind || c.addr != addr || c.via != via || c.confirmed != confirmed {
		h.t.Errorf("at +%v: choice = {kind %d addr %v via %v confirmed %v}, want {kind %d addr %v via %v confirmed %v}",
			h.now.Sub(time.Unix(1_000_000, 0)), c.kind, c.addr, c.via.ShortString(), c.confirmed,
			kind, addr, via.ShortString(), confirmed)
	}
}

func TestPathSelection(t *testing.T) {
	relays := []Key{r1, r2}
	for _, tt := range []struct {
		name string
		run  func(h *pathHarness)
	}{
		{"direct-preferred-over-live-relay", func(h *pathHarness) {
			h.want(relays, choiceDirect, e1, Key{}, false) // guess during grace
			h.ping(relays...)
			h.advance(10 * time.Millisecond)
			if got := h.pongDirect(e1); got != pongNewDirect {
				t.Errorf("first direct pong = %v, want pongNewDirect", got)
			}
			h.want(relays, choiceDirect, e1, Key{}, true)
		}},
		{"relay-after-grace", func(h *pathHarness) {
			h.ping(relays...)
			h.advance(DefaultTiming.DirectGrace - time.Millisecond)
			h.want(relays, choiceDirect, e1, Key{}, false)
			h.advance(time.Millisecond)
			h.want(relays, choiceRelay, netip.AddrPort{}, r1, false)
			h.ping(relays...)
			h.advance(20 * time.Millisecond)
			h.pongRelay(r2)
			h.want(relays, choiceRelay, netip.AddrPort{}, r2, true)
		}},
		{"no-relay-keeps-guessing-direct", func(h *pathHarness) {
			h.advance(time.Minute)
			h.want(nil, choiceDirect, e1, Key{}, false)
		}},
		{"back-to-direct-on-pong", func(h *pathHarness) {
			h.advance(DefaultTiming.DirectGrace)
			h.ping(relays...)
			h.advance(5 * time.Millisecond)
			h.pongRelay(r1)
			h.want(relays, choiceRelay, netip.AddrPort{}, r1, true)
			h.advance(DefaultTiming.Heartbeat)
			h.ping(relays...)
			h.advance(time.Millisecond)
			h.pongDirect(e1)
			h.want(relays, choiceDirect, e1, Key{}, true)
		}},
		{"direct-lost-falls-back-to-relay", func(h *pathHarness) {
			h.ping(relays...)
			h.pongDirect(e1)
			h.want(relays, choiceDirect, e1, Key{}, true)
			h.advance(DefaultTiming.Trust)
			h.want(relays, choiceRelay, netip.AddrPort{}, r1, false)
		}},
		{"relay-loss-moves-to-other-relay", func(h *pathHarness) {
			h.advance(DefaultTiming.DirectGrace)
			h.ping(relays...)
			h.advance(5 * time.Millisecond)
			h.pongRelay(r1)
			h.advance(5 * time.Millisecond)
			h.pongRelay(r2)
			h.want(relays, choiceRelay, netip.AddrPort{}, r1, true) // faster
			// r1 loses its direct path from us: it is no candidate any more.
			h.want([]Key{r2}, choiceRelay, netip.AddrPort{}, r2, true)
		}},
		{"relay-jitter-keeps-current-relay", func(h *pathHarness) {
			h.advance(DefaultTiming.DirectGrace)
			h.ping(relays...)
			h.advance(900 * time.Microsecond)
			h.pongRelay(r1)
			h.want(relays, choiceRelay, netip.AddrPort{}, r1, true)
			// r2 answers in a third of the time, but by less than
			// relaySwitchMargin: r1 stays.
			h.advance(DefaultTiming.Heartbeat)
			h.ping(relays...)
			h.advance(300 * time.Microsecond)
			h.pongRelay(r2)
			h.advance(600 * time.Microsecond)
			h.pongRelay(r1)
			h.want(relays, choiceRelay, netip.AddrPort{}, r1, true)
			// 10 ms against 3 ms is clearly faster: r2 takes over.
			h.advance(DefaultTiming.Heartbeat)
			h.ping(relays...)
			h.advance(3 * time.Millisecond)
			h.pongRelay(r2)
			h.advance(7 * time.Millisecond)
			h.pongRelay(r1)
			h.want(relays, choiceRelay, netip.AddrPort{}, r2, true)
		}},
		{"dead-relay-without-alternative-unconfirmed-other", func(h *pathHarness) {
			h.advance(DefaultTiming.DirectGrace)
			h.ping(r1)
			h.pongRelay(r1)
			h.want([]Key{r1}, choiceRelay, netip.AddrPort{}, r1, true)
			h.advance(DefaultTiming.Trust)
			// r1's relayed pongs stopped but r2 appeared: try it.
			h.want([]Key{r2}, choiceRelay, netip.AddrPort{}, r2, false)
		}},
		{"faster-direct-path-wins-clearly", func(h *pathHarness) {
			h.ps.setConfigured([]netip.AddrPort{e1, e2}, stdEP, h.now)
			h.ping()
			h.advance(10 * time.Millisecond)
			h.pongDirect(e1)
			h.want(nil, choiceDirect, e1, Key{}, true)
			h.advance(time.Millisecond) // e2: 11 ms, not clearly faster
			h.pongDirect(e2)
			h.want(nil, choiceDirect, e1, Key{}, true)
			h.advance(DefaultTiming.Heartbeat)
			h.ping()
			h.advance(2 * time.Millisecond)
			h.pongDirect(e2)
			h.want(nil, choiceDirect, e2, Key{}, true)
		}},
		{"unsolicited-pongs-ignored", func(h *pathHarness) {
			h.ping(relays...)
			if got := h.ps.onPong(disco.TxID{42}, Key{}, h.now); got != pongUnsolicited {
				t.Errorf("unknown txid: %v", got)
			}
			if got := h.ps.onPong(h.tx[target{via: r1}], Key{}, h.now); got != pongUnsolicited {
				t.Errorf("relayed ping answered directly: %v", got)
			}
			if got := h.ps.onPong(h.tx[target{addr: e1}], r1, h.now); got != pongUnsolicited {
				t.Errorf("direct ping answered through a relay: %v", got)
			}
			if got := h.pongDirect(e1); got != pongNewDirect {
				t.Errorf("the right pong after wrong ones: %v", got)
			}
			if got := h.pongDirect(e1); got != pongUnsolicited {
				t.Errorf("the same pong replayed: %v", got)
			}
		}},
		{"relayed-pong-back-through-another-relay", func(h *pathHarness) {
			// Over several hops the pong may come back through another
			// neighbour; it confirms the relay the ping went through.
			h.advance(DefaultTiming.DirectGrace)
			h.ping(relays...)
			if got := h.ps.onPong(h.tx[target{via: r1}], r2, h.now); got != pongOK {
				t.Errorf("pong through r2 for a ping through r1: %v", got)
			}
			h.want(relays, choiceRelay, netip.AddrPort{}, r1, true)
		}},
		{"no-endpoints-no-relays", func(h *pathHarness) {
			h.ps.setConfigured(nil, stdEP, h.now)
			h.ps.direct = nil
			h.want(nil, choiceNone, netip.AddrPort{}, Key{}, false)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(newPathHarness(t, e1))
		})
	}
}

func TestPathDue(t *testing.T) {
	h := newPathHarness(t, e1, e2)
	pings, cmm := h.ps.due(h.now, []Key{r1})
	if len(pings) != 3 || cmm != true {
		t.Fatalf("first due = %v, call-me-maybe %v; want both endpoints, one relay probe and call-me-maybe", pings, cmm)
	}
	for _, to := range pings {
		h.ps.sent(to, disco.NewTxID(), h.now)
	}
	h.advance(DefaultTiming.Heartbeat - time.Millisecond)
	if pings, cmm := h.ps.due(h.now, []Key{r1}); len(pings) != 0 || cmm {
		t.Errorf("before the heartbeat: %v, %v; want nothing", pings, cmm)
	}
	h.advance(time.Millisecond)
	h.ping(r1)
	h.pongDirect(e1)
	// With a live direct path only the direct endpoints are pinged.
	for range 3 {
		h.advance(DefaultTiming.Heartbeat)
		h.ping(r1)
		h.pongDirect(e1)
	}
	pings, cmm = h.ps.due(h.now, []Key{r1, r2})
	for _, p := range pings {
		if p.relayed() {
			t.Errorf("relay probe %v while a direct path is live", p)
		}
	}
	if cmm {
		t.Error("call-me-maybe while a direct path is live")
	}
}

func TestLearnedPathsExpire(t *testing.T) {
	h := newPathHarness(t, e1)
	learned := netip.MustParseAddrPort("198.51.100.9:4000")
	if !h.ps.addLearned(learned, stdEP, h.now) {
		t.Fatal("addLearned refused a new endpoint")
	}
	if h.ps.addLearned(learned, stdEP, h.now) {
		t.Fatal("addLearned accepted a duplicate")
	}
	h.advance(DefaultTiming.LearnedTTL + time.Second)
	if !h.ps.expire(h.now) {
		t.Error("expire did not remove the stale learned endpoint")
	}
	if h.ps.find(learned) != nil || h.ps.find(e1) == nil {
		t.Error("wrong endpoints after expiry")
	}
	// Bounded: learned endpoints never push out configured ones.
	for i := range 2 * maxDirectPaths {
		h.ps.addLearned(netip.AddrPortFrom(netip.MustParseAddr("203.0.113.1"), uint16(1000+i)), stdEP, h.now)
	}
	if len(h.ps.direct) > maxDirectPaths || h.ps.find(e1) == nil {
		t.Errorf("%d endpoints, configured kept: %v", len(h.ps.direct), h.ps.find(e1) != nil)
	}
}
