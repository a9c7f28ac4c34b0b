package transport

import (
	"bytes"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
)

// TestReceiveSkipsConsumedBatches: a batch whose packets the Bind consumes
// whole (here relay forwards from a to b, as a relay of a multi-hop path
// sees them) is not handed to WireGuard as an empty batch, which
// conn.ReceiveFunc forbids ("receives at least one packet") and whose
// sizes would be left from the call before. The forwarded packets leave at
// once and are not counted in the inbound Gate; the data packet that
// follows is.
func TestReceiveSkipsConsumedBatches(t *testing.T) {
	d := newDataPath(t, nil)
	fwd := envelope(TypeRelayFwd, d.f.b, wireGuardPacket(benchPacket, 0xBB))
	data := wireGuardPacket(benchPacket, 0xAA)
	reads := 0
	d.recv.fn = func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		reads++
		if reads == 1 {
			for i := range bufs {
				sizes[i] = copy(bufs[i], fwd)
				eps[i] = d.f.aEP
			}
			return len(bufs), nil
		}
		sizes[0] = copy(bufs[0], data)
		eps[0] = d.f.aEP
		return 1, nil
	}
	for i := range d.sizes {
		d.sizes[i] = len(fwd) // what a previous call might have left
	}
	n, err := d.recv.receive(d.bufs, d.sizes, d.eps)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || !bytes.Equal(d.bufs[0][:d.sizes[0]], data) || d.eps[0] != d.f.aEP {
		t.Fatalf("receive returned %d packets, the first %d bytes from %v; want the data packet from a", n, d.sizes[0], d.eps[0])
	}
	if reads != 2 {
		t.Fatalf("receive read %d inner batches, want 2", reads)
	}
	batch := uint64(d.f.bind.inner.BatchSize())
	if s := d.f.bind.Stats(); s.RelayForwardedPackets != batch || d.f.inner.nsent != int(batch) {
		t.Fatalf("forwarded %d packets (%d sent), want %d", s.RelayForwardedPackets, d.f.inner.nsent, batch)
	}
	if got := d.f.bind.Inbound().InFlight(); got != 1 {
		t.Fatalf("inbound Gate counts %d packets, want 1 (forwarded packets never reach WireGuard)", got)
	}
}
