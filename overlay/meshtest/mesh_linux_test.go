package meshtest

// TestMesh is the acceptance test of the overlay in cloudboxd (issue 3):
// five boxes, each a cloudboxd in its own network namespace, on one bridge.
//
//	                         ns sw: bridge br0
//	      ┌─────────────┬─────────────┼─────────────┬─────────────┐
//	   b1 eth0       b2 eth0       b3 eth0       b4 eth0       b5 eth0
//	  192.0.2.1     192.0.2.2     192.0.2.3     192.0.2.4     192.0.2.5
//	     │             │             │             │             │
//	   cb0 (TUN): 198.18.0.N/15 and NodeIPv6 in the community's ULA /48
//
// b1 founds the community "testnet" over 198.18.0.0/15 and holds the root
// key. b2 and b3 redeem their invitations through b1 (192.0.2.1:51820), b4
// and b5 through b2 (192.0.2.2:51820), a member without the root key. All
// five start at once: b4 and b5 retry until b2 has joined. Every daemon
// serves its API on 127.0.0.1:8080 inside its namespace; the test connects
// there through nsDialer.

import (
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/netnstest"
	"github.com/cloudbox/cloudbox/internal/testenv"
)

func TestMesh(t *testing.T) {
	testenv.RequireRoot(t)
	for _, c := range [][2]string{{"ip", "iproute2"}, {"ping", "iputils-ping"}, {"nft", "nftables"}, {"iperf3", "iperf3"}, {"ss", "iproute2"}} {
		testenv.RequireCommand(t, c[0], c[1])
	}
	bin := build(t)

	sw := newSwitch(t)
	var boxes []*box
	for i := 1; i <= 5; i++ {
		boxes = append(boxes, newBox(t, bin, sw, fmt.Sprintf("b%d", i), i))
	}
	byName := func(name string) *box {
		for _, b := range boxes {
			if b.name == name {
				return b
			}
		}
		t.Fatalf("no box %q", name)
		return nil
	}
	b1, b2 := boxes[0], boxes[1]

	// A box that belongs to no community runs without overlay and says so.
	b1.start(t)
	notMember(t, b1)
	b1.stop(t)

	// b1 founds the community and invites the others; b4 and b5 are to
	// join through b2.
	t.Log(cli(t, bin, "community", "init", "--state-dir", b1.dir, "--name", "testnet", "--range", "198.18.0.0/15"))
	bootstrap := map[string]string{"b2": "192.0.2.1:51820", "b3": "192.0.2.1:51820", "b4": "192.0.2.2:51820", "b5": "192.0.2.2:51820"}
	for _, b := range boxes[1:] {
		b.token = cli(t, bin, "invite", "--state-dir", b1.dir, "--name", b.name, "--bootstrap", bootstrap[b.name])
	}
	expired := cli(t, bin, "invite", "--state-dir", b1.dir, "--name", "late", "--expires", "1s", "--bootstrap", "192.0.2.1:51820")
	expiredAt := time.Now().Add(time.Second)

	started := time.Now()
	for _, b := range boxes {
		var args []string
		if b.token != "" {
			args = []string{"--join", b.token}
		}
		b.start(t, args...)
	}

	// Full mesh: every box lists all five, then every pair pings.
	meshIn := netnstest.WaitFor(t, 90*time.Second, func() string {
		for _, b := range boxes {
			ps, err := b.peers()
			if err != nil {
				return err.Error()
			}
			if len(ps) != 5 {
				return fmt.Sprintf("%s lists %d members: %v", b.name, len(ps), names(ps))
			}
		}
		return ""
	})
	t.Logf("all boxes list all 5 members %v after start", meshIn.Round(10*time.Millisecond))
	addrs := make(map[string][2]string) // name -> ipv4, ipv6
	for _, b := range boxes {
		s := b.self(t)
		addrs[b.name] = [2]string{s.IPv4, s.IPv6}
	}
	t.Logf("overlay addresses: %v", addrs)
	pingAll(t, boxes, boxes, addrs, 30*time.Second)
	t.Logf("full mesh (every pair answers pings over IPv4 and IPv6) %v after start", time.Since(started).Round(10*time.Millisecond))
	checkMember(t, b1, addrs)
	checkDNS(t, boxes, addrs)
	checkCatalog(t, boxes, addrs)

	// Invitations that cannot work end the daemon with status 1.
	bad := &box{name: "bad", ns: netnstest.New(t, "bad"), bin: bin}
	time.Sleep(time.Until(expiredAt.Add(1100 * time.Millisecond)))
	for _, c := range []struct {
		name, token string
		want        []string
	}{
		{"garbage", "garbage", []string{"join token", "malformed"}},
		{"expired", expired, []string{"join token", "expired", "ask an administrator"}},
	} {
		d := bad.startNoWait(t, filepath.Join(t.TempDir(), c.name), "--join", c.token)
		if code := d.waitExit(t, 30*time.Second); code != 1 {
			t.Errorf("cloudboxd --join <%s token> exited with %d, want 1", c.name, code)
		}
		for _, w := range c.want {
			if !strings.Contains(d.log.String(), w) {
				t.Errorf("cloudboxd --join <%s token> log does not mention %q:\n%s", c.name, w, d.log.String())
			}
		}
	}

	// TCP through the overlay.
	mbps := netnstest.Iperf3(t, boxes[4].ns, b1.ns, addrs["b5"][0], 3)
	t.Logf("iperf3 TCP b1 -> b5 over the overlay, 3 s: %.0f Mbit/s", mbps)

	// Relay: b1 and b2 can no longer exchange UDP; a third box relays.
	unblock1 := blockUDP(t, b1.ns, b2.addr)
	unblock2 := blockUDP(t, b2.ns, b1.addr)
	var via string
	relayIn := netnstest.WaitFor(t, 30*time.Second, func() string {
		p, err := b1.peerNamed("b2")
		if err != nil {
			return err.Error()
		}
		if p.Via == "" || strings.Contains(p.Endpoint, "unconfirmed") {
			return fmt.Sprintf("b1's path to b2 is %q", p.Endpoint)
		}
		via = p.Via
		return ""
	})
	t.Logf("b1 relays to b2 via %s %v after UDP between them was blocked", via, relayIn.Round(10*time.Millisecond))
	for _, c := range []struct {
		from *box
		to   string
	}{{b1, "b2"}, {b2, "b1"}} {
		for fam, a := range addrs[c.to] {
			if _, err := pingUntil(c.from.ns, a, 10*time.Second); err != nil {
				t.Fatalf("relayed ping %s -> %s (family %d): %v", c.from.name, c.to, fam, err)
			}
		}
	}
	relay := byName(via)
	if relay == b1 || relay == b2 {
		t.Fatalf("b1 relays to b2 via %s, one of the two ends", via)
	}
	relay.stop(t)
	if out, err := relay.ns.Try("ip", "link", "show", "cb0"); err == nil {
		t.Errorf("cb0 still exists in %s after cloudboxd stopped:\n%s", relay.name, out)
	}
	var via2 string
	switchIn := netnstest.WaitFor(t, 15*time.Second, func() string {
		p, err := b1.peerNamed("b2")
		if err != nil {
			return err.Error()
		}
		if p.Via == "" || p.Via == via || strings.Contains(p.Endpoint, "unconfirmed") {
			return fmt.Sprintf("b1's path to b2 is still %q after %s stopped", p.Endpoint, via)
		}
		if _, err := ping(b1.ns, addrs["b2"][0], 1, 1); err != nil {
			return err.Error()
		}
		via2 = p.Via
		return ""
	})
	t.Logf("relay %s stopped: b1 -> b2 moved to relay %s and answers pings after %v", via, via2, switchIn.Round(10*time.Millisecond))
	checkCatalogGone(t, boxes, relay)

	// Restart: the relay box comes back without --join, with the same
	// addresses, and reaches the others.
	relay.start(t)
	if s := relay.self(t); s.IPv4 != addrs[relay.name][0] || s.IPv6 != addrs[relay.name][1] {
		t.Errorf("%s after restart has %s %s, want %v", relay.name, s.IPv4, s.IPv6, addrs[relay.name])
	}
	if strings.Contains(relay.d.log.String(), "joining community") {
		t.Errorf("%s joined again after a restart:\n%s", relay.name, relay.d.log.String())
	}
	pingAll(t, []*box{relay}, boxes, addrs, 30*time.Second)
	t.Logf("%s restarted without --join, same addresses, reaches all others", relay.name)
	unblock1()
	unblock2()

	// Revocation: b1 revokes b4; the others drop it and b4 reaches no one.
	b4 := byName("b4")
	revoke(t, b1, b4.self(t).NodeID)
	others := slices.DeleteFunc(slices.Clone(boxes), func(b *box) bool { return b == b4 })
	spreadIn := netnstest.WaitFor(t, 60*time.Second, func() string {
		for _, b := range others {
			if _, err := b.peerNamed("b4"); err == nil {
				return b.name + " still lists b4"
			}
		}
		return ""
	})
	t.Logf("revocation of b4 reached every member %v after b1 revoked it", spreadIn.Round(10*time.Millisecond))
	var wg2 sync.WaitGroup
	errs := make(chan error, 2*2*len(others))
	for _, b := range others {
		for fam := range 2 {
			wg2.Go(func() {
				if _, err := ping(b4.ns, addrs[b.name][fam], 2, 1); err == nil {
					errs <- fmt.Errorf("revoked b4 still pings %s at %s", b.name, addrs[b.name][fam])
				}
				if _, err := ping(b.ns, addrs["b4"][fam], 2, 1); err == nil {
					errs <- fmt.Errorf("%s still pings revoked b4 at %s", b.name, addrs["b4"][fam])
				}
			})
		}
	}
	wg2.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// b4's invitation cannot admit another box.
	b4.stop(t)
	d := b4.startNoWait(t, filepath.Join(t.TempDir(), "b4-again"), "--join", b4.token)
	if code := d.waitExit(t, 60*time.Second); code != 1 {
		t.Errorf("cloudboxd with b4's used invitation exited with %d, want 1", code)
	}
	if !strings.Contains(d.log.String(), "already used") {
		t.Errorf("cloudboxd with b4's used invitation does not say it was used:\n%s", d.log.String())
	}
}

