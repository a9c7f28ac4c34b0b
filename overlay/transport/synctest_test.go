package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	// got receives the WireGuard messages the Bind hands to WireGuard.
	got  chan []byte
	stop func()
}

// newMemNode starts a node; without run, its paths never change by
// themselves.
func newMemNode(t *testing.T, n *memNet, name, addr string, run bool) *memNode {
	priv, pub := testKey(t)
	m := &memNode{name: name, pub: pub, addr: netip.MustParseAddrPort(addr), got: make(chan []byte, 16)}
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
	if run {
		wg.Go(func() { b.Run(ctx) })
	}
	wg.Go(func() {
		bufs, sizes, eps := [][]byte{make([]byte, 65535)}, []int{0}, []conn.Endpoint{nil}
		for {
			if _, err := fns[0](bufs, sizes, eps); errors.Is(err, net.ErrClosed) {
				return
			}
			if sizes[0] > 0 {
				select {
				case m.got <- bytes.Clone(bufs[0][:sizes[0]]):
				default:
				}
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
		all := memNodes(t, n, true, "a", "b", "r1", "r2")
		a, b, r1, r2 := all[0], all[1], all[2], all[3]
		n.setCut(a.addr, b.addr, true)
		connect(all...)
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

		healAndWantDirect(t, n, a, b)
		for _, x := range all {
			x.stop()
		}
	})
}

// memNodes starts one node per name, at 192.0.2.1, .2, ...
func memNodes(t *testing.T, n *memNet, run bool, names ...string) []*memNode {
	var out []*memNode
	for i, name := range names {
		out = append(out, newMemNode(t, n, name, fmt.Sprintf("192.0.2.%d:51820", i+1), run))
	}
	return out
}

// connect gives every node all the others as peers, at their addresses.
func connect(all ...*memNode) {
	for _, x := range all {
		var peers []PeerConfig
		for _, y := range all {
			if y != x {
				peers = append(peers, y.peer(y.addr))
			}
		}
		x.bind.SetPeers(peers)
	}
}

// sendWireGuard sends a WireGuard message from x to y through x's Bind and
// reports whether y's Bind handed it to WireGuard.
func sendWireGuard(t *testing.T, x, y *memNode, fill byte) bool {
	t.Helper()
	ep, err := x.bind.ParseEndpoint(y.pub.String())
	if err != nil {
		t.Fatal(err)
	}
	pkt := wireGuardPacket(200, fill)
	x.bind.Send([][]byte{pkt}, ep)
	synctest.Wait()
	for {
		select {
		case got := <-y.got:
			if bytes.Equal(got, pkt) {
				return true
			}
		default:
			return false
		}
	}
}

// TestMultiHop: A and B reach each other over two relays, the second of
// which dies and is replaced; when A and B can talk directly they do.
//
//	A ---- R1 ---- R2 ---- B      every pair not drawn is cut
//	        \             /
//	         `---- R3 ---'
func TestMultiHop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		all := memNodes(t, n, true, "a", "r1", "r2", "r3", "b")
		a, r1, r2, r3, b := all[0], all[1], all[2], all[3], all[4]
		links := map[[2]*memNode]bool{{a, r1}: true, {r1, r2}: true, {r1, r3}: true, {r2, b}: true, {r3, b}: true}
		for i, x := range all {
			for _, y := range all[i+1:] {
				n.setCut(x.addr, y.addr, !links[[2]*memNode{x, y}])
			}
		}
		connect(all...)
		tick := 500 * time.Millisecond

		// Each relay learns its path one ping round after the relay
		// behind it: r1's path to b is confirmed in the first or second
		// round, a's through r1 a round later.
		time.Sleep(DefaultTiming.DirectGrace + 2*DefaultTiming.Heartbeat)
		synctest.Wait()
		if p := a.pathTo(b); p.Via != r1.pub || !p.Confirmed {
			t.Fatalf("a's path to b is %v, want a confirmed relay via r1", p)
		}
		p := r1.pathTo(b)
		if (p.Via != r2.pub && p.Via != r3.pub) || !p.Confirmed {
			t.Fatalf("r1's path to b is %v, want a confirmed relay via r2 or r3", p)
		}
		second, spare := r2, r3
		if p.Via == r3.pub {
			second, spare = r3, r2
		}
		if p := b.pathTo(a); (p.Via != r2.pub && p.Via != r3.pub) || !p.Confirmed {
			t.Fatalf("b's path to a is %v, want a confirmed relay via r2 or r3", p)
		}
		if !sendWireGuard(t, a, b, 1) || !sendWireGuard(t, b, a, 2) {
			t.Fatal("a WireGuard message does not cross a -> r1 -> r2/r3 -> b and back")
		}
		if s := r1.bind.Stats(); s.RelayForwardedPackets == 0 {
			t.Errorf("r1 forwarded nothing: %+v", s)
		}

		second.stop()
		time.Sleep(DefaultTiming.Trust + 2*tick)
		synctest.Wait()
		if p := r1.pathTo(b); p.Via != spare.pub || !p.Confirmed {
			t.Fatalf("Trust after %s died r1's path to b is %v, want relay via %s", second.name, p, spare.name)
		}
		if !sendWireGuard(t, a, b, 3) || !sendWireGuard(t, b, a, 4) {
			t.Fatalf("a WireGuard message does not cross a -> r1 -> %s -> b and back", spare.name)
		}

		healAndWantDirect(t, n, a, b)
		for _, x := range all {
			x.stop()
		}
	})
}

