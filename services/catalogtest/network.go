// Package catalogtest is an in-memory network for memberlist transports,
// with injected packet loss and crashes, so that hundreds of catalogs can
// gossip in one test process without sockets.
//
// Packets (memberlist's UDP) are dropped with the configured probability
// and when a receive queue is full, as UDP would be. Streams (memberlist's
// TCP: push/pull, fallback pings) are reliable pipes, as TCP is over a
// lossy link; a crashed node neither sends, receives nor accepts streams.
// It is not a network emulator: there is no latency or bandwidth model.
package catalogtest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// queueLen is the receive queue of a transport, in packets.
const queueLen = 512

// Network connects the transports it creates. The zero value is not
// usable; call NewNetwork. It is safe for concurrent use.
type Network struct {
	sent, dropped atomic.Uint64
	lossPPM       atomic.Uint32 // packet loss in parts per million

	mu      sync.RWMutex // guards the following
	nodes   map[netip.AddrPort]*Transport
	crashed map[netip.AddrPort]bool
}

// NewNetwork returns an empty network without loss.
func NewNetwork() *Network {
	return &Network{nodes: make(map[netip.AddrPort]*Transport), crashed: make(map[netip.AddrPort]bool)}
}

// SetLoss sets the probability (0 to 1) that a packet is lost.
func (n *Network) SetLoss(p float64) { n.lossPPM.Store(uint32(max(0, min(p, 1)) * 1e6)) }

// Stats returns how many packets were sent and how many of them dropped.
func (n *Network) Stats() (sent, dropped uint64) { return n.sent.Load(), n.dropped.Load() }

// Crash cuts addr off: from now on its packets and streams, in and out, are
// lost, as when a box loses power.
func (n *Network) Crash(addr netip.AddrPort) {
	n.mu.Lock()
	n.crashed[addr] = true
	n.mu.Unlock()
}

// NewTransport returns a transport at addr, which must be unused.
func (n *Network) NewTransport(addr netip.AddrPort) (*Transport, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.nodes[addr]; ok {
		return nil, fmt.Errorf("address %s in use", addr)
	}
	t := &Transport{
		net:      n,
		addr:     addr,
		packetCh: make(chan *memberlist.Packet, queueLen),
		streamCh: make(chan net.Conn),
		done:     make(chan struct{}),
	}
	n.nodes[addr] = t
	return t, nil
}

// route returns the transport at to, nil when either end is crashed or
// absent.
func (n *Network) route(from netip.AddrPort, to string) *Transport {
	ap, err := netip.ParseAddrPort(to)
	if err != nil {
		return nil
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.crashed[from] || n.crashed[ap] {
		return nil
	}
	return n.nodes[ap]
}

// Transport is a memberlist.NodeAwareTransport on a Network.
type Transport struct {
	net      *Network
	addr     netip.AddrPort
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	done     chan struct{}
	once     sync.Once
}

var _ memberlist.NodeAwareTransport = (*Transport)(nil)

// Addr is the transport's address.
func (t *Transport) Addr() netip.AddrPort { return t.addr }

func (t *Transport) udpAddr() net.Addr { return net.UDPAddrFromAddrPort(t.addr) }

// FinalAdvertiseAddr implements memberlist.Transport.
func (t *Transport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return t.addr.Addr().AsSlice(), int(t.addr.Port()), nil
}

// WriteTo implements memberlist.Transport: the packet is delivered unless
// lost.
func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	now := time.Now()
	t.net.sent.Add(1)
	dst := t.net.route(t.addr, addr)
	if dst == nil || rand.Uint32N(1e6) < t.net.lossPPM.Load() {
		t.net.dropped.Add(1)
		return now, nil
	}
	p := &memberlist.Packet{Buf: append([]byte(nil), b...), From: t.udpAddr(), Timestamp: now}
	select {
	case dst.packetCh <- p:
	default:
		t.net.dropped.Add(1)
	}
	return now, nil
}

// WriteToAddress implements memberlist.NodeAwareTransport.
func (t *Transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

// PacketCh implements memberlist.Transport.
func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout implements memberlist.Transport with a reliable pipe.
func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	dst := t.net.route(t.addr, addr)
	if dst == nil {
		// A crashed peer does not answer: wait as TCP would, boundedly.
		select {
		case <-time.After(min(timeout, 100*time.Millisecond)):
		case <-t.done:
		}
		return nil, fmt.Errorf("dial %s: connection timed out", addr)
	}
	a, b := net.Pipe()
	local := &pipeConn{Conn: a, local: t.udpAddr(), remote: dst.udpAddr()}
	remote := &pipeConn{Conn: b, local: dst.udpAddr(), remote: t.udpAddr()}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case dst.streamCh <- remote:
		return local, nil
	case <-dst.done:
	case <-t.done:
	case <-timer.C:
	}
	a.Close()
	b.Close()
	return nil, fmt.Errorf("dial %s: connection refused", addr)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *Transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

// StreamCh implements memberlist.Transport.
func (t *Transport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown implements memberlist.Transport: the address is freed and
// pending dials to it fail.
func (t *Transport) Shutdown() error {
	t.once.Do(func() {
		close(t.done)
		t.net.mu.Lock()
		delete(t.net.nodes, t.addr)
		t.net.mu.Unlock()
	})
	return nil
}

// pipeConn reports the transports' addresses instead of "pipe".
type pipeConn struct {
	net.Conn
	local, remote net.Addr
}

func (c *pipeConn) LocalAddr() net.Addr  { return c.local }
func (c *pipeConn) RemoteAddr() net.Addr { return c.remote }
