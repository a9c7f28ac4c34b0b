package appliance

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/services"
	"github.com/google/go-cmp/cmp"
)

// upRecord is gwRecord with the uplink TXT.
func upRecord(name, addr string, up string) services.Record {
	r := gwRecord(gatewayHTTPType, name, addr, 3128, true)
	r.TXT = map[string]string{"load": "idle", "up": up}
	return r
}

func TestOrderGatewaysUplink(t *testing.T) {
	recs := []services.Record{
		upRecord("cut", "198.18.0.2", "0"), // nearest, but its uplink is down
		upRecord("far", "198.18.0.3", "1"),
		gwRecord(gatewayHTTPType, "old", "198.18.0.4", 3128, true), // no "up": an older box
		gwRecord(gatewayHTTPType, "sick", "198.18.0.5", 3128, false),
	}
	rtts := map[string]time.Duration{"cut-id": time.Millisecond, "far-id": 9 * time.Millisecond, "old-id": 5 * time.Millisecond}
	var got []string
	for _, e := range orderGateways(recs, nil, "b1-id", rtts, nil) {
		got = append(got, e.Box)
	}
	if diff := cmp.Diff([]string{"old", "far", "cut", "sick"}, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

// listenLoopback returns a listener that accepts and closes connections.
func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln
}

// TestGatewayUplinkProbe runs a gateway whose probe is a loopback
// listener: while it answers the catalog entry says up=1 and the PAC file
// names the box's own gateway first; when it stops, up=0 and the own
// gateway goes after the other healthy ones. No access log is written
// unless asked for.
func TestGatewayUplinkProbe(t *testing.T) {
	h, _ := newTestHandler(t, "b1")
	probe := listenLoopback(t)
	defer probe.Close()
	var recs atomic.Pointer[[]services.Record]
	recs.Store(&[]services.Record{upRecord("gw2", "198.18.0.2", "1")})
	logDir := filepath.Join(t.TempDir(), "gateway")
	g := testGatewayCfg(t, h, &recs, GatewayConfig{Enabled: true, HTTPAddr: "127.0.0.1:0", NoSOCKS: true,
		Probes: []string{probe.Addr().String()}, ProbeEvery: 20 * time.Millisecond}, logDir)
	runGateway(t, g)
	waitUp := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			svcs := g.builtinServices()
			if len(svcs) == 1 && svcs[0].TXT["up"] == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("catalog entry %+v, want TXT up=%s within 5s", svcs, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	pac := func() string {
		t.Helper()
		b, err := g.pac(netip.MustParseAddr("192.0.2.1"))
		m := pacRoute.FindSubmatch(b)
		if err != nil || m == nil {
			t.Fatalf("pac = %s, %v", b, err)
		}
		return string(m[1])
	}
	waitUp("1")
	port := g.view().HTTPPort
	self := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), port).String()
	if got, want := pac(), "PROXY "+self+"; PROXY 198.18.0.2:3128; DIRECT"; got != want {
		t.Errorf("with uplink the PAC routes %q, want %q", got, want)
	}
	if v := g.view(); v.Uplink != "up" || len(v.AccessLog) != 0 {
		t.Errorf("view: uplink %q, access log %v; want up and none", v.Uplink, v.AccessLog)
	}

	probe.Close() // the uplink "fails"
	waitUp("0")
	if got, want := pac(), "PROXY 198.18.0.2:3128; PROXY "+self+"; DIRECT"; got != want {
		t.Errorf("without uplink the PAC routes %q, want %q", got, want)
	}
	if v := g.view(); v.Uplink != "down" {
		t.Errorf("view: uplink %q, want down", v.Uplink)
	}
	// Another gateway that lost its uplink goes after this box's.
	recs.Store(&[]services.Record{upRecord("gw2", "198.18.0.2", "0"), upRecord("gw3", "198.18.0.3", "1")})
	g.mu.Lock()
	g.order = nil
	g.mu.Unlock()
	if got, want := pac(), "PROXY 198.18.0.3:3128; PROXY "+self+"; PROXY 198.18.0.2:3128; DIRECT"; got != want {
		t.Errorf("PAC routes %q, want %q", got, want)
	}
	if _, err := os.Stat(logDir); !os.IsNotExist(err) {
		t.Errorf("an access log directory exists without --gateway-log: %v", err)
	}
}
