package overlay

import (
	"fmt"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/netnstest"
)

// TestLANDiscovery: A and B are peers, but nothing tells either where the
// other is; they find each other through LAN announces and ping over the
// overlay directly. C knows neither key: it hears their announces and
// ignores them.
//
//	                   ns sw: bridge br0
//	       +------------------+------------------+
//	ns a eth0 192.0.2.1  ns b eth0 192.0.2.2  ns c eth0 192.0.2.3
//	cb0 198.18.0.1       cb0 198.18.0.2       cb0 198.18.0.3
func TestLANDiscovery(t *testing.T) {
	sw := netnstest.New(t, "sw")
	sw.Bridge("br0")
	nsA, nsB, nsC := netnstest.New(t, "a"), netnstest.New(t, "b"), netnstest.New(t, "c")
	netnstest.Attach(t, sw, "br0", nsA, "eth0", "192.0.2.1/24")
	netnstest.Attach(t, sw, "br0", nsB, "eth0", "192.0.2.2/24")
	netnstest.Attach(t, sw, "br0", nsC, "eth0", "192.0.2.3/24")

	const interval = 2 * time.Second
	a := newTestNode(t, nsA, "a", "198.18.0.1")
	b := newTestNode(t, nsB, "b", "198.18.0.2")
	c := newTestNode(t, nsC, "c", "198.18.0.3")
	for _, n := range []*testNode{a, b, c} {
		n.cfg.LANInterval = interval
	}
	a.start(t, b.peer()) // no endpoints
	b.start(t, a.peer())
	c.start(t)

	took := waitPing(t, nsA, b.ipv4, 5*interval+10*time.Second)
	t.Logf("first ping a -> b answered after %v", took.Round(time.Millisecond))
	netnstest.WaitFor(t, 10*time.Second, pathIs(t, a, b, "direct 192.0.2.2:51820"))
	netnstest.WaitFor(t, 10*time.Second, pathIs(t, b, a, "direct 192.0.2.1:51820"))

	// C heard both (at least the announces at start and one more round)
	// and counted them as unknown; nobody accepted C's.
	netnstest.WaitFor(t, 3*interval, func() string {
		if s := c.status(t).Stats; s.LANAnnouncesUnknown < 2 || s.LANAnnouncesAccepted != 0 {
			return fmt.Sprintf("c's stats %+v, want at least 2 unknown announces and none accepted", s.Stats)
		}
		return ""
	})
	// Each accepts the other's announces: b's first may have come before a
	// listened (or the other way round), the next ones within an interval.
	for _, n := range []*testNode{a, b} {
		netnstest.WaitFor(t, 3*interval, func() string {
			s := n.status(t).Stats
			if s.LANAnnouncesAccepted == 0 || s.LANAnnouncesUnknown == 0 || s.LANAnnouncesOut == 0 {
				return fmt.Sprintf("node %s: LAN stats %+v, want announces sent, accepted (the peer's) and unknown (c's)", n.name, s.Stats)
			}
			return ""
		})
		s := n.status(t).Stats
		if s.LANAnnouncesMalformed+s.LANAnnouncesRateLimited != 0 {
			t.Errorf("node %s: LAN stats %+v, want none malformed or rate-limited", n.name, s.Stats)
		}
		t.Logf("node %s: %d announces out, %d accepted, %d unknown, %d unusable (IPv6 link-local)", n.name,
			s.LANAnnouncesOut, s.LANAnnouncesAccepted, s.LANAnnouncesUnknown, s.LANAnnouncesUnusable)
	}
}
