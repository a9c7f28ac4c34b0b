package transport

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// memNet is an in-memory UDP network for synctest bubbles: sends are
// delivered through buffered channels unless the link is cut.
type memNet struct {
	mu    sync.Mutex
	binds map[netip.AddrPort]*memBind
	cut   map[[2]netip.AddrPort]bool
}

func newMemNet() *memNet {
	return &memNet{binds: map[netip.AddrPort]*memBind{}, cut: map[[2]netip.AddrPort]bool{}}
}

// setCut cuts or restores the link between x and y, both ways.
func (n *memNet) setCut(x, y netip.AddrPort, cut bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[[2]netip.AddrPort{x, y}] = cut
	n.cut[[2]netip.AddrPort{y, x}] = cut
}

type memPacket struct {
	b    []byte
	from netip.AddrPort
}

// memBind is an inner conn.Bind on a memNet.
type memBind struct {
	net    *memNet
	addr   netip.AddrPort
	in     chan memPacket
	closed chan struct{}
}

func (m *memBind) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	m.net.mu.Lock()
	m.in = make(chan memPacket, 256)
	m.closed = make(chan struct{})
	m.net.binds[m.addr] = m
	in, closed := m.in, m.closed
	m.net.mu.Unlock()
	return []conn.ReceiveFunc{func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		select {
		case p := <-in:
			sizes[0] = copy(bufs[0], p.b)
			eps[0] = &conn.StdNetEndpoint{AddrPort: p.from}
			return 1, nil
		case <-closed:
			return 0, net.ErrClosed
		}
	}}, m.addr.Port(), nil
}

func (m *memBind) Close() error {
	m.net.mu.Lock()
	defer m.net.mu.Unlock()
	if m.net.binds[m.addr] == m {
		delete(m.net.binds, m.addr)
		close(m.closed)
	}
	return nil
}

func (m *memBind) SetMark(uint32) error { return nil }
func (m *memBind) BatchSize() int       { return 1 }

func (m *memBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return &conn.StdNetEndpoint{AddrPort: ap}, nil
}

func (m *memBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	to := addrOf(ep)
	m.net.mu.Lock()
	defer m.net.mu.Unlock()
	dst := m.net.binds[to]
	if dst == nil || m.net.cut[[2]netip.AddrPort{m.addr, to}] {
		return nil // lost, as UDP would be
	}
	for _, b := range bufs {
		select {
		case dst.in <- memPacket{b: bytes.Clone(b), from: m.addr}:
		default:
		}
	}
	return nil
}

// memNode is a Bind on a memNet with a goroutine playing WireGuard.
type memNode struct {
	name string
	pub  Key
	addr netip.AddrPort
	bind *Bind
	stop func()
}

func startMemNode(t *testing.T, n *memNet, name, addr string) *memNode {
	priv, pub := testKey(t)
	m := &memNode{name: name, pub: pub, addr: netip.MustParseAddrPort(addr)}
	b, err := New(Config{PrivateKey: priv, Inner: &memBind{net: n, addr: m.addr}})
	if err != nil {
		t.Fatal(err)
	}
	m.bind = b
	fns, _, err := b.Open(m.addr.Port())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { b.Run(ctx) })
	wg.Go(func() {
		bufs, sizes, eps := [][]byte{make([]byte, 65535)}, []int{0}, []conn.Endpoint{nil}
		for {
			if _, err := fns[0](bufs, sizes, eps); errors.Is(err, net.ErrClosed) {
				return
			}
		}
	})
	var once sync.Once
	m.stop = func() {
		once.Do(func() {
			cancel()
			b.Close()
			wg.Wait()
		})
	}
	t.Cleanup(m.stop)
	return m
}

func (m *memNode) peer(endpoints ...netip.AddrPort) PeerConfig {
	return PeerConfig{Key: m.pub, Name: m.name, Endpoints: endpoints}
}

func (m *memNode) pathTo(peer *memNode) PeerPath {
	for _, p := range m.bind.Status() {
		if p.Key == peer.pub {
			return p
		}
	}
	return PeerPath{}
}

// TestPathTiming checks the timing promises of DefaultTiming on a fake
// clock: relay within DirectGrace when the direct path is blocked, another
// relay within Trust when the relay dies, direct within a Heartbeat when
// the block is lifted.
//
//	A ---x--- B     (A-B cut)
//	 \       /
//	  R1   R2       (both reach A and B)
func TestPathTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		a := startMemNode(t, n, "a", "192.0.2.1:51820")
		b := startMemNode(t, n, "b", "192.0.2.2:51820")
		r1 := startMemNode(t, n, "r1", "192.0.2.3:51820")
		r2 := startMemNode(t, n, "r2", "192.0.2.4:51820")
		n.setCut(a.addr, b.addr, true)
		all := []*memNode{a, b, r1, r2}
		for _, x := range all {
			var peers []PeerConfig
			for _, y := range all {
				if y != x {
					peers = append(peers, y.peer(y.addr))
				}
			}
			x.bind.SetPeers(peers)
		}
		tick := 500 * time.Millisecond // Run's tick with DefaultTiming

		time.Sleep(DefaultTiming.DirectGrace + tick)
		synctest.Wait()
		p := a.pathTo(b)
		if p.Direct || p.Via.IsZero() || !p.Confirmed {
			t.Fatalf("after DirectGrace a's path to b is %v, want a confirmed relay", p)
		}
		used, other := r1, r2
		if p.Via == r2.pub {
			used, other = r2, r1
		}

		used.stop()
		time.Sleep(DefaultTiming.Trust + tick)
		synctest.Wait()
		if p := a.pathTo(b); p.Via != other.pub || !p.Confirmed {
			t.Fatalf("Trust after %s died a's path to b is %v, want relay via %s", used.name, p, other.name)
		}
		if p := b.pathTo(a); p.Via != other.pub || !p.Confirmed {
			t.Fatalf("Trust after %s died b's path to a is %v, want relay via %s", used.name, p, other.name)
		}

		n.setCut(a.addr, b.addr, false)
		time.Sleep(DefaultTiming.Heartbeat + tick)
		synctest.Wait()
		if p := a.pathTo(b); !p.Direct || !p.Confirmed {
			t.Fatalf("a Heartbeat after the cut healed a's path to b is %v, want direct", p)
		}
		for _, x := range all {
			x.stop()
		}
	})
}
