package meshtest

// TestMeshNAT: a box behind a masquerading NAT joins, reaches the others
// and is reached by them, directly through the NAT's mapping.
//
//	                ns sw: bridge br0
//	      ┌─────────────┬──────────────┐
//	   n1 eth0       n2 eth0       nat wan 192.0.2.10
//	  192.0.2.1     192.0.2.2          │  masquerade (nftables), forwarding
//	                               nat lan 198.51.100.1/24
//	                                   │ veth
//	                               n3 eth0 198.51.100.2/24, default via .1
//
// n1 founds the community; n2 and n3 join through n1. The endpoint n3
// reports (198.51.100.2:51820) is not reachable from the bridge: n1 and n2
// learn n3's public mapping (192.0.2.10:port) from the disco pings n3 sends
// them, which also open the mapping.

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/netnstest"
)

func TestMeshNAT(t *testing.T) {
	bin, sw := prepare(t)
	n1, n2 := newBox(t, bin, sw, "n1", 1), newBox(t, bin, sw, "n2", 2)
	nat := netnstest.New(t, "nat")
	netnstest.Attach(t, sw, "br0", nat, "wan", "192.0.2.10/24")
	n3 := newBoxIn(t, bin, netnstest.New(t, "n3"), "n3", netip.MustParseAddr("198.51.100.2"))
	netnstest.Veth(t, nat, "lan", "198.51.100.1/24", n3.ns, "eth0", "198.51.100.2/24")
	n3.ns.IP("route", "add", "default", "via", "198.51.100.1")
	masquerade(t, nat, "wan", false)
	if _, err := ping(n3.ns, "192.0.2.1", 1, 2); err != nil {
		t.Fatalf("n3 does not reach n1 through the NAT: %v", err)
	}
	if _, err := ping(n1.ns, "198.51.100.2", 1, 1); err == nil {
		t.Fatal("n1 reaches n3's private address; the NAT does not hide it")
	}

	boxes := []*box{n1, n2, n3}
	started := time.Now()
	addrs, member := community(t, bin, boxes, "192.0.2.1:51820")
	pingAll(t, boxes, boxes, addrs, 30*time.Second)
	t.Logf("3 boxes, one behind NAT: every pair answers pings over IPv4 and IPv6 %v after start", time.Since(started).Round(10*time.Millisecond))

	// The public boxes reach n3 directly at the NAT's address.
	for _, b := range []*box{n1, n2} {
		p := waitPath(t, b, "n3", 20*time.Second, directTo("192.0.2.10:"))
		t.Logf("%s -> n3: %s", b.name, p.Endpoint)
	}
	founder := member[n1]
	p, err := n3.peerNamed(founder)
	if err != nil || p.Endpoint != "direct 192.0.2.1:51820" {
		t.Errorf("n3's path to n1 (%s) = %q (%v), want direct 192.0.2.1:51820", founder, p.Endpoint, err)
	}
	checkMDNSProxy(t, n1, founder, addrs[n1.name][0], n3, nat)
}

