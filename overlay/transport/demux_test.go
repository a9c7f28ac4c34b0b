package transport

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/cloudbox/cloudbox/overlay/disco"
	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/conn"
)

// demuxFixture is box R with peers A (192.0.2.1), B (192.0.2.2) and C (no
// endpoint, so no path), driven by calling demux directly.
type demuxFixture struct {
	r, a, b, c         Key
	aPriv, bPriv       [32]byte
	bind               *Bind
	inner              *fakeInner
	recv               *receiver
	addrA, addrB       netip.AddrPort
	stranger           netip.AddrPort
	aEP, bEP, strEP    conn.Endpoint
	sharedAR, sharedBR disco.SharedKey
}

func newDemuxFixture(t testing.TB) *demuxFixture {
	f := &demuxFixture{
		addrA:    netip.MustParseAddrPort("192.0.2.1:51820"),
		addrB:    netip.MustParseAddrPort("192.0.2.2:51820"),
		stranger: netip.MustParseAddrPort("203.0.113.66:51820"),
	}
	rPriv, r := testKey(t)
	f.r = r
	f.aPriv, f.a = testKey(t)
	f.bPriv, f.b = testKey(t)
	_, f.c = testKey(t)
	f.inner = newFakeInner(true)
	var err error
	f.bind, err = New(Config{PrivateKey: rPriv, Inner: f.inner})
	if err != nil {
		t.Fatal(err)
	}
	f.bind.SetPeers([]PeerConfig{
		{Key: f.a, Name: "a", Endpoints: []netip.AddrPort{f.addrA}},
		{Key: f.b, Name: "b", Endpoints: []netip.AddrPort{f.addrB}},
		{Key: f.c, Name: "c"},
	})
	f.recv = &receiver{b: f.bind, fwd: make([][]byte, 0, conn.IdealBatchSize)}
	f.aEP = &conn.StdNetEndpoint{AddrPort: f.addrA}
	f.bEP = &conn.StdNetEndpoint{AddrPort: f.addrB}
	f.strEP = &conn.StdNetEndpoint{AddrPort: f.stranger}
	rk := [32]byte(r)
	f.sharedAR = disco.Shared(&rk, &f.aPriv)
	f.sharedBR = disco.Shared(&rk, &f.bPriv)
	return f
}

