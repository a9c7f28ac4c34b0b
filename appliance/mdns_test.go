//go:build !router

package appliance

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/dnsproxy/mdns"
	"github.com/cloudbox/cloudbox/services"
)

// TestSyncFound: services found on the LAN are published to the catalog
// at their LAN address, marked as such, and removed when the LAN no longer
// announces them; a service people published is left alone.
func TestSyncFound(t *testing.T) {
	h, _ := newTestHandler(t, "b1")
	cat := newTestCatalog(t, h)
	cs := &catalogService{cat: cat}
	m := &mdnsService{catalog: cs, selfID: h.cfg.node.ID(), log: slog.New(slog.DiscardHandler)}
	if err := cat.Publish(services.Service{Instance: "Wiki", Type: "_http._tcp", Port: 80}); err != nil {
		t.Fatal(err)
	}
	printer := mdns.Found{Instance: "Kitchen printer", Type: "_ipp._tcp", Host: "printer.local.",
		Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::7"), netip.MustParseAddr("198.51.100.7")},
		Port:  631, TXT: []string{"rp=ipp/print", "ty=Laser"}, Expires: time.Now().Add(time.Hour)}
	noAddr := mdns.Found{Instance: "Ghost", Type: "_ipp._tcp", Port: 631}
	m.syncFound([]mdns.Found{printer, noAddr})

	got := cat.Services(services.Filter{Type: "_ipp._tcp"})
	if len(got) != 1 {
		t.Fatalf("after the LAN announced a printer: %+v, want one service", got)
	}
	p := got[0]
	if p.Instance != "Kitchen printer" || p.Port != 631 || p.Addr != netip.MustParseAddr("198.51.100.7") ||
		p.TXT["rp"] != "ipp/print" || p.TXT["src"] != "mdns" {
		t.Errorf("printer in the catalog = %+v", p)
	}
	// advertised does not announce it back to the LAN.
	for _, s := range m.advertised(nil) {
		if s.Type == "_ipp._tcp" {
			t.Errorf("a service found on the LAN is announced back to it: %+v", s)
		}
	}
	m.syncFound(nil)
	if got := cat.Services(services.Filter{Type: "_ipp._tcp"}); len(got) != 0 {
		t.Errorf("after the printer left the LAN: %+v, want none", got)
	}
	if got := cat.Services(services.Filter{Type: "_http._tcp"}); len(got) != 1 {
		t.Errorf("the wiki people published was touched: %+v", got)
	}
}