// TestRelayLoop: relays whose paths to b point at each other in a circle
// pass a packet around it only until its hops run out.
//
//	a ---- r1 ---- r2        b is cut from everyone; r1, r2 and r3 each
//	        \      /         believe the next one reaches b
//	         `- r3 '
func TestRelayLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		all := memNodes(t, n, false, "a", "r1", "r2", "r3", "b")
		a, r1, r2, r3, b := all[0], all[1], all[2], all[3], all[4]
		for _, x := range all {
			n.setCut(x.addr, b.addr, true)
		}
		connect(all...)
		for _, hop := range [][2]*memNode{{r1, r2}, {r2, r3}, {r3, r1}} {
			hop[0].bind.table.Load().byKey[b.pub].route.Store(&choice{kind: choiceRelay, via: hop[1].pub, confirmed: true})
		}
		ep := relayEndpoint(a.bind.table.Load(), r1.pub)
		if ep == nil {
			t.Fatal("a has no direct path to r1")
		}
		a.bind.sendRelayed([][]byte{wireGuardPacket(200, 1)}, b.pub, ep)
		synctest.Wait()
		var fwd, noPath uint64
		for _, r := range []*memNode{r1, r2, r3} {
			s := r.bind.Stats()
			fwd += s.RelayForwardedPackets
			noPath += s.DropRelayNoPath
		}
		if fwd != MaxRelays-1 || noPath != 1 {
			t.Errorf("the circle forwarded %d times and dropped %d, want %d forwards (MaxRelays-1) then 1 drop", fwd, noPath, MaxRelays-1)
		}
		for _, x := range all {
			x.stop()
		}
	})
}

// healAndWantDirect restores the link between a and b and checks that a
// sends to b directly a Heartbeat later.
func healAndWantDirect(t *testing.T, n *memNet, a, b *memNode) {
	t.Helper()
	n.setCut(a.addr, b.addr, false)
	time.Sleep(DefaultTiming.Heartbeat + 500*time.Millisecond)
	synctest.Wait()
	if p := a.pathTo(b); !p.Direct || !p.Confirmed {
		t.Fatalf("a Heartbeat after the cut healed %s's path to %s is %v, want direct", a.name, b.name, p)
	}
}
