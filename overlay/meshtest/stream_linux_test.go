package meshtest

// TestStreamMesh: a live stream published by Chromium on box a ("Go live"
// page, fake camera and microphone) is watched by Chromium on box c, two
// hops away, through a relay on b; when b stops, c re-attaches to a
// (reached through d) and its viewer keeps decoding.
//
//	                     ns sw: bridge br0 192.0.2.0/24
//	   a .1          b .2          c .3          d .4
//
//	UDP allowed (nftables in every box drops the rest of 192.0.2.0/24
//	but its own address):
//
//	   a ---- b ---- c
//	    \           /
//	     `-- d ----'
//
// Chromium runs in a's and c's namespaces and opens its own box's panel on
// http://127.0.0.1:8080 (a secure context, so the camera is allowed); c's
// may use only relays (its box's TURN server); a pion viewer in b's
// namespace makes b relay the stream.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/browsertest"
	"github.com/cloudbox/cloudbox/internal/netnstest"
	"github.com/cloudbox/cloudbox/internal/testenv"
	"github.com/cloudbox/cloudbox/stream/streamtest"
)

// streamsAPI is the part of GET /api/v1/streams the test reads.
type streamsAPI struct {
	Streams []struct {
		Name         string `json:"name"`
		Source       string `json:"source"`
		Relay        bool   `json:"relay"`
		UpstreamName string `json:"upstream_name"`
		Viewers      int    `json:"viewers"`
		Relays       int    `json:"relays"`
	} `json:"streams"`
	Live []struct {
		Name   string   `json:"name"`
		Box    string   `json:"box"`
		Relays []string `json:"relays"`
	} `json:"live"`
}

func (b *box) streams(t *testing.T) streamsAPI {
	t.Helper()
	var s streamsAPI
	if code, err := b.get("/api/v1/streams", &s); err != nil || code != 200 {
		t.Logf("GET /api/v1/streams on %s: %d %v", b.name, code, err)
	}
	return s
}

// mediaStats evaluates the frames decoded and audio packets received of
// the page's peer connection (window.cbPC of the panel's player).
const mediaStats = `(async () => {
  const out = {frames: 0, audio: 0};
  if (!window.cbPC) return out;
  (await window.cbPC.getStats()).forEach(r => {
    if (r.type === "inbound-rtp" && r.kind === "video") out.frames = r.framesDecoded || 0;
    if (r.type === "inbound-rtp" && r.kind === "audio") out.audio = r.packetsReceived || 0;
  });
  return out;
})()`

type stats struct{ Frames, Audio int }

func pageStats(t *testing.T, p *browsertest.Page) stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var s stats
	if err := p.Eval(ctx, mediaStats, &s); err != nil {
		t.Fatalf("getStats: %v", err)
	}
	return s
}

// growingStats waits until p's decoded frames grow by 30 and its audio
// packets by 30, and returns how long that took.
func growingStats(t *testing.T, p *browsertest.Page, what string, timeout time.Duration) time.Duration {
	t.Helper()
	start := pageStats(t, p)
	var last stats
	return netnstest.WaitFor(t, timeout, func() string {
		last = pageStats(t, p)
		if last.Frames < start.Frames+30 || last.Audio < start.Audio+30 {
			return fmt.Sprintf("%s: frames decoded %d -> %d, audio packets %d -> %d", what, start.Frames, last.Frames, start.Audio, last.Audio)
		}
		return ""
	})
}

