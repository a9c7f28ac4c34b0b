package meshtest

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"

	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/browsertest"
	"github.com/cloudbox/cloudbox/internal/netnstest"
	"github.com/cloudbox/cloudbox/internal/sipptest"
)

// callsInfo is the part of GET /api/v1/calls the test reads.
type callsInfo struct {
	Running bool `json:"running"`
	Calls   []struct {
		From        string    `json:"from"`
		To          string    `json:"to"`
		State       string    `json:"state"`
		PacketsFrom uint64    `json:"packets_from"`
		PacketsTo   uint64    `json:"packets_to"`
		Start       time.Time `json:"start"`
		Answered    time.Time `json:"answered"`
	} `json:"calls"`
	Records []struct {
		From, To, Result string
		Duration         time.Duration
	} `json:"records"`
	Directory []struct {
		Extension, Name, Box string
	} `json:"directory"`
}

func (b *box) calls(t *testing.T) callsInfo {
	t.Helper()
	var v callsInfo
	if code, err := b.get("/api/v1/calls", &v); err != nil || code != http.StatusOK {
		t.Fatalf("GET /api/v1/calls on %s = %d %v", b.name, code, err)
	}
	return v
}

// phoneInfo is GET /api/v1/calls/phone.
type phoneInfo struct {
	Extension, User, Password, Server string
}

// addPhoneUser creates a member account on b and returns its SIP settings.
func addPhoneUser(t *testing.T, b *box, name string) phoneInfo {
	t.Helper()
	pw := "a long enough password"
	resp, err := b.client.PostForm("http://"+apiAddr+"/accounts/edit", url.Values{"action": {"account-create"},
		"username": {name}, "role": {"member"}, "password": {pw}, "password2": {pw}})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("creating account %s on %s: %v %v", name, b.name, resp, err)
	}
	resp.Body.Close()
	var p phoneInfo
	if code, err := b.get("/api/v1/calls/phone?account="+name, &p); err != nil || code != http.StatusOK || len(p.Extension) != 6 {
		t.Fatalf("GET /api/v1/calls/phone for %s on %s = %d %v %+v", name, b.name, code, err, p)
	}
	return p
}

