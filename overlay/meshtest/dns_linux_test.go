package meshtest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/netnstest"
	"github.com/cloudbox/cloudbox/internal/testenv"
)

// checkDNS asks every box's DNS server, over the overlay from the next box,
// for the names of all members: each answers A and AAAA with the member's
// overlay addresses (addrs: name -> ipv4, ipv6) from the community zone.
func checkDNS(t *testing.T, boxes []*box, addrs map[string][2]string) {
	t.Helper()
	testenv.RequireCommand(t, "dig", "dnsutils")
	took := netnstest.WaitFor(t, 20*time.Second, func() string {
		for i, server := range boxes {
			client := boxes[(i+1)%len(boxes)]
			for _, member := range boxes {
				name := member.name + ".cb.home.arpa."
				for j, qtype := range []string{"A", "AAAA"} {
					out, err := client.ns.Try("dig", "@"+addrs[server.name][0], "+short", "+tries=1", "+time=2", qtype, name)
					if err != nil {
						return fmt.Sprintf("dig @%s (%s) %s %s from %s: %v %s", addrs[server.name][0], server.name, qtype, name, client.name, err, out)
					}
					if got, want := strings.TrimSpace(out), addrs[member.name][j]; got != want {
						return fmt.Sprintf("%s (asked by %s) answers %s %s = %q, want %q", server.name, client.name, qtype, name, got, want)
					}
				}
			}
		}
		return ""
	})
	t.Logf("every box answers A and AAAA of every member over the overlay (%v)", took.Round(10*time.Millisecond))
}
