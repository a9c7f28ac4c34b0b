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
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/netnstest"
	"github.com/cloudbox/cloudbox/internal/testenv"
)

func TestMeshNAT(t *testing.T) {
	testenv.RequireRoot(t)
	for _, c := range [][2]string{{"ip", "iproute2"}, {"ping", "iputils-ping"}, {"nft", "nftables"}, {"sysctl", "procps"}} {
		testenv.RequireCommand(t, c[0], c[1])
	}
	bin := build(t)

	sw := netnstest.New(t, "sw")
	sw.Bridge("br0")
	n1, n2 := newBox(t, bin, sw, "n1", 1), newBox(t, bin, sw, "n2", 2)
	nat := netnstest.New(t, "nat")
	netnstest.Attach(t, sw, "br0", nat, "wan", "192.0.2.10/24")
	n3 := newBoxIn(t, bin, netnstest.New(t, "n3"), "n3", netip.MustParseAddr("198.51.100.2"))
	netnstest.Veth(t, nat, "lan", "198.51.100.1/24", n3.ns, "eth0", "198.51.100.2/24")
	n3.ns.IP("route", "add", "default", "via", "198.51.100.1")
	nat.Run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	cmd := nat.Command(t.Context(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(`table ip nat {
	chain post { type nat hook postrouting priority srcnat; oifname "wan" masquerade; }
}`)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v\n%s", nat.Name, err, out)
	}
	if _, err := ping(n3.ns, "192.0.2.1", 1, 2); err != nil {
		t.Fatalf("n3 does not reach n1 through the NAT: %v", err)
	}
	if _, err := ping(n1.ns, "198.51.100.2", 1, 1); err == nil {
		t.Fatal("n1 reaches n3's private address; the NAT does not hide it")
	}

	cli(t, bin, "community", "init", "--state-dir", n1.dir, "--name", "natnet", "--range", "198.18.0.0/15")
	boxes := []*box{n1, n2, n3}
	for _, b := range boxes[1:] {
		b.token = cli(t, bin, "invite", "--state-dir", n1.dir, "--name", b.name, "--bootstrap", "192.0.2.1:51820")
	}
	started := time.Now()
	for _, b := range boxes {
		var args []string
		if b.token != "" {
			args = []string{"--join", b.token}
		}
		b.start(t, args...)
	}
	netnstest.WaitFor(t, 90*time.Second, func() string {
		for _, b := range boxes {
			ps, err := b.peers()
			if err != nil {
				return err.Error()
			}
			if len(ps) != 3 {
				return fmt.Sprintf("%s lists %d members: %v", b.name, len(ps), names(ps))
			}
		}
		return ""
	})
	addrs := make(map[string][2]string)
	for _, b := range boxes {
		s := b.self(t)
		addrs[b.name] = [2]string{s.IPv4, s.IPv6}
	}
	pingAll(t, boxes, boxes, addrs, 30*time.Second)
	t.Logf("3 boxes, one behind NAT: every pair answers pings over IPv4 and IPv6 %v after start", time.Since(started).Round(10*time.Millisecond))

	// The public boxes reach n3 directly at the NAT's address.
	for _, b := range []*box{n1, n2} {
		netnstest.WaitFor(t, 20*time.Second, func() string {
			p, err := b.peerNamed("n3")
			if err != nil {
				return err.Error()
			}
			if !p.Direct || !strings.HasPrefix(p.Endpoint, "direct 192.0.2.10:") || strings.Contains(p.Endpoint, "unconfirmed") {
				return fmt.Sprintf("%s's path to n3 is %q, want direct through the NAT at 192.0.2.10", b.name, p.Endpoint)
			}
			return ""
		})
		p, _ := b.peerNamed("n3")
		t.Logf("%s -> n3: %s", b.name, p.Endpoint)
	}
	// n1's member name is its node name, which `cloudbox community init`
	// took from the host name.
	founder := n1.self(t).Name
	p, err := n3.peerNamed(founder)
	if err != nil || p.Endpoint != "direct 192.0.2.1:51820" {
		t.Errorf("n3's path to n1 (%s) = %q (%v), want direct 192.0.2.1:51820", founder, p.Endpoint, err)
	}
}