// TestVoIPAcrossBoxes: a SIP phone (sipp) registers with box A and calls
// an extension whose phone registered with box B. A finds B in the
// catalog and proxies the call over the overlay; both boxes anchor the
// media, so G.711 RTP flows phone A -> relay A -> overlay -> relay B ->
// phone B and back. The BYE ends the call on both boxes, and both keep a
// call record. Then a headless Chromium on A's panel calls B's phone and
// B's phone calls it (browserAcrossBoxes).
//
//	        sw: br0
//	   ┌────────┴────────┐
//	A 192.0.2.1        B 192.0.2.2
//	cloudboxd :5060    cloudboxd :5060      overlay 198.18.0.0/15 between them
//	sipp UAC :5070     sipp UAS :5072 (registers from :5071)
//	chromium (panel    sipp UAC :5073 (calls the browser)
//	127.0.0.1:8080)
func TestVoIPAcrossBoxes(t *testing.T) {
	requireTools(t, [2]string{"sipp", "sip-tester"}, [2]string{"chromium", "chromium"})
	bin, sw := prepare(t)
	a := newBox(t, bin, sw, "a", 1)
	b := newBox(t, bin, sw, "b", 2)
	community(t, bin, []*box{a, b}, "192.0.2.1:51820")

	alice := addPhoneUser(t, a, "alice")
	bob := addPhoneUser(t, b, "bob")
	if alice.Extension[:4] == bob.Extension[:4] {
		t.Fatalf("both boxes have prefix %s", alice.Extension[:4])
	}
	netnstest.WaitFor(t, 90*time.Second, func() string {
		for _, e := range a.calls(t).Directory {
			if e.Extension == bob.Extension && e.Name == "bob" {
				return ""
			}
		}
		return fmt.Sprintf("%s (bob on b) not in a's directory", bob.Extension)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tone := sipptest.Tone(t, 6)
	reg := func(ns *netnstest.NS, p phoneInfo, ip, from, contact string) {
		sipptest.Start(t, ctx, ns.Command, "register.xml", map[string]string{"user": p.User, "cport": contact, "domain": "cloudbox"},
			ip+":5060", "-i", ip, "-p", from, "-au", p.User, "-ap", p.Password, "-m", "1", "-timeout", "10s").Wait(t, 15*time.Second)
	}
	reg(b.ns, bob, "192.0.2.2", "5071", "5072")
	reg(a.ns, alice, "192.0.2.1", "5070", "5070")

	uas := sipptest.Start(t, ctx, b.ns.Command, "uas.xml", map[string]string{"tone": tone},
		"-i", "192.0.2.2", "-p", "5072", "-mi", "192.0.2.2", "-mp", "6000", "-m", "1", "-timeout", "60s")
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	uac := sipptest.Start(t, ctx, a.ns.Command, "uac.xml", map[string]string{"tone": tone, "caller": alice.User, "password": alice.Password, "callee": bob.Extension, "domain": "cloudbox"},
		"192.0.2.1:5060", "-i", "192.0.2.1", "-p", "5070", "-mi", "192.0.2.1", "-mp", "6000", "-m", "1", "-d", "4000", "-timeout", "60s")

	// RTP both ways through both boxes' relays.
	for _, x := range []*box{a, b} {
		netnstest.WaitFor(t, 15*time.Second, func() string {
			ci := x.calls(t)
			if len(ci.Calls) != 1 {
				return fmt.Sprintf("%s has %d calls", x.name, len(ci.Calls))
			}
			c := ci.Calls[0]
			if c.State != "active" || c.From != alice.User || c.To != bob.Extension || c.PacketsFrom < 50 || c.PacketsTo < 50 {
				return fmt.Sprintf("%s: call %+v, want active from %s to %s with >= 50 packets each way", x.name, c, alice.User, bob.Extension)
			}
			return ""
		})
	}
	t.Logf("call up with media both ways on both boxes %v after the INVITE", time.Since(start).Round(time.Millisecond))
	// Set-up time across the overlay hop: INVITE at a to its 200 OK at a
	// (b, its relay and the phone behind it answer in between).
	if c := a.calls(t).Calls[0]; c.Answered.Sub(c.Start) > 300*time.Millisecond {
		t.Errorf("set-up across the overlay took %v, want <= 300 ms", c.Answered.Sub(c.Start))
	} else {
		t.Logf("set-up across the overlay: %v", c.Answered.Sub(c.Start))
	}
	uac.Wait(t, 30*time.Second)
	uas.Wait(t, 10*time.Second)
	// BYE tore it down on both sides.
	for _, x := range []*box{a, b} {
		netnstest.WaitFor(t, 5*time.Second, func() string {
			ci := x.calls(t)
			if len(ci.Calls) != 0 {
				return fmt.Sprintf("%s still has calls %+v", x.name, ci.Calls)
			}
			if len(ci.Records) == 0 || ci.Records[0].Result != "answered" || ci.Records[0].Duration < 3*time.Second {
				return fmt.Sprintf("%s records %+v, want an answered call of about 4 s", x.name, ci.Records)
			}
			return ""
		})
	}

	browserAcrossBoxes(t, a, b, bob)
}

// browserAcrossBoxes: headless Chromium in a's namespace sets up a's
// panel (the wizard, account "alice"), opens the Calls page and calls
// bob's SIP phone on b over the overlay; then bob's phone calls the page.
// Audio flows both ways each time (browser <-> a's bridge and relay <->
// overlay <-> b's relay <-> sipp), and the hang-ups end both legs.
func browserAcrossBoxes(t *testing.T, a, b *box, bob phoneInfo) {
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	code, err := os.ReadFile(filepath.Join(a.dir, "setup-code.txt"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}`).Find(code)
	br := browsertest.Start(t, "ip", "netns", "exec", a.ns.Name)
	p, err := br.NewPage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const pw = "alice's long password"
	step := func(js string) {
		t.Helper()
		if err := p.Do(ctx, js); err != nil {
			t.Fatalf("wizard step %q: %v", js, err)
		}
	}
	if err := p.Navigate(ctx, "http://"+apiAddr+"/setup"); err != nil {
		t.Fatal(err)
	}
	step(fmt.Sprintf(`document.querySelector("#code").value = %q; document.querySelector("#code").form.submit()`, m))
	step(fmt.Sprintf(`document.querySelector("#username").value = "alice"; document.querySelector("#password").value = %q;
	  document.querySelector("#password2").value = %q; document.querySelector("#username").form.submit()`, pw, pw))
	step(`document.querySelector("#name").form.submit()`)
	step(`document.querySelector("input[name=action][value=finish]").form.submit()`)
	if err := p.Navigate(ctx, "http://"+apiAddr+"/calls"); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor(ctx, 15*time.Second, `window.cbPhone && window.cbPhone.ready`); err != nil {
		t.Fatalf("the Calls page on a did not open alice's line: %v", err)
	}
	var alice phoneInfo
	if code, err := a.get("/api/v1/calls/phone?account=alice", &alice); err != nil || code != http.StatusOK {
		t.Fatalf("alice's phone on a: %d %v", code, err)
	}
	if err := p.Eval(ctx, browsertest.FakeCameraAndMicrophone, nil); err != nil {
		t.Fatal(err)
	}
	tone := sipptest.Tone(t, 6)
	media := func(from, to string) {
		t.Helper()
		netnstest.WaitFor(t, 20*time.Second, func() string {
			var n int
			if err := p.Eval(ctx, browserInbound, &n); err != nil {
				return err.Error()
			}
			if n < 50 {
				return fmt.Sprintf("the browser received %d packets", n)
			}
			for _, x := range []*box{a, b} {
				ci := x.calls(t)
				if len(ci.Calls) != 1 || ci.Calls[0].From != from || ci.Calls[0].To != to || ci.Calls[0].PacketsFrom < 50 || ci.Calls[0].PacketsTo < 50 {
					return fmt.Sprintf("%s: calls %+v, want %s -> %s with >= 50 packets each way", x.name, ci.Calls, from, to)
				}
			}
			return ""
		})
	}

	// The browser on a calls bob's phone on b.
	uas := sipptest.Start(t, ctx, b.ns.Command, "uas.xml", map[string]string{"tone": tone},
		"-i", "192.0.2.2", "-p", "5072", "-mi", "192.0.2.2", "-mp", "6000", "-m", "1", "-timeout", "60s")
	if err := p.Eval(ctx, fmt.Sprintf(`document.querySelector("#phone-to").value = %q; true`, bob.Extension), nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Click(ctx, "#phone-call"); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor(ctx, 20*time.Second, `window.cbPhone.answered === 1`); err != nil {
		var st string
		_ = p.Eval(ctx, `JSON.stringify(window.cbPhone)`, &st)
		t.Fatalf("bob did not answer the browser: %v; page %s", err, st)
	}
	media(alice.Extension, bob.Extension)
	if err := p.Click(ctx, "#phone-hangup"); err != nil {
		t.Fatal(err)
	}
	uas.Wait(t, 15*time.Second)

	// bob's phone on b calls the browser on a.
	uac := sipptest.Start(t, ctx, b.ns.Command, "uac.xml", map[string]string{"tone": tone, "caller": bob.User, "password": bob.Password, "callee": alice.Extension, "domain": "cloudbox"},
		"192.0.2.2:5060", "-i", "192.0.2.2", "-p", "5073", "-mi", "192.0.2.2", "-mp", "6002", "-m", "1", "-d", "6000", "-timeout", "60s")
	if err := p.WaitFor(ctx, 15*time.Second, `!document.querySelector("#phone-answer").hidden`); err != nil {
		t.Fatalf("the page on a did not ring: %v", err)
	}
	if err := p.Click(ctx, "#phone-answer"); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor(ctx, 15*time.Second, `window.cbPhone.answered === 2`); err != nil {
		t.Fatalf("the page did not answer: %v", err)
	}
	media(bob.User, alice.Extension)
	uac.Wait(t, 30*time.Second)
	if err := p.WaitFor(ctx, 10*time.Second, `window.cbPhone.ended === 2`); err != nil {
		t.Fatalf("the page did not see bob hang up: %v", err)
	}
}

// browserInbound counts the RTP packets the page's call received.
const browserInbound = `(async () => { const pc = window.cbPhone && window.cbPhone.pc; if (!pc) return 0;
  let n = 0; (await pc.getStats()).forEach(r => { if (r.type === 'inbound-rtp') n += r.packetsReceived; }); return n; })()`
