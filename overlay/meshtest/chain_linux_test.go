package meshtest

// TestMeshChain: a and b reach each other only through two relays in a
// row, end to end encrypted; when the second relay stops, the first moves
// to the other one within seconds; when a and b can talk directly, they do.
//
//	                     ns sw: bridge br0 192.0.2.0/24
//	   a .1          r1 .2          r2 .3          r3 .4          b .5
//
//	UDP allowed (nftables in every box drops the rest of 192.0.2.0/24):
//
//	   a ---- r1 ---- r2 ---- b
//	           \             /
//	            `---- r3 ---'
//
// r1 founds the community; the others join through it over TCP, which is
// not blocked. a's only relay candidate is r1, which reaches b only
// through r2 or r3: packets from a to b travel a -> r1 -> r2|r3 -> b as
// relay envelopes around WireGuard messages that only a and b can open.

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestMeshChain(t *testing.T) {
	bin, sw := prepare(t)
	a, r1, r2, r3, b := newBox(t, bin, sw, "a", 1), newBox(t, bin, sw, "r1", 2), newBox(t, bin, sw, "r2", 3), newBox(t, bin, sw, "r3", 4), newBox(t, bin, sw, "b", 5)
	links := map[*box][]*box{a: {r1}, r1: {a, r2, r3}, r2: {r1, b}, r3: {r1, b}, b: {r2, r3}}
	for x, ns := range links {
		var ok []string
		for _, y := range ns {
			ok = append(ok, y.addr.String())
		}
		nft(t, x.ns, fmt.Sprintf(`table ip links {
	chain in { type filter hook input priority 0; meta l4proto udp ip saddr 192.0.2.0/24 ip saddr != { %[1]s } drop; }
	chain out { type filter hook output priority 0; meta l4proto udp ip daddr 192.0.2.0/24 ip daddr != { %[1]s } drop; }
}`, strings.Join(ok, ", ")))
	}

	boxes := []*box{r1, a, r2, r3, b}
	started := time.Now()
	addrs, member := community(t, bin, boxes, "192.0.2.2:51820")
	if _, err := pingUntil(a.ns, addrs["b"][0], 30*time.Second); err != nil {
		t.Fatalf("a -> b: %v", err)
	}
	t.Logf("a -> b answers pings %v after start", time.Since(started).Round(10*time.Millisecond))
	pingAll(t, boxes, boxes, addrs, 30*time.Second)
	t.Logf("every pair answers pings over IPv4 and IPv6 %v after start", time.Since(started).Round(10*time.Millisecond))

	first := member[r1]
	p := waitPath(t, a, "b", 10*time.Second, relayedVia(first))
	t.Logf("a -> b: %s, RTT %.2f ms", p.Endpoint, *p.RTTMs)
	p = waitPath(t, r1, "b", 10*time.Second, relayedVia("r2", "r3"))
	t.Logf("r1 -> b: %s", p.Endpoint)
	second, spare := r2, r3
	if p.Via == "r3" {
		second, spare = r3, r2
	}
	p = waitPath(t, b, "a", 10*time.Second, relayedVia("r2", "r3"))
	t.Logf("b -> a: %s, RTT %.2f ms", p.Endpoint, *p.RTTMs)
	// r1 forwards a's and b's packets without decrypting them: they never
	// reach its WireGuard or its TUN. r1's own traffic (roster, catalog
	// gossip) is measured after them, over a quiet window as long.
	pingStart := time.Now()
	fwd, tun := metric(t, r1, "cloudbox_overlay_relay_forwarded_packets_total"), metric(t, r1, "cloudbox_overlay_tun_packets_total")
	tun0 := tun
	// A lost ping over two relays on a loaded machine is not the point
	// here: the counts below are (at least 60 forwarded means the pings
	// went through r1).
	if _, err := ping(a.ns, addrs["b"][0], 30, 2); err != nil && !strings.Contains(err.Error(), "lost packets") {
		t.Fatal(err)
	} else if err != nil {
		t.Logf("during the counting pings: %v", err)
	}
	pingTime := time.Since(pingStart)
	fwd, tun = metric(t, r1, "cloudbox_overlay_relay_forwarded_packets_total")-fwd, metric(t, r1, "cloudbox_overlay_tun_packets_total")-tun
	time.Sleep(pingTime)
	quiet := metric(t, r1, "cloudbox_overlay_tun_packets_total") - tun0 - tun
	// Decrypting the pings would add at least 60 packets over r1's own.
	if fwd < 60 || tun-quiet >= 30 {
		t.Errorf("during 30 pings a <-> b, r1 forwarded %v packets and wrote %v to its TUN (%v in as long without pings); want >= 60 forwarded and fewer than 30 more than its own traffic", fwd, tun, quiet)
	}
	t.Logf("30 pings a <-> b: r1 forwarded %v packets, wrote %v to its TUN, %v in as long without pings (its own traffic)", fwd, tun, quiet)

	// The second relay stops: r1 moves to the other one.
	second.stop(t)
	stopped := time.Now()
	for _, c := range []struct {
		from *box
		to   string
	}{{a, "b"}, {b, "a"}} {
		if _, err := pingUntil(c.from.ns, addrs[c.to][0], 20*time.Second); err != nil {
			t.Fatalf("%s -> %s after %s stopped: %v", c.from.name, c.to, second.name, err)
		}
	}
	t.Logf("%s stopped: a <-> b answer pings again after %v", second.name, time.Since(stopped).Round(10*time.Millisecond))
	p = waitPath(t, r1, "b", 15*time.Second, relayedVia(spare.name))
	t.Logf("r1 -> b: %s (%v after %s stopped)", p.Endpoint, time.Since(stopped).Round(10*time.Millisecond), second.name)
	for _, c := range []struct {
		from *box
		to   string
	}{{a, "b"}, {b, "a"}} {
		for fam, addr := range addrs[c.to] {
			// b's own path to a may still be moving off the stopped relay.
			if _, err := pingUntil(c.from.ns, addr, 15*time.Second); err != nil {
				t.Errorf("%s -> %s over IPv%d through r1 and %s: %v", c.from.name, c.to, []int{4, 6}[fam], spare.name, err)
			}
		}
	}

	// a and b may now talk directly: they do.
	a.ns.Run("nft", "delete", "table", "ip", "links")
	b.ns.Run("nft", "delete", "table", "ip", "links")
	opened := time.Now()
	p = waitPath(t, a, "b", 15*time.Second, directTo(b.addr.String()+":51820"))
	t.Logf("a -> b: %s %v after the direct path opened", p.Endpoint, time.Since(opened).Round(10*time.Millisecond))
	waitPath(t, b, "a", 15*time.Second, directTo(a.addr.String()+":51820"))
	if _, err := ping(a.ns, addrs["b"][1], 3, 2); err != nil {
		t.Errorf("a -> b directly: %v", err)
	}
}