func names(ps []peer) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

// notMember checks what a box outside any community shows.
func notMember(t *testing.T, b *box) {
	t.Helper()
	st := b.overlayStatus(t)
	if st.OK || !strings.HasPrefix(st.Detail["state"], "not a member") {
		t.Errorf("overlay component of a box outside any community = %+v, want not ok, state \"not a member: ...\"", st)
	}
	var e struct {
		Error string `json:"error"`
	}
	if code, err := b.get("/api/v1/overlay/peers", &e); err != nil || code != http.StatusServiceUnavailable || !strings.Contains(e.Error, "not a member") {
		t.Errorf("GET /api/v1/overlay/peers outside any community = %d %v %q, want 503 saying not a member", code, err, e.Error)
	}
	if page := b.getText(t, "/community"); !strings.Contains(page, "not part of a community yet") || !strings.Contains(page, "--join TOKEN") {
		t.Errorf("community page outside any community does not say how to join:\n%s", page)
	}
	if out, err := b.ns.Try("ip", "link", "show", "cb0"); err == nil {
		t.Errorf("a box outside any community has cb0:\n%s", out)
	}
}

// checkMember checks b's status component, metrics and community page in
// the full mesh.
func checkMember(t *testing.T, b *box, addrs map[string][2]string) {
	t.Helper()
	st := b.overlayStatus(t)
	if !st.OK || st.Detail["community"] != "testnet" || st.Detail["peers"] != "4" || st.Detail["direct"] != "4" ||
		!strings.HasPrefix(st.Detail["ipv4"], addrs[b.name][0]+"/") || !strings.HasPrefix(st.Detail["ipv6"], addrs[b.name][1]+"/") {
		t.Errorf("overlay component of %s = %+v, want ok, testnet, 4 peers, 4 direct, its addresses", b.name, st)
	}
	metrics := b.getText(t, "/metrics")
	for _, want := range []string{
		"cloudbox_overlay_up 1", "cloudbox_overlay_peers 4", "cloudbox_overlay_peers_direct 4", "cloudbox_overlay_members 5",
		`cloudbox_overlay_packets_total{dir="in"} `, `cloudbox_overlay_drops_total{reason="unknown_peer"} `,
		"cloudbox_overlay_roster_joins_accepted_total 2",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics of %s do not contain %q", b.name, want)
		}
	}
	page := b.getText(t, "/community")
	for name, a := range addrs {
		for _, want := range []string{">" + name + "<", a[0], a[1]} {
			if !strings.Contains(page, want) {
				t.Errorf("community page of %s does not show %q", b.name, want)
			}
		}
	}
	ps, err := b.peers()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Self {
			continue
		}
		if !p.Direct || p.LastHandshake == nil || p.RTTMs == nil || p.RxBytes == 0 || p.TxBytes == 0 || len(p.Endpoints) == 0 {
			t.Errorf("%s's view of %s = %+v, want direct with a handshake, RTT, traffic and endpoints", b.name, p.Name, p)
		}
	}
}