// discoFrom seals m from sender (with the key shared with R).
func discoFrom(t testing.TB, sender Key, k *disco.SharedKey, m disco.Message) []byte {
	pkt := appendHeader(nil, TypeDisco, sender)
	pkt, err := disco.Seal(pkt, m, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	return pkt
}

func envelope(typ byte, k Key, inner []byte) []byte {
	return append(appendHeader(nil, typ, k), inner...)
}

// hopEnvelope returns a relay-hop packet from src to dst with left hops.
func hopEnvelope(left byte, src, dst Key, inner []byte) []byte {
	pkt := envelope(TypeRelayHop, Key{}, inner)
	putHop(pkt, left, src, dst)
	return pkt
}

// newHopFixture is the demux fixture with two more peers that R reaches
// only through B: C over a confirmed relay path (its route set by hand),
// D over an unconfirmed one.
func newHopFixture(t testing.TB) (f *demuxFixture, c, d Key) {
	t.Helper()
	f = newDemuxFixture(t)
	_, d = testKey(t)
	f.bind.SetPeers([]PeerConfig{
		{Key: f.a, Name: "a", Endpoints: []netip.AddrPort{f.addrA}},
		{Key: f.b, Name: "b", Endpoints: []netip.AddrPort{f.addrB}},
		{Key: f.c, Name: "c"},
		{Key: d, Name: "d"},
	})
	tbl := f.bind.table.Load()
	tbl.byKey[f.c].route.Store(&choice{kind: choiceRelay, via: f.b, confirmed: true})
	tbl.byKey[d].route.Store(&choice{kind: choiceRelay, via: f.b})
	return f, f.c, d
}

// run passes one packet from ep through demux and returns what WireGuard
// would get (nil if consumed) and the endpoint.
func (f *demuxFixture) run(pkt []byte, ep conn.Endpoint) ([]byte, conn.Endpoint) {
	buf := make([]byte, 65535)
	n := copy(buf, pkt)
	bufs, sizes, eps := [][]byte{buf}, []int{n}, []conn.Endpoint{ep}
	f.bind.demux(f.recv, bufs, sizes, eps)
	if sizes[0] == 0 {
		return nil, nil
	}
	return buf[:sizes[0]], eps[0]
}

func TestDemux(t *testing.T) {
	f := newDemuxFixture(t)
	wg := wireGuardPacket(100, 0xAA)
	ping := &disco.Ping{TxID: disco.TxID{7}}
	tampered := discoFrom(t, f.a, &f.sharedAR, ping)
	tampered[len(tampered)-3] ^= 1

	for _, tt := range []struct {
		name      string
		pkt       []byte
		from      conn.Endpoint
		deliver   []byte       // what WireGuard gets, nil if consumed
		deliverEP Key          // non-zero: delivered with this peer's Endpoint
		forwarded []sentPacket // what R sends on
		stats     Stats        // counters that must have moved (others ignored)
	}{
		{
			name: "wireguard-passes-unchanged", pkt: wg, from: f.aEP, deliver: wg,
			stats: Stats{WireGuardPacketsIn: 1, WireGuardBytesIn: 100, DataPacketsIn: 1},
		},
		{
			name: "wireguard-keepalive", pkt: wireGuardPacket(32, 0), from: f.strEP, deliver: wireGuardPacket(32, 0),
			stats: Stats{WireGuardPacketsIn: 1, WireGuardBytesIn: 32},
		},
		{name: "empty-ish", pkt: []byte{1, 0, 0, 0}, from: f.aEP, stats: Stats{DropMalformed: 1}},
		{name: "bad-type", pkt: append([]byte{9, 0, 0, 0}, wg[4:]...), from: f.aEP, stats: Stats{DropMalformed: 1}},
		{name: "magic-unknown-type", pkt: envelope(0x7f, f.b, wg), from: f.aEP, stats: Stats{DropMalformed: 1}},
		{name: "relay-of-garbage", pkt: envelope(TypeRelayFwd, f.b, []byte("not wireguard at all, just bytes")), from: f.aEP, stats: Stats{DropMalformed: 1}},
		{
			name: "relay-forward-rewritten-in-place", pkt: envelope(TypeRelayFwd, f.b, wg), from: f.aEP,
			forwarded: []sentPacket{{pkt: envelope(TypeRelayed, f.a, wg), to: f.addrB}},
			stats:     Stats{RelayForwardedPackets: 1, RelayForwardedBytes: uint64(HeaderLen + len(wg))},
		},
		{name: "relay-forward-from-stranger", pkt: envelope(TypeRelayFwd, f.b, wg), from: f.strEP, stats: Stats{DropRelayNotAllowed: 1}},
		{name: "relay-forward-to-stranger", pkt: envelope(TypeRelayFwd, Key{9}, wg), from: f.aEP, stats: Stats{DropUnknownPeer: 1}},
		{name: "relay-forward-to-self-sender", pkt: envelope(TypeRelayFwd, f.a, wg), from: f.aEP, stats: Stats{DropRelayNotAllowed: 1}},
		{name: "relay-forward-without-path", pkt: envelope(TypeRelayFwd, f.c, wg), from: f.aEP, stats: Stats{DropRelayNoPath: 1}},
		{
			name: "relayed-wireguard-unwrapped", pkt: envelope(TypeRelayed, f.b, wg), from: f.aEP,
			deliver: wg, deliverEP: f.b,
			stats: Stats{WireGuardPacketsIn: 1, WireGuardBytesIn: 100, DataPacketsIn: 1, RelayedPacketsIn: 1},
		},
		{name: "relayed-from-stranger", pkt: envelope(TypeRelayed, f.b, wg), from: f.strEP, stats: Stats{DropRelayNotAllowed: 1}},
		{name: "relayed-unknown-source", pkt: envelope(TypeRelayed, Key{9}, wg), from: f.aEP, stats: Stats{DropUnknownPeer: 1}},
		{name: "relayed-claims-relay-itself", pkt: envelope(TypeRelayed, f.a, wg), from: f.aEP, stats: Stats{DropUnknownPeer: 1}},
		{
			name: "relayed-disco-from-other-sender", pkt: envelope(TypeRelayed, f.b, discoFrom(t, f.a, &f.sharedAR, ping)), from: f.aEP,
			stats: Stats{DropMalformed: 1},
		},
		{
			// A's path is not confirmed yet, so R pings back at once.
			name: "disco-ping-answered-and-pinged-back", pkt: discoFrom(t, f.a, &f.sharedAR, ping), from: f.aEP,
			stats: Stats{DiscoIn: 1, DiscoOut: 2},
		},
		{name: "disco-tampered", pkt: tampered, from: f.aEP, stats: Stats{DropDiscoAuth: 1}},
		{
			name: "disco-wrong-key", pkt: discoFrom(t, f.b, &f.sharedAR, ping), from: f.aEP,
			stats: Stats{DropDiscoAuth: 1},
		},
		{name: "disco-unknown-sender", pkt: discoFrom(t, Key{9}, &f.sharedAR, ping), from: f.aEP, stats: Stats{DropUnknownPeer: 1}},
		{name: "disco-truncated", pkt: discoFrom(t, f.a, &f.sharedAR, ping)[:minDiscoLen-1], from: f.aEP, stats: Stats{DropMalformed: 1}},
		{
			name: "disco-unsolicited-pong", pkt: discoFrom(t, f.a, &f.sharedAR, &disco.Pong{TxID: disco.TxID{1}}), from: f.aEP,
			stats: Stats{DiscoIn: 1, DropDiscoUnsolicited: 1},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := f.bind.Stats()
			f.inner.take()
			got, ep := f.run(tt.pkt, tt.from)
			if !bytes.Equal(got, tt.deliver) {
				t.Errorf("delivered %x, want %x", got, tt.deliver)
			}
			if !tt.deliverEP.IsZero() {
				if e, ok := ep.(*Endpoint); !ok || e.Key() != tt.deliverEP {
					t.Errorf("delivered with endpoint %v, want peer %v", ep, tt.deliverEP.ShortString())
				}
			} else if got != nil && ep != tt.from {
				t.Errorf("delivered with endpoint %v, want the inner one", ep)
			}
			sent := f.inner.take()
			if tt.forwarded != nil {
				if diff := cmp.Diff(tt.forwarded, sent, cmp.AllowUnexported(sentPacket{}), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
					t.Errorf("forwarded (-want +got):\n%s", diff)
				}
			}
			if diff := cmp.Diff(tt.stats, delta(before, f.bind.Stats(), tt.stats)); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDemuxRelayHop checks multi-hop relaying at R, which reaches A and B
// directly and C and D only through B.
func TestDemuxRelayHop(t *testing.T) {
	f, c, d := newHopFixture(t)
	wg := wireGuardPacket(100, 0xAA)
	n := uint64(HeaderLen + len(wg))
	for _, tt := range []struct {
		name      string
		pkt       []byte
		from      conn.Endpoint
		forwarded []sentPacket
		stats     Stats
	}{
		{
			name: "forward-becomes-hop", pkt: envelope(TypeRelayFwd, c, wg), from: f.aEP,
			forwarded: []sentPacket{{pkt: hopEnvelope(MaxRelays-2, f.a, c, wg), to: f.addrB}},
			stats:     Stats{RelayForwardedPackets: 1, RelayForwardedBytes: n},
		},
		{
			name: "hop-delivered-as-relayed", pkt: hopEnvelope(0, c, f.a, wg), from: f.bEP,
			forwarded: []sentPacket{{pkt: envelope(TypeRelayed, c, wg), to: f.addrA}},
			stats:     Stats{RelayForwardedPackets: 1, RelayForwardedBytes: n},
		},
		{
			name: "hop-passed-on-one-less", pkt: hopEnvelope(1, d, c, wg), from: f.aEP,
			forwarded: []sentPacket{{pkt: hopEnvelope(0, d, c, wg), to: f.addrB}},
			stats:     Stats{RelayForwardedPackets: 1, RelayForwardedBytes: n},
		},
		{name: "hop-none-left", pkt: hopEnvelope(0, d, c, wg), from: f.aEP, stats: Stats{DropRelayNoPath: 1}},
		{name: "hop-not-back-to-sender", pkt: hopEnvelope(1, f.a, c, wg), from: f.bEP, stats: Stats{DropRelayNoPath: 1}},
		{name: "forward-not-back-to-sender", pkt: envelope(TypeRelayFwd, c, wg), from: f.bEP, stats: Stats{DropRelayNoPath: 1}},
		{name: "forward-over-unconfirmed-relay", pkt: envelope(TypeRelayFwd, d, wg), from: f.aEP, stats: Stats{DropRelayNoPath: 1}},
		{name: "hop-not-to-source", pkt: hopEnvelope(1, f.b, c, wg), from: f.aEP, stats: Stats{DropRelayNoPath: 1}},
		{name: "hop-from-source", pkt: hopEnvelope(1, f.a, c, wg), from: f.aEP, stats: Stats{DropRelayNotAllowed: 1}},
		{name: "hop-to-sender", pkt: hopEnvelope(1, d, f.a, wg), from: f.aEP, stats: Stats{DropRelayNotAllowed: 1}},
		{name: "hop-to-source", pkt: hopEnvelope(1, d, d, wg), from: f.aEP, stats: Stats{DropRelayNotAllowed: 1}},
		{name: "hop-from-stranger", pkt: hopEnvelope(1, d, c, wg), from: f.strEP, stats: Stats{DropRelayNotAllowed: 1}},
		{name: "hop-unknown-source", pkt: hopEnvelope(1, Key{9}, c, wg), from: f.aEP, stats: Stats{DropUnknownPeer: 1}},
		{name: "hop-back-at-source", pkt: hopEnvelope(1, f.r, c, wg), from: f.aEP, stats: Stats{DropUnknownPeer: 1}},
		{name: "hop-too-many-left", pkt: hopEnvelope(MaxRelays-1, d, c, wg), from: f.aEP, stats: Stats{DropMalformed: 1}},
		{name: "hop-reserved-set", pkt: func() []byte { p := hopEnvelope(1, d, c, wg); p[hopReserved] = 1; return p }(), from: f.aEP, stats: Stats{DropMalformed: 1}},
		{name: "hop-of-garbage", pkt: hopEnvelope(1, d, c, []byte("not wireguard at all, just bytes")), from: f.aEP, stats: Stats{DropMalformed: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := f.bind.Stats()
			f.inner.take()
			if got, _ := f.run(tt.pkt, tt.from); got != nil {
				t.Errorf("delivered %x to WireGuard", got)
			}
			sent := f.inner.take()
			if diff := cmp.Diff(tt.forwarded, sent, cmp.AllowUnexported(sentPacket{}), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("forwarded (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.stats, delta(before, f.bind.Stats(), tt.stats)); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
		})
	}
	// Two peers whose IDs collide are relayed for by neither.
	var twin Key
	copy(twin[:IDLen], c[:IDLen])
	twin[31] = ^c[31]
	peers := []PeerConfig{{Key: f.a, Endpoints: []netip.AddrPort{f.addrA}}, {Key: f.b, Endpoints: []netip.AddrPort{f.addrB}}, {Key: c}, {Key: twin}}
	f.bind.SetPeers(peers)
	tbl := f.bind.table.Load()
	tbl.byKey[c].route.Store(&choice{kind: choiceRelay, via: f.b, confirmed: true})
	before := f.bind.Stats()
	f.run(hopEnvelope(1, f.a, c, wireGuardPacket(100, 1)), f.bEP)
	if got := delta(before, f.bind.Stats(), Stats{}); got.DropUnknownPeer != 1 {
		t.Errorf("hop to a colliding ID: counters %+v, want one unknown peer", got)
	}
}

// delta returns after-before for every counter; counters that the test
// does not name and that did not move stay zero, so any unexpected count
// shows up in the diff. Send-side counters of answers are ignored.
func delta(before, after, want Stats) Stats {
	d := Stats{
		WireGuardPacketsIn:    after.WireGuardPacketsIn - before.WireGuardPacketsIn,
		WireGuardBytesIn:      after.WireGuardBytesIn - before.WireGuardBytesIn,
		DataPacketsIn:         after.DataPacketsIn - before.DataPacketsIn,
		HandshakesIn:          after.HandshakesIn - before.HandshakesIn,
		RelayedPacketsIn:      after.RelayedPacketsIn - before.RelayedPacketsIn,
		RelayForwardedPackets: after.RelayForwardedPackets - before.RelayForwardedPackets,
		RelayForwardedBytes:   after.RelayForwardedBytes - before.RelayForwardedBytes,
		DiscoIn:               after.DiscoIn - before.DiscoIn,
		DiscoOut:              after.DiscoOut - before.DiscoOut,
		DropMalformed:         after.DropMalformed - before.DropMalformed,
		DropUnknownPeer:       after.DropUnknownPeer - before.DropUnknownPeer,
		DropRelayNotAllowed:   after.DropRelayNotAllowed - before.DropRelayNotAllowed,
		DropRelayNoPath:       after.DropRelayNoPath - before.DropRelayNoPath,
		DropDiscoAuth:         after.DropDiscoAuth - before.DropDiscoAuth,
		DropDiscoUnsolicited:  after.DropDiscoUnsolicited - before.DropDiscoUnsolicited,
	}
	if want.DiscoOut == 0 {
		d.DiscoOut = 0
	}
	return d
}

// FuzzParsePacket feeds arbitrary datagrams, from a peer's address and from
// a stranger's, through the receive path of a relay box.
func FuzzParsePacket(f *testing.F) {
	fx, c, d := newHopFixture(f)
	wg := wireGuardPacket(100, 0xAA)
	ping := discoFrom(f, fx.a, &fx.sharedAR, &disco.Ping{})
	for _, seed := range [][]byte{
		wg,
		wireGuardPacket(32, 0),
		{1, 0, 0, 0},
		envelope(TypeRelayFwd, fx.b, wg),
		envelope(TypeRelayFwd, fx.c, wg),
		envelope(TypeRelayed, fx.b, wg),
		envelope(TypeRelayed, fx.b, ping),
		envelope(TypeRelayFwd, fx.b, ping),
		envelope(0x7f, fx.b, wg),
		envelope(TypeRelayFwd, c, wg),
		hopEnvelope(1, d, c, wg),
		hopEnvelope(0, c, fx.a, ping),
		ping,
		ping[:minDiscoLen],
		discoFrom(f, fx.a, &fx.sharedAR, &disco.CallMeMaybe{Endpoints: []netip.AddrPort{netip.MustParseAddrPort("198.51.100.1:1")}}),
	} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	f.Fuzz(func(t *testing.T, pkt []byte, fromPeer bool) {
		from := fx.strEP
		if fromPeer {
			from = fx.aEP
		}
		before := fx.bind.Stats()
		fx.inner.take()
		got, _ := fx.run(pkt, from)
		if got != nil && !isWireGuard(got) {
			t.Fatalf("delivered a non-WireGuard packet %x", got)
		}
		for _, s := range fx.inner.take() {
			if k := classify(s.pkt); k != kindRelayed && k != kindDisco && k != kindRelayHop {
				t.Fatalf("sent a %v packet %x", k, s.pkt)
			}
		}
		after := fx.bind.Stats()
		accounted := (after.WireGuardPacketsIn - before.WireGuardPacketsIn) +
			(after.DropMalformed - before.DropMalformed) +
			(after.DropUnknownPeer - before.DropUnknownPeer) +
			(after.DropRelayNotAllowed - before.DropRelayNotAllowed) +
			(after.DropRelayNoPath - before.DropRelayNoPath) +
			(after.DropDiscoAuth - before.DropDiscoAuth) +
			(after.RelayForwardedPackets - before.RelayForwardedPackets) +
			(after.DiscoIn - before.DiscoIn)
		if len(pkt) > 0 && accounted != 1 {
			t.Fatalf("packet %x counted %d times, want once", pkt, accounted)
		}
	})
}

// BenchmarkRelayForward measures the relay's work per forwarded packet: a
// full batch of 1400-byte relay envelopes from A to B, rewritten in place
// and handed to the (fake) socket.
func BenchmarkRelayForward(b *testing.B) {
	f := newDemuxFixture(b)
	f.inner.record = false
	wg := wireGuardPacket(1400, 0xAA)
	pkt := envelope(TypeRelayFwd, f.b, wg)
	const batch = conn.IdealBatchSize
	bufs := make([][]byte, batch)
	sizes := make([]int, batch)
	eps := make([]conn.Endpoint, batch)
	for i := range bufs {
		bufs[i] = make([]byte, 65535)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)) * batch)
	for b.Loop() {
		for i := range bufs {
			// The rewrite happens in place; restore the request.
			sizes[i] = copy(bufs[i], pkt)
			eps[i] = f.aEP
		}
		f.bind.demux(f.recv, bufs, sizes, eps)
	}
	if f.inner.nsent == 0 {
		b.Fatal("nothing forwarded")
	}
	b.ReportMetric(float64(testing.AllocsPerRun(10, func() {
		for i := range bufs {
			sizes[i] = copy(bufs[i], pkt)
		}
		f.bind.demux(f.recv, bufs, sizes, eps)
	}))/batch, "allocs/packet")
}

// TestRelayForwardAllocs is the allocation budget of the relay path: zero.
func TestRelayForwardAllocs(t *testing.T) {
	f := newDemuxFixture(t)
	f.inner.record = false
	pkt := envelope(TypeRelayFwd, f.b, wireGuardPacket(1400, 0xAA))
	bufs := [][]byte{make([]byte, 65535), make([]byte, 65535)}
	sizes := make([]int, 2)
	eps := []conn.Endpoint{f.aEP, f.aEP}
	allocs := testing.AllocsPerRun(100, func() {
		for i := range bufs {
			sizes[i] = copy(bufs[i], pkt)
		}
		f.bind.demux(f.recv, bufs, sizes, eps)
	})
	if allocs != 0 {
		t.Errorf("relay forwarding allocates %v times per batch, budget 0", allocs)
	}
}

// TestSendAllocs is the allocation budget of sending: zero on direct and
// relayed paths (the inner Bind's own allocations aside).
func TestSendAllocs(t *testing.T) {
	f := newDemuxFixture(t)
	f.inner.record = false
	bufs := [][]byte{wireGuardPacket(1400, 1), wireGuardPacket(1400, 2)}
	for _, k := range []Key{f.a} {
		ep, err := f.bind.ParseEndpoint(k.String())
		if err != nil {
			t.Fatal(err)
		}
		if allocs := testing.AllocsPerRun(100, func() { f.bind.Send(bufs, ep) }); allocs != 0 {
			t.Errorf("direct Send allocates %v times, budget 0", allocs)
		}
	}
	// Force a relayed route to C via A.
	f.bind.mu.Lock()
	c := f.bind.table.Load().byKey[f.c]
	c.route.Store(&choice{kind: choiceRelay, via: f.a})
	f.bind.mu.Unlock()
	if allocs := testing.AllocsPerRun(100, func() { f.bind.Send(bufs, c.ep) }); allocs != 0 {
		t.Errorf("relayed Send allocates %v times, budget 0", allocs)
	}
}
