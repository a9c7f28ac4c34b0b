package transport

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// udpPair is two open udpBinds on loopback.
type udpPair struct {
	a, b     *udpBind
	recvB    conn.ReceiveFunc
	portA    uint16
	portB    uint16
	bufs     [][]byte
	sizes    []int
	eps      []conn.Endpoint
	received int
}

func newUDPPair(t *testing.T) *udpPair {
	t.Helper()
	p := &udpPair{a: newUDPBind().(*udpBind), b: newUDPBind().(*udpBind)}
	_, pa, err := p.a.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	fns, pb, err := p.b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(fns) != 1 {
		t.Fatalf("%d receive functions, want 1 (one dual-stack socket)", len(fns))
	}
	t.Cleanup(func() { p.a.Close(); p.b.Close() })
	p.portA, p.portB, p.recvB = pa, pb, fns[0]
	p.bufs = make([][]byte, udpBatch)
	for i := range p.bufs {
		p.bufs[i] = make([]byte, 1<<16)
	}
	p.sizes, p.eps = make([]int, udpBatch), make([]conn.Endpoint, udpBatch)
	return p
}

// receive reads until want packets arrived, and returns them with the
// source of the first.
func (p *udpPair) receive(t *testing.T, want int) ([][]byte, netip.AddrPort) {
	t.Helper()
	var got [][]byte
	var src netip.AddrPort
	p.b.sock.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < want {
		n, err := p.recvB(p.bufs, p.sizes, p.eps)
		if err != nil {
			t.Fatalf("receive after %d of %d packets: %v", len(got), want, err)
		}
		for i := range n {
			got = append(got, bytes.Clone(p.bufs[i][:p.sizes[i]]))
			src = p.eps[i].(*conn.StdNetEndpoint).AddrPort
		}
	}
	return got, src
}

// TestUDPBindBatches sends batches that GSO coalesces (equal sizes, a
// shorter last one, a size change) and that GRO may deliver coalesced; every
// packet must arrive intact, in order, from the sender's address, over
// IPv4 and IPv6.
func TestUDPBindBatches(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) {
			p := newUDPPair(t)
			ep, err := p.a.ParseEndpoint(netip.AddrPortFrom(netip.MustParseAddr(host), p.portB).String())
			if err != nil {
				t.Fatal(err)
			}
			var want [][]byte
			for i := range 100 {
				size := 1200
				switch {
				case i == 63:
					size = 700 // ends a run
				case i >= 80:
					size = 300 + i
				}
				want = append(want, bytes.Repeat([]byte{byte(i)}, size))
			}
			if err := p.a.Send(want, ep); err != nil {
				t.Fatalf("send: %v", err)
			}
			got, src := p.receive(t, len(want))
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("packet %d: got %d bytes of %x, want %d bytes of %x", i, len(got[i]), got[i][:1], len(want[i]), want[i][:1])
				}
			}
			if src.Addr() != netip.MustParseAddr(host) || src.Port() != p.portA {
				t.Errorf("source %s, want %s port %d", src, host, p.portA)
			}
		})
	}
}

// TestUDPBindAllocs is the inner Bind's share of the allocation budget:
// none per batch once the source's endpoint is cached.
func TestUDPBindAllocs(t *testing.T) {
	p := newUDPPair(t)
	ep, _ := p.a.ParseEndpoint(fmt.Sprintf("127.0.0.1:%d", p.portB))
	batch := make([][]byte, 32)
	for i := range batch {
		batch[i] = make([]byte, 1400)
	}
	round := func() {
		if err := p.a.Send(batch, ep); err != nil {
			t.Fatal(err)
		}
		for n := 0; n < len(batch); {
			k, err := p.recvB(p.bufs, p.sizes, p.eps)
			if err != nil {
				t.Fatal(err)
			}
			n += k
		}
	}
	round()
	if a := testing.AllocsPerRun(20, round); a != 0 {
		t.Errorf("%v allocations per batch sent and received, want 0", a)
	}
}

// TestUDPBindClose: a blocked receive returns net.ErrClosed on Close, and
// the Bind opens again.
func TestUDPBindClose(t *testing.T) {
	b := newUDPBind()
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := fns[0](make([][]byte, udpBatch), make([]int, udpBatch), make([]conn.Endpoint, udpBatch))
		done <- err
	}()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("receive after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("receive still blocked 5 s after Close")
	}
	if _, _, err := b.Open(0); err != nil {
		t.Fatalf("opening again: %v", err)
	}
	b.Close()
	if err := b.Send([][]byte{{1}}, &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort("127.0.0.1:9")}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("send after Close: %v, want net.ErrClosed", err)
	}
}
