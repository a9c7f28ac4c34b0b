package netcfg

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/netnstest"
)

// TestApply configures a dummy interface in a fresh namespace.
//
//	namespace "nc": cbt0 (veth) <- 198.18.0.1/15, fd00:cb::1/48,
//	                                routes 198.51.100.0/24, 2001:db8:1::/48
func TestApply(t *testing.T) {
	ns := netnstest.New(t, "nc")
	ns.IP("link", "add", "cbt0", "type", "veth", "peer", "name", "cbt1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := Config{
		Name:   "cbt0",
		MTU:    1380,
		Addrs:  []netip.Prefix{netip.MustParsePrefix("198.18.0.1/15"), netip.MustParsePrefix("fd00:cb::1/48")},
		Routes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:1::/48")},
		NetNS:  int(ns.Open().Fd()),
	}
	for i := range 2 { // the second time checks idempotence
		if err := Apply(ctx, cfg); err != nil {
			t.Fatalf("Apply #%d: %v", i+1, err)
		}
	}
	link := ns.IP("link", "show", "cbt0")
	for _, want := range []string{"mtu 1380", ",UP"} {
		if !strings.Contains(link, want) {
			t.Errorf("link lacks %q:\n%s", want, link)
		}
	}
	addrs := ns.IP("addr", "show", "dev", "cbt0")
	for _, want := range []string{"inet 198.18.0.1/15", "inet6 fd00:cb::1/48"} {
		if !strings.Contains(addrs, want) {
			t.Errorf("addresses lack %q:\n%s", want, addrs)
		}
	}
	if strings.Contains(addrs, "tentative") {
		t.Errorf("IPv6 address waits for duplicate address detection:\n%s", addrs)
	}
	routes := ns.IP("route", "show", "dev", "cbt0") + ns.IP("-6", "route", "show", "dev", "cbt0")
	for _, want := range []string{"198.51.100.0/24", "2001:db8:1::/48"} {
		if !strings.Contains(routes, want) {
			t.Errorf("routes lack %q:\n%s", want, routes)
		}
	}

	cfg.Name = "nosuch0"
	if err := Apply(ctx, cfg); !errors.Is(err, ErrNoInterface) {
		t.Errorf("Apply to a missing interface = %v, want ErrNoInterface", err)
	}
}
