package transport

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"
)

// wgNode is a WireGuard device over a Bind, with a channel TUN.
type wgNode struct {
	priv [32]byte
	pub  Key
	bind *Bind
	tun  *tuntest.ChannelTUN
	dev  *device.Device
	ip   netip.Addr
}

func startWGNode(t *testing.T, ip string) *wgNode {
	t.Helper()
	n := &wgNode{tun: tuntest.NewChannelTUN(), ip: netip.MustParseAddr(ip)}
	n.priv, n.pub = testKey(t)
	var err error
	n.bind, err = New(Config{PrivateKey: n.priv, Timing: fastTiming})
	if err != nil {
		t.Fatal(err)
	}
	n.dev = device.NewDevice(n.tun.TUN(), n.bind, device.NewLogger(device.LogLevelSilent, ""))
	n.dev.DisableSomeRoamingForBrokenMobileSemantics()
	if err := n.dev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=0\n", hex.EncodeToString(n.priv[:]))); err != nil {
		t.Fatal(err)
	}
	if err := n.dev.Up(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { n.bind.Run(ctx) })
	t.Cleanup(func() {
		n.dev.Close()
		cancel()
		wg.Wait()
	})
	return n
}

func (n *wgNode) addr() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), n.bind.Port())
}

// addPeer configures other as a peer reached at endpoint.
func (n *wgNode) addPeer(t *testing.T, other *wgNode, endpoint netip.AddrPort) {
	t.Helper()
	n.bind.SetPeers([]PeerConfig{{Key: other.pub, Name: "peer", Endpoints: []netip.AddrPort{endpoint}}})
	err := n.dev.IpcSet(fmt.Sprintf("public_key=%s\nendpoint=%s\nallowed_ip=%s/32\n", other.pub, other.pub, other.ip))
	if err != nil {
		t.Fatal(err)
	}
}

// TestReplayedDataDropped: a man in the middle duplicates every WireGuard
// data packet; each inner packet still reaches the TUN exactly once.
//
//	A (wireguard-go + Bind) --- gate (duplicates type-4 datagrams) --- B
func TestReplayedDataDropped(t *testing.T) {
	checkGoroutines(t)
	a := startWGNode(t, "198.18.0.1")
	b := startWGNode(t, "198.18.0.2")
	if a.bind.Port() == 0 || b.bind.Port() == 0 {
		t.Fatal("devices did not open their binds")
	}
	gate := newUDPGate(t, "127.0.0.1")
	gate.duplicate.Store(true)
	gate.start(t, a.addr(), b.addr())
	a.addPeer(t, b, gate.addr())
	b.addPeer(t, a, gate.addr())

	const n = 20
	for i := range n {
		select {
		case a.tun.Outbound <- tuntest.Ping(b.ip, a.ip):
		case <-time.After(5 * time.Second):
			t.Fatalf("TUN A did not take packet %d", i)
		}
	}
	got := 0
	timeout := time.After(15 * time.Second)
	for got < n {
		select {
		case <-b.tun.Inbound:
			got++
		case <-timeout:
			t.Fatalf("only %d of %d packets arrived within 15s", got, n)
		}
	}
	// Any replayed copy that got through would arrive right behind.
	select {
	case <-b.tun.Inbound:
		t.Fatalf("a replayed packet reached the TUN (%d duplicates sent)", gate.dups.Load())
	case <-time.After(500 * time.Millisecond):
	}
	if d := gate.dups.Load(); d < n {
		t.Fatalf("the gate duplicated only %d packets, want at least %d", d, n)
	}
	s := b.bind.Stats()
	if s.DataPacketsIn < 2*n {
		t.Errorf("B's Bind saw %d data packets, want at least %d (originals and replays)", s.DataPacketsIn, 2*n)
	}
	t.Logf("%d packets delivered once each; %d replays dropped by WireGuard", n, gate.dups.Load())
}
