package membership

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestMaximalSizes builds the largest valid values and checks their sizes
// against the package comment and the limits.
func TestMaximalSizes(t *testing.T) {
	name := strings.Repeat("n", maxNameLen)
	var groups []string
	for i := range maxGroups {
		groups = append(groups, fmt.Sprintf("%02d", i)+strings.Repeat("g", maxGroupLen-2))
	}
	var boot []netip.AddrPort
	for i := range maxBootstrap {
		boot = append(boot, netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 1, 15: byte(i + 1)}), 51820))
	}
	c, root, err := NewCommunity(name, testPrefix, detRand(1))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := NewInvitation(root, c, InviteOptions{Name: name, IPv4: netip.MustParseAddr("198.18.0.1"), Groups: groups, Expires: testExpiry, Bootstrap: boot}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := inv.Issue(nodeKey(t, 1), t0, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	token := inv.Token()
	for _, tc := range []struct {
		name      string
		size, max int
		want      int
	}{
		{"certificate", len(mustMarshal(t, &m.Certificate)), MaxCertificateSize, 764},
		{"delegation", len(mustMarshal(t, m.Delegation)), MaxDelegationSize, 732},
		{"membership", len(mustMarshal(t, m)), MaxMembershipSize, 1505},
		{"invitation", len(tokenBytes(t, token)), MaxInvitationSize, 1177},
		{"token", len(token), maxTokenLen, len(TokenPrefix) + 1570},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.size != tc.want || tc.size > tc.max {
				t.Errorf("largest %s is %d bytes, want %d (limit %d)", tc.name, tc.size, tc.want, tc.max)
			}
		})
	}
	if _, err := ParseInvitation(token); err != nil {
		t.Errorf("largest token does not parse: %v", err)
	}
}
