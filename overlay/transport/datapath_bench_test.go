package transport

import (
	"crypto/cipher"
	"encoding/binary"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/overlay/internal/pktbuf"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.zx2c4.com/wireguard/conn"
)

// The per-packet data path of the overlay: WireGuard seals and opens each
// packet (ChaCha20-Poly1305, in wireguard-go's device), and the Bind moves
// it: Send (direct or wrapped in a relay envelope) and receive (demux, relay
// unwrap, hand-out in WireGuard's batches). Every benchmark reports
// allocs/packet; TestDataPathAllocs holds them at zero.

const benchPacket = 1380 + 32 // overlay MTU plus WireGuard's header and tag

// dataPath is a Bind with peers a (direct) and b, and a receiver whose
// inner ReceiveFunc returns a full batch of pkt from a each time.
type dataPath struct {
	f    *demuxFixture
	recv *receiver
	pkt  []byte
	// WireGuard's side: its smaller batch.
	bufs  [][]byte
	sizes []int
	eps   []conn.Endpoint
}

func newDataPath(tb testing.TB, pkt []byte) *dataPath {
	f := newDemuxFixture(tb)
	f.inner.record = false
	d := &dataPath{f: f, pkt: pkt}
	inner := func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for i := range bufs {
			sizes[i] = copy(bufs[i], d.pkt)
			eps[i] = f.aEP
		}
		return len(bufs), nil
	}
	d.recv = &receiver{
		b:     f.bind,
		fn:    inner,
		batch: pktbuf.New(f.bind.inner.BatchSize(), pktbuf.MaxSlot),
		eps:   make([]conn.Endpoint, f.bind.inner.BatchSize()),
		fwd:   make([][]byte, 0, f.bind.inner.BatchSize()),
		timer: time.NewTimer(time.Hour),
	}
	d.recv.timer.Stop()
	n := f.bind.BatchSize()
	d.bufs, d.sizes, d.eps = make([][]byte, n), make([]int, n), make([]conn.Endpoint, n)
	for i := range d.bufs {
		d.bufs[i] = make([]byte, 1<<16-1)
	}
	tb.Cleanup(func() { f.bind.Close() })
	return d
}

// receiveBatch receives one inner batch the way WireGuard does, in its
// smaller batches, and reports the packets out of the inbound Gate as the
// TUN would. It returns the packets handed to WireGuard.
func (d *dataPath) receiveBatch(tb testing.TB) int {
	total := 0
	for {
		n, err := d.recv.receive(d.bufs, d.sizes, d.eps)
		if err != nil {
			tb.Fatal(err)
		}
		total += n
		d.f.bind.in.Done(n)
		if !d.recv.batch.Pending() {
			return total
		}
	}
}

func BenchmarkReceiveDirect(b *testing.B) {
	d := newDataPath(b, wireGuardPacket(benchPacket, 0xAA))
	b.SetBytes(benchPacket * int64(d.f.bind.inner.BatchSize()))
	b.ReportAllocs()
	var n int
	for b.Loop() {
		n += d.receiveBatch(b)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/packet")
}

func BenchmarkReceiveRelayed(b *testing.B) {
	d := newDataPath(b, nil)
	// b's packets arrive relayed by a.
	d.pkt = envelope(TypeRelayed, d.f.b, wireGuardPacket(benchPacket, 0xAA))
	b.SetBytes(benchPacket * int64(d.f.bind.inner.BatchSize()))
	b.ReportAllocs()
	var n int
	for b.Loop() {
		n += d.receiveBatch(b)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/packet")
}

func sendBatch(n int) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = wireGuardPacket(benchPacket, 0xAA)
	}
	return bufs
}

func BenchmarkSendDirect(b *testing.B) {
	d := newDataPath(b, nil)
	bufs := sendBatch(d.f.bind.BatchSize())
	ep := d.f.bind.table.Load().byKey[d.f.a].ep
	b.SetBytes(int64(benchPacket * len(bufs)))
	b.ReportAllocs()
	for b.Loop() {
		if err := d.f.bind.Send(bufs, ep); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSendRelayed(b *testing.B) {
	d := newDataPath(b, nil)
	bufs := sendBatch(d.f.bind.BatchSize())
	b.SetBytes(int64(benchPacket * len(bufs)))
	b.ReportAllocs()
	for b.Loop() {
		if err := d.f.bind.sendRelayed(bufs, d.f.b, d.f.aEP); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSealOpen is WireGuard's per-packet cryptography as wireguard-go
// does it: ChaCha20-Poly1305 with a counter nonce, sealed and opened in
// place.
func BenchmarkSealOpen(b *testing.B) {
	aead, err := chacha20poly1305.New(make([]byte, chacha20poly1305.KeySize))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, benchPacket)
	b.SetBytes(benchPacket - 32)
	b.ReportAllocs()
	nonce := make([]byte, chacha20poly1305.NonceSize)
	var ctr uint64
	for b.Loop() {
		sealOpen(b, aead, buf, nonce, ctr)
		ctr++
	}
}

// sealOpen seals buf's payload in place and opens it again; nonce is the
// caller's, as each of wireguard-go's crypto goroutines has one.
func sealOpen(tb testing.TB, aead cipher.AEAD, buf, nonce []byte, ctr uint64) {
	binary.LittleEndian.PutUint64(nonce[4:], ctr)
	plain := buf[16 : len(buf)-16]
	sealed := aead.Seal(plain[:0], nonce, plain, nil)
	if _, err := aead.Open(sealed[:0], nonce, sealed, nil); err != nil {
		tb.Fatal(err)
	}
}

// TestDataPathAllocs is the allocation budget of the data path: zero per
// packet, in each direction, direct and relayed.
func TestDataPathAllocs(t *testing.T) {
	d := newDataPath(t, wireGuardPacket(benchPacket, 0xAA))
	if got := d.receiveBatch(t); got != d.f.bind.inner.BatchSize() {
		t.Fatalf("received %d packets of a batch of %d", got, d.f.bind.inner.BatchSize())
	}
	relayed := envelope(TypeRelayed, d.f.b, wireGuardPacket(benchPacket, 0xAA))
	bufs := sendBatch(d.f.bind.BatchSize())
	ep := d.f.bind.table.Load().byKey[d.f.a].ep
	aead, _ := chacha20poly1305.New(make([]byte, chacha20poly1305.KeySize))
	buf := make([]byte, benchPacket)
	nonce := make([]byte, chacha20poly1305.NonceSize)
	direct := d.pkt
	for _, c := range []struct {
		name string
		pkt  []byte
		fn   func()
	}{
		{"receive direct", direct, func() { d.receiveBatch(t) }},
		{"receive relayed", relayed, func() { d.receiveBatch(t) }},
		{"send direct", nil, func() { d.f.bind.Send(bufs, ep) }},
		{"send relayed", nil, func() { d.f.bind.sendRelayed(bufs, d.f.b, d.f.aEP) }},
		{"seal+open", nil, func() { sealOpen(t, aead, buf, nonce, 1) }},
	} {
		d.pkt = c.pkt
		if a := testing.AllocsPerRun(50, c.fn); a != 0 {
			t.Errorf("%s: %v allocations per batch, want 0", c.name, a)
		}
	}
	if d.f.inner.nsent == 0 {
		t.Fatal("nothing was sent")
	}
}