// pingAll pings, over IPv4 and IPv6, from every box in from to every other
// box in to, each pair first until it answers (at most timeout), then twice
// to measure; it logs the RTTs.
func pingAll(t *testing.T, from, to []*box, addrs map[string][2]string, timeout time.Duration) {
	t.Helper()
	type res struct {
		pair string
		rtt  time.Duration
		err  error
	}
	var mu sync.Mutex
	var results []res
	var wg sync.WaitGroup
	for _, f := range from {
		wg.Go(func() { // the sources in parallel, each pair in turn
			for _, d := range to {
				if d == f {
					continue
				}
				for fam, a := range addrs[d.name] {
					pair := fmt.Sprintf("%s->%s/v%d", f.name, d.name, []int{4, 6}[fam])
					_, err := pingUntil(f.ns, a, timeout)
					var rtt time.Duration
					if err == nil {
						rtt, err = ping(f.ns, a, 2, 2)
					}
					if err != nil && strings.Contains(err.Error(), "lost packets") {
						// One ping lost while paths settle on a busy
						// machine; a second loss in a row fails.
						rtt, err = ping(f.ns, a, 2, 2)
					}
					mu.Lock()
					results = append(results, res{pair, rtt, err})
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	var rtts []time.Duration
	var line []string
	for _, r := range results {
		if r.err != nil {
			t.Errorf("%s: %v", r.pair, r.err)
			continue
		}
		rtts = append(rtts, r.rtt)
		line = append(line, fmt.Sprintf("%s %.2fms", r.pair, float64(r.rtt)/1e6))
	}
	if t.Failed() {
		t.FailNow()
	}
	slices.Sort(rtts)
	var sum time.Duration
	for _, r := range rtts {
		sum += r
	}
	slices.Sort(line)
	t.Logf("%d pings answered; RTT min %v, avg %v, max %v: %s", len(rtts), rtts[0].Round(time.Microsecond),
		(sum / time.Duration(len(rtts))).Round(time.Microsecond), rtts[len(rtts)-1].Round(time.Microsecond), strings.Join(line, ", "))
}

// revoke asks b, through its loopback API, to revoke the member nodeID.
func revoke(t *testing.T, b *box, nodeID string) {
	t.Helper()
	body := strings.NewReader(fmt.Sprintf(`{"node_id": %q, "reason": "meshtest"}`, nodeID))
	resp, err := b.client.Post("http://"+apiAddr+"/api/v1/overlay/revoke", "application/json", body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/v1/overlay/revoke on %s = %d", b.name, resp.StatusCode)
	}
}
