package voip

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
)

// relayPair runs a relay with one session between two UDP endpoints on
// loopback: a (the caller's phone) and b (the callee's). It returns the
// endpoints and the relay ports each must send to.
func relayPair(t testing.TB) (r *Relay, s *MediaSession, a, b *net.UDPConn, toA, toB netip.AddrPort) {
	t.Helper()
	r, err := NewRelay(RelayConfig{Addr: netipMust("127.0.0.1"), PortMin: 13000, PortMax: 13999})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		r.Close()
	})
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b = listen(), listen()
	s = r.NewSession()
	pa, err := s.Ports(sideA, 1)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := s.Ports(sideB, 1)
	if err != nil {
		t.Fatal(err)
	}
	s.SetEndpoint(sideA, 0, a.LocalAddr().(*net.UDPAddr).AddrPort())
	s.SetEndpoint(sideB, 0, b.LocalAddr().(*net.UDPAddr).AddrPort())
	lo := netipMust("127.0.0.1")
	return r, s, a, b, netip.AddrPortFrom(lo, pa[0]), netip.AddrPortFrom(lo, pb[0])
}

func recvWithin(t testing.TB, c *net.UDPConn, buf []byte) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("receiving: %v", err)
	}
	return buf[:n]
}

func TestRelayForwardsBothWays(t *testing.T) {
	r, s, a, b, toA, toB := relayPair(t)
	buf := make([]byte, 1500)
	// a sends to its relay port, b receives from b's relay port
	if _, err := a.WriteToUDPAddrPort([]byte("from a"), toA); err != nil {
		t.Fatal(err)
	}
	if got := recvWithin(t, b, buf); !bytes.Equal(got, []byte("from a")) {
		t.Fatalf("b got %q", got)
	}
	if _, err := b.WriteToUDPAddrPort([]byte("from b"), toB); err != nil {
		t.Fatal(err)
	}
	if got := recvWithin(t, a, buf); !bytes.Equal(got, []byte("from b")) {
		t.Fatalf("a got %q", got)
	}
	// a phone behind NAT sends from another port than its SDP said: the
	// relay answers where packets come from (symmetric RTP)
	a2, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	if _, err := a2.WriteToUDPAddrPort([]byte("moved"), toA); err != nil {
		t.Fatal(err)
	}
	recvWithin(t, b, buf)
	if _, err := b.WriteToUDPAddrPort([]byte("to moved"), toB); err != nil {
		t.Fatal(err)
	}
	if got := recvWithin(t, a2, buf); !bytes.Equal(got, []byte("to moved")) {
		t.Fatalf("latched endpoint got %q", got)
	}
	if s.Received(sideA) != 2 || s.Received(sideB) != 2 {
		t.Errorf("received A %d B %d, want 2 and 2", s.Received(sideA), s.Received(sideB))
	}
	s.Close()
	if st := r.Stats(); st.Ports != 0 || st.Packets != 4 {
		t.Errorf("stats after close: %+v, want no ports and 4 packets", st)
	}
}

// TestRelayAllocs is the packet path's allocation budget: forwarding
// allocates nothing (measured with the test's own send and receive, which
// allocate nothing either).
func TestRelayAllocs(t *testing.T) {
	_, _, a, b, toA, _ := relayPair(t)
	pkt := bytes.Repeat([]byte{0x80}, 172) // an RTP packet of 20 ms G.711
	buf := make([]byte, 1500)
	allocs := testing.AllocsPerRun(500, func() {
		if _, err := a.WriteToUDPAddrPort(pkt, toA); err != nil {
			t.Fatal(err)
		}
		recvWithin(t, b, buf)
	})
	if allocs > 0.5 {
		t.Fatalf("%.2f allocations per relayed packet, want 0", allocs)
	}
}

func BenchmarkRelay(b *testing.B) {
	_, _, ca, cb, toA, _ := relayPair(b)
	pkt := bytes.Repeat([]byte{0x80}, 172)
	buf := make([]byte, 1500)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ca.WriteToUDPAddrPort(pkt, toA); err != nil {
			b.Fatal(err)
		}
		recvWithin(b, cb, buf)
	}
}

// BenchmarkRegister measures a REGISTER through parsing, the registrar and
// the response (no authentication).
func BenchmarkRegister(b *testing.B) {
	s, err := New(Config{Addr: "127.0.0.1:0", Relay: RelayConfig{Addr: netipMust("127.0.0.1"), PortMin: 14000, PortMax: 14999}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	msg := []byte("REGISTER sip:cloudbox SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK1;rport\r\nMax-Forwards: 70\r\n" +
		"From: <sip:201@cloudbox>;tag=a\r\nTo: <sip:201@cloudbox>\r\nCall-ID: reg1\r\nCSeq: 1 REGISTER\r\n" +
		"Contact: <sip:201@127.0.0.1:9>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n")
	src := peer{ap: netip.MustParseAddrPort("127.0.0.1:9")}
	b.ReportAllocs()
	for b.Loop() {
		s.handle(msg, src)
	}
}
