package appliance

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cloudbox/cloudbox/dnsproxy"
	"github.com/cloudbox/cloudbox/services"
)

func TestHostLabel(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"box1", "box1"},
		{"Can Roca", "can-roca"},
		{"  --Ateneu  (planta 2)--", "ateneu-planta-2"},
		{"ÀÉ", ""},
		{"cafè del poble", "caf-del-poble"},
		{strings.Repeat("a", 80), strings.Repeat("a", 63)},
		{strings.Repeat("a", 62) + " b", strings.Repeat("a", 62)},
	} {
		if got := hostLabel(tc.in); got != tc.want {
			t.Errorf("hostLabel(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestZoneHostsOf(t *testing.T) {
	a4, a6 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("fd00:cb::1")
	b4 := netip.MustParseAddr("198.18.0.2")
	c4 := netip.MustParseAddr("198.18.0.3")
	got := zoneHostsOf([]zoneMember{
		{name: "Box A", nodeID: "aaaaaaaaaaaaaaaaaaaaaaaaaa", ipv4: a4, ipv6: a6},
		{name: "twin", nodeID: "bbbbbbbbbbbbbbbbbbbbbbbbbb", ipv4: b4},
		{name: "Twin", nodeID: "cccccccccccccccccccccccccc", ipv4: c4},
	})
	want := []dnsproxy.Host{
		{Name: "aaaaaaaaaaaaaaaa.id", Addrs: []netip.Addr{a4, a6}},
		{Name: "bbbbbbbbbbbbbbbb.id", Addrs: []netip.Addr{b4}},
		{Name: "box-a", Addrs: []netip.Addr{a4, a6}},
		{Name: "cccccccccccccccc.id", Addrs: []netip.Addr{c4}},
		{Name: "twin-bbbbbb", Addrs: []netip.Addr{b4}},
		{Name: "twin-cccccc", Addrs: []netip.Addr{c4}},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("zoneHostsOf (-want +got):\n%s", diff)
	}
	// The zone accepts every name it produces.
	srv, err := dnsproxy.New(dnsproxy.Config{Listen: []string{"127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.SetZone(dnsproxy.Zone{Hosts: got}); err != nil {
		t.Errorf("SetZone: %v", err)
	}
}

func TestReadResolvConf(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(p, []byte("# dhcp\nsearch lan\nnameserver 192.0.2.53\nnameserver 127.0.0.1\nnameserver ::1\n"+
		"nameserver 2001:db8::53\nnameserver fe80::1%eth0\nnameserver bogus\nnameserver\n"), 0o644)
	got, err := readResolvConf(p)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"192.0.2.53", "2001:db8::53"}, got); diff != "" {
		t.Errorf("readResolvConf (-want +got):\n%s", diff)
	}
	if got, err := readResolvConf(filepath.Join(t.TempDir(), "missing")); err != nil || got != nil {
		t.Errorf("missing file: %v, %v; want nil, nil", got, err)
	}
}

func TestDisambiguate(t *testing.T) {
	rec := func(instance, owner, id string) services.Record {
		return services.Record{Service: services.Service{Instance: instance, Type: "_http._tcp"}, OwnerName: owner, OwnerID: id}
	}
	owners := []services.Record{
		rec("cloudbox panel", "b1", "aaaaaaaaaa"), rec("cloudbox panel", "b2", "bbbbbbbbbb"),
		rec("wiki", "b1", "aaaaaaaaaa"), rec("Radio", "twin", "cccccccccc"), rec("radio", "twin", "dddddddddd"),
		rec(strings.Repeat("é", 31), "b1", "aaaaaaaaaa"), rec(strings.Repeat("é", 31), "b2", "bbbbbbbbbb"),
	}
	svcs := make([]dnsproxy.Service, len(owners))
	for i, o := range owners {
		svcs[i] = dnsproxy.Service{Instance: o.Instance, Type: o.Type, Host: "h", Port: 1}
	}
	disambiguate(svcs, owners)
	var got []string
	for _, s := range svcs {
		got = append(got, s.Instance)
	}
	want := []string{"cloudbox panel (b1)", "cloudbox panel (b2)", "wiki", "Radio (cccccccc)", "radio (dddddddd)",
		strings.Repeat("é", 29) + " (b1)", strings.Repeat("é", 29) + " (b2)"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("disambiguate (-want +got):\n%s", diff)
	}
	if _, err := dnsproxy.New(dnsproxy.Config{Zone: dnsproxy.Zone{Services: svcs}}); err != nil {
		t.Errorf("the zone refuses the renamed services: %v", err)
	}
}
