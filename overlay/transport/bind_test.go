package transport

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// fastTiming makes the loopback tests quick.
var fastTiming = Timing{
	Heartbeat:   100 * time.Millisecond,
	Trust:       350 * time.Millisecond,
	DirectGrace: 300 * time.Millisecond,
	CallMeMaybe: 300 * time.Millisecond,
}

// delivered is one packet a node's ReceiveFuncs handed to "WireGuard".
type delivered struct {
	pkt []byte
	ep  conn.Endpoint
}

// node is a Bind on a real UDP socket on loopback, with goroutines playing
// WireGuard's receive loops.
type node struct {
	name string
	priv [32]byte
	pub  Key
	bind *Bind
	addr netip.AddrPort
	got  chan delivered
	stop func()
}

func startNode(t *testing.T, name string, exclude ...netip.Prefix) *node {
	t.Helper()
	n := &node{name: name, got: make(chan delivered, 1024)}
	n.priv, n.pub = testKey(t)
	b, err := New(Config{PrivateKey: n.priv, Timing: fastTiming, Exclude: exclude})
	if err != nil {
		t.Fatal(err)
	}
	n.bind = b
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatalf("opening %s: %v", name, err)
	}
	n.addr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Go(func() {
			bs := b.BatchSize()
			bufs := make([][]byte, bs)
			for i := range bufs {
				bufs[i] = make([]byte, 65535)
			}
			sizes := make([]int, bs)
			eps := make([]conn.Endpoint, bs)
			for {
				k, err := fn(bufs, sizes, eps)
				if err != nil {
					if !errors.Is(err, net.ErrClosed) {
						t.Errorf("%s receive: %v", name, err)
					}
					return
				}
				for i := range k {
					if sizes[i] > 0 {
						select {
						case n.got <- delivered{pkt: bytes.Clone(bufs[i][:sizes[i]]), ep: eps[i]}:
						default:
						}
					}
				}
			}
		})
	}
	wg.Go(func() { b.Run(ctx) })
	var once sync.Once
	n.stop = func() {
		once.Do(func() {
			cancel()
			b.Close()
			wg.Wait()
		})
	}
	t.Cleanup(n.stop)
	return n
}

func (n *node) peer(endpoints ...netip.AddrPort) PeerConfig {
	return PeerConfig{Key: n.pub, Name: n.name, Endpoints: endpoints}
}

func (n *node) endpointFor(t *testing.T, k Key) conn.Endpoint {
	t.Helper()
	ep, err := n.bind.ParseEndpoint(k.String())
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

// waitPath waits until n's path to peer satisfies ok.
func waitPath(t *testing.T, n *node, peer Key, what string, ok func(PeerPath) bool) PeerPath {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last PeerPath
	for time.Now().Before(deadline) {
		for _, p := range n.bind.Status() {
			if p.Key == peer {
				last = p
				if ok(p) {
					return p
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: path to %s is %q after 10s, want %s; all paths: %v; stats %+v", n.name, peer.ShortString(), last, what, n.bind.Status(), n.bind.Stats())
	return last
}

func direct(p PeerPath) bool { return p.Direct && p.Confirmed }

func relayedVia(k Key) func(PeerPath) bool {
	return func(p PeerPath) bool { return !p.Direct && p.Via == k && p.Confirmed }
}

// expectPacket waits for one delivered packet equal to want.
func expectPacket(t *testing.T, n *node, want []byte) delivered {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case d := <-n.got:
			if bytes.Equal(d.pkt, want) {
				return d
			}
		case <-timeout:
			t.Fatalf("%s: packet not delivered within 5s", n.name)
			return delivered{}
		}
	}
}

// checkGoroutines fails the test if goroutines started by it are left.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			t.Errorf("%d goroutines leaked:\n%s", n-before, buf[:runtime.Stack(buf, true)])
		}
	})
}