// authPage opens a page that sends the administrator's API token with
// every request (no login form needed).
func authPage(t *testing.T, br *browsertest.Browser) *browsertest.Page {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := br.NewPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Call(ctx, "Network.enable", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Call(ctx, "Network.setExtraHTTPHeaders", map[string]any{"headers": map[string]string{"Authorization": "Bearer " + apiToken}}, nil); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStreamMesh(t *testing.T) {
	testenv.RequireCommand(t, "chromium", "chromium")
	bin, sw := prepare(t)
	a, b, c, d := newBox(t, bin, sw, "a", 1), newBox(t, bin, sw, "b", 2), newBox(t, bin, sw, "c", 3), newBox(t, bin, sw, "d", 4)
	links := map[*box][]*box{a: {b, d}, b: {a, c}, c: {b, d}, d: {a, c}}
	for x, ns := range links {
		ok := []string{x.addr.String()} // its own address: viewers on the box
		for _, y := range ns {
			ok = append(ok, y.addr.String())
		}
		nft(t, x.ns, fmt.Sprintf(`table ip links {
	chain in { type filter hook input priority 0; meta l4proto udp ip saddr 192.0.2.0/24 ip saddr != { %[1]s } drop; }
	chain out { type filter hook output priority 0; meta l4proto udp ip daddr 192.0.2.0/24 ip daddr != { %[1]s } drop; }
}`, strings.Join(ok, ", ")))
	}
	boxes := []*box{a, b, c, d}
	for _, x := range boxes {
		// The panel (and WHEP) on every address, so boxes reach each
		// other's over the overlay.
		x.args = []string{"--http", "0.0.0.0:8080"}
	}
	started := time.Now()
	community(t, bin, boxes, "192.0.2.1:51820")
	t.Logf("community of 4 up after %v", time.Since(started).Round(time.Millisecond))

	// a: Chromium goes live through the panel.
	brA := browsertest.StartWithFlags(t, browsertest.MediaFlags, "ip", "netns", "exec", a.ns.Name)
	pa := authPage(t, brA)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := pa.Navigate(ctx, "http://127.0.0.1:8080/streams/golive"); err != nil {
		t.Fatal(err)
	}
	if err := pa.Eval(ctx, `document.getElementById("stream-name").value = "assembly";
		document.getElementById("stream-description").value = "Neighbourhood assembly";
		document.getElementById("golive").click(); true`, nil); err != nil {
		t.Fatal(err)
	}
	if err := pa.WaitFor(ctx, 20*time.Second, `document.getElementById("stream-state").textContent === "connected"`); err != nil {
		var msg string
		pa.Eval(ctx, `document.getElementById("stream-error").textContent`, &msg)
		t.Fatalf("going live on a: %v (page says %q)", err, msg)
	}
	live := time.Now()
	t.Log("a is live")

	// b: a pion viewer in b's namespace; b pulls the stream from a.
	waitLive := func(x *box, cond func(streamsAPI) bool, what string) {
		t.Helper()
		netnstest.WaitFor(t, 40*time.Second, func() string {
			if s := x.streams(t); !cond(s) {
				j, _ := json.Marshal(s)
				return fmt.Sprintf("%s: %s: %s", x.name, what, j)
			}
			return ""
		})
	}
	waitLive(b, func(s streamsAPI) bool { return len(s.Live) == 1 && s.Live[0].Name == "assembly" }, "assembly of a not in Live now")
	t.Logf("b lists the stream %v after a went live", time.Since(live).Round(time.Millisecond))
	var conn net.PacketConn
	if err := inNetNS("/run/netns/"+b.ns.Name, func() (err error) {
		conn, err = net.ListenPacket("udp4", b.addr.String()+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	vb, err := streamtest.Play(ctx, "http://"+apiAddr+"/api/v1/streams/assembly/whep",
		streamtest.Options{Client: b.client, UDPConn: conn})
	if err != nil {
		conn.Close()
		t.Fatalf("pion viewer on b: %v", err)
	}
	defer vb.Close()
	if err := streamtest.WaitFor(10*time.Second, func() bool { return vb.VideoPackets.Load() > 100 && vb.AudioPackets.Load() > 50 }); err != nil {
		t.Fatalf("pion viewer on b: %d video, %d audio packets", vb.VideoPackets.Load(), vb.AudioPackets.Load())
	}
	// The founder's roster name is the host's: compare with c's view.
	upA := ""
	if s := b.streams(t); len(s.Streams) != 1 || !s.Streams[0].Relay || s.Streams[0].UpstreamName == "" {
		t.Fatalf("b's streams: %+v, want a relay from a", s.Streams)
	} else {
		upA = s.Streams[0].UpstreamName
	}

	// c: Chromium watches; c pulls from b, nearer than a.
	waitLive(c, func(s streamsAPI) bool { return len(s.Live) == 1 && slices.Contains(s.Live[0].Relays, "b") }, "no relay on b in Live now")
	waitPath(t, c, "b", 20*time.Second, func(p peer) string {
		if !p.Direct || p.RTTMs == nil {
			return "want a direct path with a known RTT"
		}
		return ""
	})
	brC := browsertest.StartWithFlags(t, browsertest.MediaFlags, "ip", "netns", "exec", c.ns.Name)
	pc := authPage(t, brC)
	opened := time.Now()
	// relay=1: c's browser may use only relays, through c's own TURN
	// server.
	if err := pc.Navigate(ctx, "http://127.0.0.1:8080/streams/watch?name=assembly&relay=1"); err != nil {
		t.Fatal(err)
	}
	if err := pc.WaitFor(ctx, 20*time.Second, `document.getElementById("stream-state").textContent === "connected"`); err != nil {
		var msg string
		pc.Eval(ctx, `document.getElementById("stream-error").textContent`, &msg)
		t.Fatalf("watching on c: %v (page says %q)", err, msg)
	}
	netnstest.WaitFor(t, 10*time.Second, func() string {
		if s := pageStats(t, pc); s.Frames == 0 {
			return "no frame decoded on c"
		}
		return ""
	})
	t.Logf("c decodes its first frame %v after opening the player", time.Since(opened).Round(time.Millisecond))
	growingStats(t, pc, "c before b stops", 20*time.Second)
	var localType string
	if err := pc.Eval(ctx, `(async () => {
		const s = await window.cbPC.getStats(); let pair, type = "";
		s.forEach(r => { if (r.type === "transport" && r.selectedCandidatePairId) pair = s.get(r.selectedCandidatePairId); });
		if (pair) { const l = s.get(pair.localCandidateId); if (l) type = l.candidateType; }
		return type; })()`, &localType); err != nil || localType != "relay" {
		t.Errorf("c's browser uses a %q candidate (%v), want relay (TURN)", localType, err)
	}
	if s := c.streams(t); len(s.Streams) != 1 || s.Streams[0].UpstreamName != "b" {
		t.Fatalf("c's streams: %+v, want a relay from b", s.Streams)
	}
	t.Logf("c: %+v", pageStats(t, pc))

	// b stops: c re-attaches to a, through d.
	stopped := time.Now()
	vb.Close()
	b.stop(t)
	took := growingStats(t, pc, "c after b stopped", 30*time.Second)
	t.Logf("c's viewer decodes again %v after b stopped", time.Since(stopped).Round(time.Millisecond))
	if s := c.streams(t); len(s.Streams) != 1 || s.Streams[0].UpstreamName != upA {
		t.Fatalf("c's streams after b stopped: %+v, want a relay from a", s.Streams)
	}
	if took > 15*time.Second {
		t.Errorf("recovery took %v, want under 15 s", took)
	}
}
