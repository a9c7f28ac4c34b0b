//go:build !router

package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/browsertest"
	"github.com/cloudbox/cloudbox/internal/netnstest"
	"github.com/cloudbox/cloudbox/internal/sipptest"
	"github.com/cloudbox/cloudbox/internal/testenv"
)

// inboundPackets counts the RTP packets the page's call received.
const inboundPackets = `(async () => { const pc = window.cbPhone && window.cbPhone.pc; if (!pc) return 0;
  let n = 0; (await pc.getStats()).forEach(r => { if (r.type === 'inbound-rtp') n += r.packetsReceived; }); return n; })()`

func freeUDPPort(t *testing.T) int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestSoftphoneBrowser: headless Chromium logs in to the panel as alice,
// opens the Calls page and calls a SIP phone (sipp UAS) registered with
// the box; then the phone (sipp UAC) calls alice, the page answers. Audio
// flows both ways through the bridge (PCMU) and the relay each time, and
// hang-ups end both legs.
//
//	chromium ──WebRTC (ICE 127.0.0.1)──► bridge ──SIP/RTP──► proxy+relay 127.0.0.1 ──► sipp
func TestSoftphoneBrowser(t *testing.T) {
	testenv.RequireCommand(t, "sipp", "sip-tester")
	const pw = "a long enough password"
	base, api := voipDaemon(t, pw)
	var info CallsInfo
	api("/api/v1/calls", &info)
	var alice, bob PhoneInfo
	api("/api/v1/calls/phone?account=alice", &alice)
	api("/api/v1/calls/phone?account=bob", &bob)
	sipAddr := info.SIP

	b := browsertest.Start(t)
	p, err := b.NewPage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Navigate(t.Context(), base+"/login?next=/calls"); err != nil {
		t.Fatal(err)
	}
	if err := p.Do(t.Context(), fmt.Sprintf(`document.querySelector("#username").value = "alice"; document.querySelector("#password").value = %q; document.querySelector("button[type=submit]").click()`, pw)); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor(t.Context(), 10*time.Second, `location.pathname === "/calls" && window.cbPhone && window.cbPhone.ready`); err != nil {
		t.Fatalf("the Calls page did not open alice's line: %v", err)
	}
	if err := p.Eval(t.Context(), browsertest.FakeCameraAndMicrophone, nil); err != nil {
		t.Fatal(err)
	}

	// 1. The browser calls bob's SIP phone.
	sctx, scancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer scancel()
	tone := sipptest.Tone(t, 4)
	uport, rport, mport := freeUDPPort(t), freeUDPPort(t), freeUDPPort(t)&^1
	sipptest.Start(t, sctx, nil, "register.xml", map[string]string{"user": bob.User, "cport": strconv.Itoa(uport), "domain": "cloudbox"},
		sipAddr, "-i", "127.0.0.1", "-p", strconv.Itoa(rport), "-au", bob.User, "-ap", bob.Password, "-m", "1", "-timeout", "10s").Wait(t, 15*time.Second)
	uas := sipptest.Start(t, sctx, nil, "uas.xml", map[string]string{"tone": tone},
		"-i", "127.0.0.1", "-p", strconv.Itoa(uport), "-mi", "127.0.0.1", "-mp", strconv.Itoa(mport), "-m", "1", "-timeout", "50s")
	if err := p.Eval(t.Context(), fmt.Sprintf(`document.querySelector("#phone-to").value = %q; true`, bob.Extension), nil); err != nil {
		t.Fatal(err)
	}
	click(t, p, "#phone-call")
	if err := p.WaitFor(t.Context(), 15*time.Second, `window.cbPhone.answered === 1`); err != nil {
		var st string
		_ = p.Eval(t.Context(), `JSON.stringify(window.cbPhone)`, &st)
		t.Fatalf("the call to bob was not answered: %v; page state %s", err, st)
	}
	mediaBothWays(t, p, api, alice.Extension, bob.Extension)
	if err := p.Eval(t.Context(), `document.querySelector("#phone-hangup").click(); true`, nil); err != nil {
		t.Fatal(err)
	}
	uas.Wait(t, 15*time.Second)
	if err := p.WaitFor(t.Context(), 10*time.Second, `window.cbPhone.ended === 1`); err != nil {
		t.Fatalf("the page did not see the call end: %v", err)
	}

	// 2. bob's phone calls the browser, which answers; the phone hangs up.
	cport, cmport := freeUDPPort(t), freeUDPPort(t)&^1
	uac := sipptest.Start(t, sctx, nil, "uac.xml", map[string]string{"tone": tone, "caller": bob.User, "password": bob.Password, "callee": alice.Extension, "domain": "cloudbox"},
		sipAddr, "-i", "127.0.0.1", "-p", strconv.Itoa(cport), "-mi", "127.0.0.1", "-mp", strconv.Itoa(cmport), "-m", "1", "-d", "6000", "-timeout", "50s")
	if err := p.WaitFor(t.Context(), 10*time.Second, `!document.querySelector("#phone-answer").hidden`); err != nil {
		t.Fatalf("the page did not ring: %v", err)
	}
	click(t, p, "#phone-answer")
	if err := p.WaitFor(t.Context(), 10*time.Second, `window.cbPhone.answered === 2`); err != nil {
		t.Fatalf("the page did not answer: %v", err)
	}
	mediaBothWays(t, p, api, bob.User, alice.Extension)
	uac.Wait(t, 20*time.Second)
	if err := p.WaitFor(t.Context(), 10*time.Second, `window.cbPhone.ended === 2`); err != nil {
		t.Fatalf("the page did not see bob hang up: %v", err)
	}
	api("/api/v1/calls", &info)
	if len(info.Calls) != 0 || len(info.Records) < 2 || info.Records[0].Result != "answered" || info.Records[1].Result != "answered" {
		t.Fatalf("after both calls: calls %+v records %+v", info.Calls, info.Records)
	}
}