func TestDirectPath(t *testing.T) {
	checkGoroutines(t)
	a, b := startNode(t, "a"), startNode(t, "b")
	a.bind.SetPeers([]PeerConfig{b.peer(b.addr)})
	b.bind.SetPeers([]PeerConfig{a.peer(a.addr)})
	p := waitPath(t, a, b.pub, "direct", direct)
	if p.Addr != b.addr || p.RTT <= 0 {
		t.Errorf("path %v with RTT %v, want direct to %v with an RTT", p, p.RTT, b.addr)
	}
	pkt := wireGuardPacket(200, 0x11)
	if err := a.bind.Send([][]byte{pkt, pkt}, a.endpointFor(t, b.pub)); err != nil {
		t.Fatal(err)
	}
	d := expectPacket(t, b, pkt)
	expectPacket(t, b, pkt)
	if addrOf(d.ep) != a.addr {
		t.Errorf("delivered from %v, want %v", addrOf(d.ep), a.addr)
	}
	if s := b.bind.Stats(); s.DiscoIn == 0 || s.WireGuardPacketsIn < 2 {
		t.Errorf("stats %+v: want disco and two WireGuard packets", s)
	}
}

// TestLearnsEndpointFromPing: B knows no endpoint of A, but A's pings teach
// it one.
func TestLearnsEndpointFromPing(t *testing.T) {
	checkGoroutines(t)
	a, b := startNode(t, "a"), startNode(t, "b")
	a.bind.SetPeers([]PeerConfig{b.peer(b.addr)})
	b.bind.SetPeers([]PeerConfig{a.peer()})
	waitPath(t, b, a.pub, "direct", direct)
}

// TestRelay: A and B know each other only by key; both reach R.
//
//	A ---- R ---- B    (loopback sockets; A and B have no endpoint of each other)
func TestRelay(t *testing.T) {
	checkGoroutines(t)
	a, b, r := startNode(t, "a"), startNode(t, "b"), startNode(t, "r")
	a.bind.SetPeers([]PeerConfig{b.peer(), r.peer(r.addr)})
	b.bind.SetPeers([]PeerConfig{a.peer(), r.peer(r.addr)})
	r.bind.SetPeers([]PeerConfig{a.peer(a.addr), b.peer(b.addr)})
	waitPath(t, a, b.pub, "relay via r", relayedVia(r.pub))
	waitPath(t, b, a.pub, "relay via r", relayedVia(r.pub))

	pkt := wireGuardPacket(1400, 0x22)
	if err := a.bind.Send([][]byte{pkt}, a.endpointFor(t, b.pub)); err != nil {
		t.Fatal(err)
	}
	d := expectPacket(t, b, pkt)
	if e, ok := d.ep.(*Endpoint); !ok || e.Key() != a.pub {
		t.Errorf("relayed packet delivered with endpoint %v, want A's", d.ep)
	}
	if s := r.bind.Stats(); s.RelayForwardedPackets == 0 || s.WireGuardPacketsIn != 0 {
		t.Errorf("relay stats %+v: want forwarded packets and no WireGuard packets of its own", s)
	}
}

// TestRelayFailover: when the relay in use goes away, the other one takes
// over.
//
//	A --+-- R1 --+-- B
//	    +-- R2 --+
func TestRelayFailover(t *testing.T) {
	checkGoroutines(t)
	a, b := startNode(t, "a"), startNode(t, "b")
	r1, r2 := startNode(t, "r1"), startNode(t, "r2")
	a.bind.SetPeers([]PeerConfig{b.peer(), r1.peer(r1.addr), r2.peer(r2.addr)})
	b.bind.SetPeers([]PeerConfig{a.peer(), r1.peer(r1.addr), r2.peer(r2.addr)})
	for _, r := range []*node{r1, r2} {
		r.bind.SetPeers([]PeerConfig{a.peer(a.addr), b.peer(b.addr)})
	}
	p := waitPath(t, a, b.pub, "relayed", func(p PeerPath) bool { return !p.Via.IsZero() && p.Confirmed })
	used, other := r1, r2
	if p.Via == r2.pub {
		used, other = r2, r1
	}
	used.stop()
	start := time.Now()
	waitPath(t, a, b.pub, "relay via the other relay", relayedVia(other.pub))
	t.Logf("relay failover took %v (trust %v)", time.Since(start).Round(time.Millisecond), fastTiming.Trust)

	pkt := wireGuardPacket(300, 0x33)
	if err := a.bind.Send([][]byte{pkt}, a.endpointFor(t, b.pub)); err != nil {
		t.Fatal(err)
	}
	expectPacket(t, b, pkt)
}