// TestMeshDoubleNAT: d sits behind two nested NATs, s behind one of its
// own. Both reach the public boxes and each other; whether d and s get a
// direct path depends on how the outer NAT maps ports.
//
//	                     ns sw: bridge br0 192.0.2.0/24
//	   ┌─────────────┬───────────────┴───────┬──────────────────────┐
//	p1 eth0       p2 eth0            outer wan .10            nats wan .20
//	192.0.2.1     192.0.2.2              │ masquerade             │ masquerade
//	                                 outer lan 198.51.100.1/26  nats lan 203.0.113.1/24
//	                                     │                        │
//	                                 inner wan 198.51.100.2/26  s eth0 203.0.113.2
//	                                     │ masquerade
//	                                 inner lan 198.51.100.65/26
//	                                     │
//	                                 d eth0 198.51.100.66/26
//
// p1 founds the community; the others join through it. d and s announce
// only their private addresses; the public boxes learn their NAT mappings
// from their pings, and d and s learn each other's from call-me-maybe
// messages relayed by a public box, then ping each other at once.
//
// "cone": every NAT keeps ports (endpoint-independent mapping), so those
// simultaneous pings open the mappings and d and s talk directly (hole
// punching). "symmetric": the outer NAT picks a random port per
// destination, so the mapping s is told about is not the one d uses
// towards s; d and s fall back to a relay through p1 or p2. In both, the
// public boxes reach d directly at the outer NAT's address.
func TestMeshDoubleNAT(t *testing.T) {
	requireTools(t)
	bin := build(t)
	for _, tc := range []struct {
		name      string
		symmetric bool
	}{{"cone", false}, {"symmetric", true}} {
		t.Run(tc.name, func(t *testing.T) {
			sw := newSwitch(t)
			p1, p2 := newBox(t, bin, sw, "p1", 1), newBox(t, bin, sw, "p2", 2)
			outer, inner, nats := netnstest.New(t, "outer"), netnstest.New(t, "inner"), netnstest.New(t, "nats")
			netnstest.Attach(t, sw, "br0", outer, "wan", "192.0.2.10/24")
			netnstest.Veth(t, outer, "lan", "198.51.100.1/26", inner, "wan", "198.51.100.2/26")
			inner.IP("route", "add", "default", "via", "198.51.100.1")
			d := newBoxIn(t, bin, netnstest.New(t, "d"), "d", netip.MustParseAddr("198.51.100.66"))
			netnstest.Veth(t, inner, "lan", "198.51.100.65/26", d.ns, "eth0", "198.51.100.66/26")
			d.ns.IP("route", "add", "default", "via", "198.51.100.65")
			masquerade(t, outer, "wan", tc.symmetric)
			masquerade(t, inner, "wan", false)
			netnstest.Attach(t, sw, "br0", nats, "wan", "192.0.2.20/24")
			s := newBoxIn(t, bin, netnstest.New(t, "s"), "s", netip.MustParseAddr("203.0.113.2"))
			netnstest.Veth(t, nats, "lan", "203.0.113.1/24", s.ns, "eth0", "203.0.113.2/24")
			s.ns.IP("route", "add", "default", "via", "203.0.113.1")
			masquerade(t, nats, "wan", false)
			for _, c := range []struct {
				from *box
				to   string
				ok   bool
			}{{d, "192.0.2.1", true}, {s, "192.0.2.1", true}, {p1, "198.51.100.66", false}, {s, "198.51.100.2", false}, {d, "203.0.113.2", false}} {
				if _, err := ping(c.from.ns, c.to, 1, 1); (err == nil) != c.ok {
					t.Fatalf("underlay ping %s -> %s: %v, want success %v", c.from.name, c.to, err, c.ok)
				}
			}

			boxes := []*box{p1, p2, d, s}
			started := time.Now()
			addrs, member := community(t, bin, boxes, "192.0.2.1:51820")
			pingAll(t, boxes, boxes, addrs, 30*time.Second)
			t.Logf("every pair answers pings over IPv4 and IPv6 %v after start", time.Since(started).Round(10*time.Millisecond))

			for _, pub := range []*box{p1, p2} {
				p := waitPath(t, pub, "d", 20*time.Second, directTo("192.0.2.10:"))
				t.Logf("%s -> d: %s", member[pub], p.Endpoint)
			}
			for _, pub := range []*box{p1, p2} {
				p := waitPath(t, d, member[pub], 20*time.Second, directTo(pub.addr.String()+":51820"))
				t.Logf("d -> %s: %s", member[pub], p.Endpoint)
			}
			relays := []string{member[p1], member[p2]}
			for _, c := range []struct {
				from *box
				to   string
				nat  string
			}{{d, "s", "192.0.2.20:"}, {s, "d", "192.0.2.10:"}} {
				want := directTo(c.nat)
				if tc.symmetric {
					want = relayedVia(relays...)
				}
				p := waitPath(t, c.from, c.to, 30*time.Second, want)
				t.Logf("%s -> %s: %s, RTT %.2f ms (%v after start)", c.from.name, c.to, p.Endpoint, *p.RTTMs, time.Since(started).Round(10*time.Millisecond))
				for fam, a := range addrs[c.to] {
					// The path may have just changed; a lost ping is no failure.
					if _, err := pingUntil(c.from.ns, a, 10*time.Second); err != nil {
						t.Errorf("%s -> %s over IPv%d on that path: %v", c.from.name, c.to, []int{4, 6}[fam], err)
					}
				}
			}
		})
	}
}