// voipDaemon runs a daemon on loopback whose setup is done, with accounts
// admin, alice and bob (password pw); it returns the panel's URL and a GET
// of its API with the administrator's token.
func voipDaemon(t *testing.T, pw string) (string, func(string, any)) {
	t.Helper()
	dir := t.TempDir()
	accs, err := openAccounts(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range [][2]string{{"admin", roleAdmin}, {"alice", roleMember}, {"bob", roleMember}} {
		if err := accs.setAccount(a[0], a[1], pw, false, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := accs.finishSetup(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	wait := runAsync(t, ctx, Config{StateDir: dir, Listener: ln})
	t.Cleanup(func() {
		cancel()
		if err := wait(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	api := func(path string, v any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := decodeBody(resp, v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	netnstest.WaitFor(t, 10*time.Second, func() string {
		var info CallsInfo
		api("/api/v1/calls", &info)
		if !info.Running {
			return "sip not running: " + info.Problem
		}
		return ""
	})
	return base, api
}

// TestRoomBrowsers: three headless Chromium tabs join a conference room
// by its link; each receives the other two (RTP on two of its receive
// transceivers), and the box forwarded to each.
func TestRoomBrowsers(t *testing.T) {
	base, api := voipDaemon(t, "a long enough password")
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/rooms", strings.NewReader(`{"title":"Weekly meeting"}`))
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var made struct{ Room, Link string }
	if err := decodeBody(resp, &made); err != nil || made.Link == "" {
		t.Fatalf("making a room: %v %+v", err, made)
	}
	resp.Body.Close()

	b := browsertest.Start(t)
	var pages []*browsertest.Page
	for i, name := range []string{"ana", "ben", "cai"} {
		p, err := b.NewPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Navigate(t.Context(), base+made.Link); err != nil {
			t.Fatal(err)
		}
		if err := p.Eval(t.Context(), browsertest.FakeCameraAndMicrophone+fmt.Sprintf(`; document.querySelector("#room-name").value = %q; true`, name), nil); err != nil {
			t.Fatal(err)
		}
		click(t, p, "#room-join")
		if err := p.WaitFor(t.Context(), 15*time.Second, `window.cbRoom.joined`); err != nil {
			var st string
			_ = p.Eval(t.Context(), `window.cbRoom.state`, &st)
			t.Fatalf("participant %d did not join: %v (%s)", i, err, st)
		}
		pages = append(pages, p)
	}
	// Each hears and sees the two others: two audio receivers with
	// packets, two video receivers with decoded frames, and two pictures
	// shown on the page besides its own.
	const media = `(async () => { let a = 0, v = 0; (await window.cbRoom.pc.getStats()).forEach(r => {
	  if (r.type === 'inbound-rtp' && r.kind === 'audio' && r.packetsReceived >= 25) a++;
	  if (r.type === 'inbound-rtp' && r.kind === 'video' && r.framesDecoded >= 10) v++; });
	  const shown = [...document.querySelectorAll('#room-video video:not(.self)')].filter(e => !e.hidden && e.videoWidth > 0).length;
	  return [a, v, shown]; })()`
	for i, p := range pages {
		netnstest.WaitFor(t, 30*time.Second, func() string {
			var n []int
			if err := p.Eval(t.Context(), media, &n); err != nil {
				return err.Error()
			}
			if len(n) != 3 || n[0] != 2 || n[1] != 2 || n[2] != 2 {
				return fmt.Sprintf("participant %d receives [voices, pictures, pictures shown] %v, want [2 2 2]", i, n)
			}
			return ""
		})
	}
	var info CallsInfo
	api("/api/v1/calls", &info)
	if len(info.Rooms) != 1 || len(info.Rooms[0].Participants) != 3 {
		t.Fatalf("rooms = %+v, want one with 3 participants", info.Rooms)
	}
	for _, p := range info.Rooms[0].Participants {
		if p.Sent == 0 || p.Received == 0 || p.VideoSent == 0 || p.VideoReceived == 0 {
			t.Errorf("participant %+v: nothing forwarded", p)
		}
	}
	// The first to leave disappears from the others' pictures; once all
	// have left the room is gone.
	click(t, pages[0], "#room-leave")
	for i, p := range pages[1:] {
		netnstest.WaitFor(t, 15*time.Second, func() string {
			var n []int
			if err := p.Eval(t.Context(), media, &n); err != nil {
				return err.Error()
			}
			if len(n) != 3 || n[2] != 1 {
				return fmt.Sprintf("participant %d after the first left: [voices, pictures, pictures shown] %v, want 1 shown", i+1, n)
			}
			return ""
		})
	}
	for _, p := range pages[1:] {
		click(t, p, "#room-leave")
	}
	netnstest.WaitFor(t, 10*time.Second, func() string {
		api("/api/v1/calls", &info)
		if len(info.Rooms) != 0 {
			return fmt.Sprintf("rooms left: %+v", info.Rooms)
		}
		return ""
	})
}

func click(t *testing.T, p *browsertest.Page, sel string) {
	t.Helper()
	if err := p.Click(t.Context(), sel); err != nil {
		t.Fatal(err)
	}
}

// mediaBothWays waits until the browser received RTP and the box relayed
// RTP both ways for the call from -> to.
func mediaBothWays(t *testing.T, p *browsertest.Page, api func(string, any), from, to string) {
	t.Helper()
	netnstest.WaitFor(t, 15*time.Second, func() string {
		var n int
		if err := p.Eval(t.Context(), inboundPackets, &n); err != nil {
			return err.Error()
		}
		var info CallsInfo
		api("/api/v1/calls", &info)
		if len(info.Calls) != 1 {
			return fmt.Sprintf("%d calls on the box", len(info.Calls))
		}
		c := info.Calls[0]
		if c.From != from || c.To != to || c.PacketsFrom < 50 || c.PacketsTo < 50 || n < 50 {
			return fmt.Sprintf("call %+v, browser received %d packets; want %s -> %s with >= 50 packets each way", c, n, from, to)
		}
		return ""
	})
}

func decodeBody(resp *http.Response, v any) error {
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(b.String()))
	}
	return json.Unmarshal(b.Bytes(), v)
}