// udpGate forwards datagrams between two Binds, A and B, through one
// loopback socket, so that both use its address as the other's endpoint.
// It can drop everything (a firewall) or duplicate WireGuard data packets
// (a replay attacker).
type udpGate struct {
	pc        *net.UDPConn
	a, b      netip.AddrPort
	closed    atomic.Bool
	duplicate atomic.Bool
	dups      atomic.Int64
	done      chan struct{}
}

func newUDPGate(t *testing.T, ip string) *udpGate {
	t.Helper()
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	return &udpGate{pc: pc, done: make(chan struct{})}
}

func (g *udpGate) addr() netip.AddrPort {
	return g.pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// start forwards until the test ends.
func (g *udpGate) start(t *testing.T, a, b netip.AddrPort) {
	g.a, g.b = a, b
	go func() {
		defer close(g.done)
		buf := make([]byte, 65535)
		for {
			n, from, err := g.pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if g.closed.Load() {
				continue
			}
			to := g.b
			if from == g.b {
				to = g.a
			}
			g.pc.WriteToUDPAddrPort(buf[:n], to)
			if g.duplicate.Load() && n > minWireGuardLen && buf[0] == 4 {
				g.pc.WriteToUDPAddrPort(buf[:n], to)
				g.dups.Add(1)
			}
		}
	}()
	t.Cleanup(func() {
		g.pc.Close()
		<-g.done
	})
}

// TestBackToDirect: with the direct path blocked A and B relay through R;
// when it opens they go direct again. A and B exclude 127.0.0.1, so the only
// direct path is through the gate (on 127.0.0.2); they reach R on 127.0.0.3.
//
//	A --- gate --- B
//	 \           /
//	  +--- R ---+
func TestBackToDirect(t *testing.T) {
	checkGoroutines(t)
	real := netip.MustParsePrefix("127.0.0.1/32")
	a, b, r := startNode(t, "a", real), startNode(t, "b", real), startNode(t, "r")
	gate := newUDPGate(t, "127.0.0.2")
	gate.closed.Store(true)
	gate.start(t, a.addr, b.addr)
	rAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), r.addr.Port())
	a.bind.SetPeers([]PeerConfig{b.peer(gate.addr()), r.peer(rAddr)})
	b.bind.SetPeers([]PeerConfig{a.peer(gate.addr()), r.peer(rAddr)})
	r.bind.SetPeers([]PeerConfig{a.peer(a.addr), b.peer(b.addr)})
	waitPath(t, a, b.pub, "relay via r", relayedVia(r.pub))
	gate.closed.Store(false)
	start := time.Now()
	waitPath(t, a, b.pub, "direct", direct)
	waitPath(t, b, a.pub, "direct", direct)
	t.Logf("back to direct after %v (heartbeat %v)", time.Since(start).Round(time.Millisecond), fastTiming.Heartbeat)
	gate.closed.Store(true)
	waitPath(t, a, b.pub, "relay via r again", relayedVia(r.pub))
}

func TestParseEndpoint(t *testing.T) {
	f := newDemuxFixture(t)
	ep, err := f.bind.ParseEndpoint(f.a.String())
	if err != nil {
		t.Fatal(err)
	}
	again, _ := f.bind.ParseEndpoint(f.a.String())
	if ep != again || ep.DstToString() != f.a.String() || !ep.DstIP().IsValid() {
		t.Errorf("endpoint %v (%v) not stable or not round-tripping", ep, ep.DstToString())
	}
	if _, err := f.bind.ParseEndpoint(Key{5}.String()); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("unknown key: %v, want ErrUnknownPeer", err)
	}
	if ep, err := f.bind.ParseEndpoint("192.0.2.9:1"); err != nil || addrOf(ep) != netip.MustParseAddrPort("192.0.2.9:1") {
		t.Errorf("address endpoint: %v, %v", ep, err)
	}
}
