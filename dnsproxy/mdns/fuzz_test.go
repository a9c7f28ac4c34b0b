package mdns

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzHandle feeds arbitrary packets to the packet handling path as
// queries and responses from the LAN, then runs the timers: nothing may
// panic, and everything sent must pack within the size bounds.
func FuzzHandle(f *testing.F) {
	seeds := []*dns.Msg{
		query(7, q("_http._tcp.local.", dns.TypePTR, false)),
		query(7, q("box1.local.", dns.TypeANY, true)),
		query(4242, q(`Big\ Printer._ipp._tcp.local.`, dns.TypeSRV, false)),
		{MsgHdr: dns.MsgHdr{Response: true}, Answer: rrs(f,
			`_ipp._tcp.local. 4500 IN PTR Office\ Printer._ipp._tcp.local.`,
			`Office\ Printer._ipp._tcp.local. 120 IN SRV 0 0 631 lanprinter.local.`,
			`Office\ Printer._ipp._tcp.local. 4500 IN TXT "rp=ipp/print"`,
			"lanprinter.local. 120 IN A 192.0.2.77")},
		{MsgHdr: dns.MsgHdr{Response: true}, Answer: rrs(f, `_ipp._tcp.local. 0 IN PTR Office\ Printer._ipp._tcp.local.`)},
		{MsgHdr: dns.MsgHdr{Response: true}, Answer: rrs(f, "box1.local. 120 IN A 192.0.2.99")},
	}
	for _, m := range seeds {
		f.Add(packed(f, m), uint8(0))
		f.Add(packed(f, m), uint8(1))
	}
	f.Add([]byte{0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xc0, 0x0c}, uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, how uint8) {
		m := &counters{}
		c := newCore(slog.New(slog.DiscardHandler), "box1.local.", []string{"_ipp._tcp", "_http._tcp"}, 50, fam4|fam6, m)
		z, _ := buildZone("box1.local.", []netip.Addr{box1Addr, netip.MustParseAddr("2001:db8::1")}, testServices())
		c.start(t0, z)
		src := []netip.AddrPort{querier, legacyQ, netip.MustParseAddrPort("[2001:db8::50]:5353")}[int(how)%3]
		var out []outgoing
		for i := range 3 {
			now := t0.Add(time.Duration(i) * 700 * time.Millisecond)
			out = append(out, c.handle(now, b, src, how&4 == 0, fam4)...)
			out = append(out, c.tick(now)...)
		}
		out = append(out, c.tick(t0.Add(time.Hour))...)
		out = append(out, c.stop()...)
		for _, o := range out {
			p, err := o.msg.Pack()
			if err != nil {
				t.Fatalf("cannot pack %v: %v", o.msg, err)
			}
			limit := maxPacket
			if o.to.IsValid() && o.to.Port() != mdnsPort {
				limit = 9000 // legacy: the querier's EDNS(0) size
			}
			if len(p) > limit {
				t.Fatalf("sent %d bytes (limit %d): %v", len(p), limit, o.msg)
			}
		}
	})
}
