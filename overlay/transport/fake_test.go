package transport

import (
	"bytes"
	"crypto/rand"
	"net"
	"net/netip"
	"sync"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
)

// fakeInner is an inner conn.Bind that records what is sent and receives
// nothing; tests call demux directly.
type fakeInner struct {
	mu      sync.Mutex
	record  bool
	sent    []sentPacket
	nsent   int
	closing chan struct{}
}

type sentPacket struct {
	pkt []byte
	to  netip.AddrPort
}

func newFakeInner(record bool) *fakeInner {
	return &fakeInner{record: record, closing: make(chan struct{})}
}

func (f *fakeInner) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	return []conn.ReceiveFunc{func([][]byte, []int, []conn.Endpoint) (int, error) {
		<-f.closing
		return 0, net.ErrClosed
	}}, 51820, nil
}

func (f *fakeInner) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.closing:
	default:
		close(f.closing)
	}
	return nil
}

func (f *fakeInner) SetMark(uint32) error { return nil }
func (f *fakeInner) BatchSize() int       { return conn.IdealBatchSize }

func (f *fakeInner) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return &conn.StdNetEndpoint{AddrPort: ap}, nil
}

func (f *fakeInner) Send(bufs [][]byte, ep conn.Endpoint) error {
	if !f.record {
		f.nsent += len(bufs) // single-goroutine benchmark use only
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range bufs {
		f.sent = append(f.sent, sentPacket{pkt: bytes.Clone(b), to: addrOf(ep)})
	}
	return nil
}

func (f *fakeInner) take() []sentPacket {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.sent
	f.sent = nil
	return s
}

// testKey returns a fresh private key and its public key.
func testKey(t testing.TB) ([32]byte, Key) {
	t.Helper()
	var priv [32]byte
	if _, err := rand.Read(priv[:]); err != nil {
		t.Fatal(err)
	}
	return priv, PublicKey(priv)
}

// wireGuardPacket returns a fake WireGuard transport message of n bytes.
func wireGuardPacket(n int, fill byte) []byte {
	b := bytes.Repeat([]byte{fill}, n)
	b[0], b[1], b[2], b[3] = 4, 0, 0, 0
	return b
}
