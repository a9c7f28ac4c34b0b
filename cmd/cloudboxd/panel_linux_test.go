package main

// TestPanelBrowser is the acceptance test of the panel and the first boot
// (issue 9): headless Chromium sets up a fresh box through the wizard and
// creates a community, then sets up a second fresh box that joins it with
// an invitation from the first; both dashboards then show two members.
// Each box is a real cloudboxd with its overlay, in its own namespace:
//
//	         sw: bridge br0
//	  ┌──────────┼───────────────┐
//	box1         box2          web
//	192.0.2.1    192.0.2.2     192.0.2.100
//	panel :8080  panel :8080   chromium (CDP over a pipe)
//
// Screenshots of every page at 360 px (a phone) and 1280 px go to
// $CLOUDBOX_SCREENSHOTS, or a temporary directory (logged).

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/browsertest"
	"github.com/cloudbox/cloudbox/internal/netnstest"
	"github.com/cloudbox/cloudbox/internal/testenv"
	"github.com/cloudbox/cloudbox/services/update"
)

const adminPassword = "correct horse battery staple"

// panelBox is a cloudboxd in its own namespace.
type panelBox struct {
	name string
	ns   *netnstest.NS
	dir  string
	url  string
	log  *netnstest.Buffer
}

func startPanelBox(t *testing.T, sw *netnstest.NS, name, addr string) *panelBox {
	t.Helper()
	b := &panelBox{name: name, ns: netnstest.New(t, name), dir: filepath.Join(t.TempDir(), name), url: "http://" + addr + ":8080", log: new(netnstest.Buffer)}
	netnstest.Attach(t, sw, "br0", b.ns, "eth0", addr+"/24")
	cmd := b.ns.Command(context.Background(), binary, "--state-dir", b.dir, "--name", "fresh", "--http", addr+":8080",
		"--dns", "off", "--mdns", "off")
	cmd.Stdout, cmd.Stderr = b.log, b.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting cloudboxd %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			t.Errorf("cloudboxd %s did not stop within 15 s of SIGTERM", name)
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("cloudboxd %s log:\n%s", name, b.log.String())
		}
	})
	netnstest.WaitFor(t, 30*time.Second, func() string {
		if strings.Contains(b.log.String(), `msg="http listening"`) {
			return ""
		}
		select {
		case <-exited:
			t.Fatalf("cloudboxd %s exited:\n%s", name, b.log.String())
		default:
		}
		return "cloudboxd " + name + " does not listen"
	})
	return b
}

// setupCode reads the box's setup code as its owner would: from the file
// on its storage.
func (b *panelBox) setupCode(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(b.dir, "setup-code.txt"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}`).FindString(string(data))
	if m == "" || !strings.Contains(b.log.String(), m) {
		t.Fatalf("setup code %q of %s not in its file and log", m, b.name)
	}
	return m
}

// js quotes s as a JavaScript string.
func js(s string) string { return fmt.Sprintf("%q", s) }

// fill sets form fields by CSS selector and clicks the submit button of
// the form of the first one.
func fill(t *testing.T, p *browsertest.Page, fields map[string]string, submit string) {
	t.Helper()
	var b strings.Builder
	for sel, v := range fields {
		fmt.Fprintf(&b, "document.querySelector(%s).value = %s;", js(sel), js(v))
	}
	fmt.Fprintf(&b, "document.querySelector(%s).click();", js(submit))
	if err := p.Do(t.Context(), b.String()); err != nil {
		t.Fatalf("submitting %s: %v", submit, err)
	}
}

func text(t *testing.T, p *browsertest.Page, sel string) string {
	t.Helper()
	var s string
	if err := p.Eval(t.Context(), fmt.Sprintf(`(document.querySelector(%s) || {textContent: ""}).textContent.trim()`, js(sel)), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func path(t *testing.T, p *browsertest.Page) string {
	t.Helper()
	var s string
	if err := p.Eval(t.Context(), `location.pathname`, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// shoot saves the page at phone and desktop widths.
func shoot(t *testing.T, p *browsertest.Page, dir, name string) {
	t.Helper()
	for _, w := range []int{360, 1280} {
		if err := p.Screenshot(t.Context(), w, filepath.Join(dir, fmt.Sprintf("%s-%d.png", name, w))); err != nil {
			t.Errorf("screenshot %s at %d px: %v", name, w, err)
		}
	}
	// At 360 px nothing may stick out sideways.
	var wide bool
	p.Call(t.Context(), "Emulation.setDeviceMetricsOverride", map[string]any{"width": 360, "height": 800, "deviceScaleFactor": 1, "mobile": true}, nil)
	p.Eval(t.Context(), `document.documentElement.scrollWidth > 360`, &wide)
	p.Call(t.Context(), "Emulation.clearDeviceMetricsOverride", nil, nil)
	if wide {
		var culprits []string
		p.Call(t.Context(), "Emulation.setDeviceMetricsOverride", map[string]any{"width": 360, "height": 800, "deviceScaleFactor": 1, "mobile": true}, nil)
		p.Eval(t.Context(), `[...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > 361).slice(0, 5).map(e => e.tagName + "." + e.className + " " + Math.round(e.getBoundingClientRect().right))`, &culprits)
		p.Call(t.Context(), "Emulation.clearDeviceMetricsOverride", nil, nil)
		t.Errorf("page %s is wider than a 360 px phone: %q", name, culprits)
	}
}

// checkAccessible checks that every visible form control has a label and
// that the text and buttons of the main theme have a contrast of at least
// 4.5:1 (WCAG 2.1 AA).
func checkAccessible(t *testing.T, p *browsertest.Page, name string) {
	t.Helper()
	var problems []string
	err := p.Eval(t.Context(), `(() => {
		const out = [];
		for (const el of document.querySelectorAll("input, select, textarea")) {
			if (el.type === "hidden" || el.hidden) continue;
			if (!el.labels || el.labels.length === 0) out.push("no label: " + (el.id || el.name));
		}
		const rgb = s => s.match(/[\d.]+/g).slice(0, 3).map(Number);
		const lum = c => { const [r, g, b] = c.map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
		const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
		const bg = rgb(getComputedStyle(document.body).backgroundColor);
		const pairs = [["body text", getComputedStyle(document.body).color, bg]];
		const btn = document.querySelector("button:not(.secondary)");
		if (btn) pairs.push(["button", getComputedStyle(btn).color, rgb(getComputedStyle(btn).backgroundColor)]);
		const muted = document.querySelector(".lede");
		if (muted) pairs.push(["lede", getComputedStyle(muted).color, bg]);
		for (const [what, fg, b] of pairs) {
			const r = ratio(rgb(fg), b);
			if (r < 4.5) out.push("contrast of " + what + " " + r.toFixed(2));
		}
		return out;
	})()`, &problems)
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		t.Errorf("page %s: %s", name, pr)
	}
}

// wizard sets box up through the wizard up to the community step.
func wizard(t *testing.T, p *browsertest.Page, box *panelBox, shots string) {
	t.Helper()
	ctx := t.Context()
	if err := p.Navigate(ctx, box.url+"/"); err != nil {
		t.Fatal(err)
	}
	if got := path(t, p); got != "/setup" {
		t.Fatalf("a fresh box's panel opens at %s, want /setup", got)
	}
	checkAccessible(t, p, box.name+" setup code")
	shoot(t, p, shots, box.name+"-1-code")
	// Keyboard: Tab from the top reaches the code field, typing works and
	// Enter submits. A wrong code first.
	focused := ""
	for i := 0; i < 6 && focused != "code"; i++ {
		if err := p.Press(ctx, "Tab"); err != nil {
			t.Fatal(err)
		}
		p.Eval(ctx, `document.activeElement.id`, &focused)
	}
	if focused != "code" {
		t.Fatalf("the code field is not reachable with Tab")
	}
	if err := p.Call(ctx, "Input.insertText", map[string]any{"text": "AAAA-BBBB-CCCC"}, nil); err != nil {
		t.Fatal(err)
	}
	p.Eval(ctx, `window.__browsertestOld = true`, nil)
	if err := p.Press(ctx, "Enter"); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor(ctx, 10*time.Second, `document.readyState === "complete" && window.__browsertestOld === undefined`); err != nil {
		t.Fatal(err)
	}
	if msg := text(t, p, "#code-error"); !strings.Contains(msg, "not the setup code") {
		t.Errorf("after a wrong code the page says %q, want the error next to the field", msg)
	}
	fill(t, p, map[string]string{"#code": strings.ToLower(box.setupCode(t))}, "form button")
	if got := path(t, p); got != "/setup/account" {
		t.Fatalf("after the code: %s, want /setup/account", got)
	}
	checkAccessible(t, p, box.name+" account")
	shoot(t, p, shots, box.name+"-2-account")
	fill(t, p, map[string]string{"#username": "admin", "#password": "short", "#password2": "short"}, "form button")
	if msg := text(t, p, "#password-error"); !strings.Contains(msg, "too short") {
		// The browser's own minlength check stops the form first.
		var valid bool
		p.Eval(ctx, `document.querySelector("#password").validity.valid`, &valid)
		if valid {
			t.Errorf("short password: page says %q, want an error next to the field", msg)
		}
	}
	fill(t, p, map[string]string{"#username": "admin", "#password": adminPassword, "#password2": adminPassword}, "form button")
	if got := path(t, p); got != "/setup/box" {
		t.Fatalf("after the account: %s, want /setup/box", got)
	}
	checkAccessible(t, p, box.name+" box")
	shoot(t, p, shots, box.name+"-3-box")
	fill(t, p, map[string]string{"#name": box.name, "#location": "Test bench " + box.name}, "form button")
	if got := path(t, p); got != "/setup/community" {
		t.Fatalf("after the box: %s, want /setup/community", got)
	}
	checkAccessible(t, p, box.name+" community")
	shoot(t, p, shots, box.name+"-4-community")
}

// waitReady waits on the progress page until the overlay runs.
func waitReady(t *testing.T, p *browsertest.Page, box *panelBox, shots string) {
	t.Helper()
	if got := path(t, p); got != "/setup/progress" {
		t.Fatalf("%s after the wizard: %s, want /setup/progress (%s)", box.name, got, text(t, p, "main"))
	}
	shoot(t, p, shots, box.name+"-5-progress")
	// The page reloads itself (meta refresh) until the overlay runs.
	if err := p.WaitFor(t.Context(), 60*time.Second, `document.querySelector("h1").textContent.includes("ready") && !document.querySelector("h1").textContent.includes("Getting")`); err != nil {
		t.Fatalf("%s not ready: %v\n%s", box.name, err, text(t, p, "main"))
	}
}

// dashboardMembers reloads box's dashboard until it shows want members.
func dashboardMembers(t *testing.T, p *browsertest.Page, box *panelBox, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := p.Navigate(t.Context(), box.url+"/"); err != nil {
			t.Fatal(err)
		}
		if got := text(t, p, "#members"); got == want {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("dashboard of %s shows %q members, want %s:\n%s", box.name, got, want, text(t, p, "main"))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestPanelBrowser(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "chromium", "chromium")
	begin := time.Now()
	shots := os.Getenv("CLOUDBOX_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", shots)

	sw := netnstest.New(t, "sw")
	sw.Bridge("br0")
	box1 := startPanelBox(t, sw, "box1", "192.0.2.1")
	box2 := startPanelBox(t, sw, "box2", "192.0.2.2")
	web := netnstest.New(t, "web")
	netnstest.Attach(t, sw, "br0", web, "eth0", "192.0.2.100/24")
	browser := browsertest.Start(t, "ip", "netns", "exec", web.Name)
	ctx := t.Context()
	p, err := browser.NewPage(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Box 1 founds the community.
	wizard(t, p, box1, shots)
	fill(t, p, map[string]string{"#community": "testnet"}, `form:has(input[value="create"]) button`)
	waitReady(t, p, box1, shots)
	t.Logf("box1 set up and running after %v", time.Since(begin).Round(100*time.Millisecond))

	// Its community page makes an invitation.
	if err := p.Navigate(ctx, box1.url+"/community"); err != nil {
		t.Fatal(err)
	}
	fill(t, p, map[string]string{"#invite-name": "box2"}, `form[action="/community/invite"] button`)
	var token string
	if err := p.Eval(ctx, `document.querySelector("#invitation").value`, &token); err != nil || !strings.HasPrefix(token, "cloudbox-invite:") {
		t.Fatalf("invitation = %q %v:\n%s", token, err, text(t, p, "main"))
	}

	// Box 2 joins with it.
	wizard(t, p, box2, shots)
	fill(t, p, map[string]string{"#token": token}, `form:has(input[value="join"]) button`)
	waitReady(t, p, box2, shots)
	t.Logf("box2 joined after %v", time.Since(begin).Round(100*time.Millisecond))

	for _, b := range []*panelBox{box1, box2} {
		dashboardMembers(t, p, b, "2")
		for _, page := range []string{"", "community", "services", "updates", "settings", "logs", "certificate", "accounts"} {
			if err := p.Navigate(ctx, b.url+"/"+page); err != nil {
				t.Fatal(err)
			}
			checkAccessible(t, p, b.name+" /"+page)
			shoot(t, p, shots, fmt.Sprintf("%s-page-%s", b.name, cmp.Or(page, "dashboard")))
		}
		if got := text(t, p, "main"); !strings.Contains(got, "Your API tokens") {
			t.Errorf("accounts page of %s: %s", b.name, got)
		}
	}
	if got := text(t, p, "h1"); got != "Accounts" {
		t.Errorf("h1 = %q", got)
	}
	t.Logf("both dashboards show 2 members after %v", time.Since(begin).Round(100*time.Millisecond))
	storageBrowser(t, p, box1, shots)

	// The language selector at the foot of every page switches the panel
	// to Catalan and back.
	if err := p.Navigate(ctx, box1.url+"/"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ lang, h2 string }{{"ca", "Salut"}, {"es", "Salud"}, {"en", "Health"}} {
		if err := p.Do(ctx, `document.querySelector("#lang-select").value = "`+c.lang+`"; document.querySelector("form.lang button").click()`); err != nil {
			t.Fatal(err)
		}
		if got := text(t, p, "#health-h"); got != c.h2 || path(t, p) != "/" {
			t.Errorf("dashboard in %s: heading %q at %s, want %q", c.lang, got, path(t, p), c.h2)
		}
		if c.lang != "en" {
			shoot(t, p, shots, "box1-page-dashboard-"+c.lang)
		}
	}

	// CSRF, in the browser that is logged in on both boxes: a form of
	// another site posting to box1 is refused (the panel's own pages
	// cannot even send one elsewhere: CSP form-action 'self'), and so is
	// a form on box1 itself without the CSRF token.
	evil := `data:text/html,<form method=post action="` + box1.url + `/accounts/edit"><input name=action value=token-create><input name=label value=forged><button>go</button></form>`
	if err := p.Navigate(ctx, evil); err != nil {
		t.Fatal(err)
	}
	if err := p.Do(ctx, `document.querySelector("button").click()`); err != nil {
		t.Fatal(err)
	}
	if got := text(t, p, "body"); !strings.Contains(got, "cross-origin request detected") {
		t.Errorf("cross-site form to box1 answered:\n%s", got)
	}
	if err := p.Navigate(ctx, box1.url+"/accounts"); err != nil {
		t.Fatal(err)
	}
	forge := func(target string) string {
		t.Helper()
		err := p.Do(ctx, fmt.Sprintf(`(() => { const f = document.createElement("form"); f.method = "post"; f.action = %s;
			const i = document.createElement("input"); i.name = "action"; i.value = "token-create"; f.append(i);
			const l = document.createElement("input"); l.name = "label"; l.value = "forged"; f.append(l);
			document.body.append(f); f.submit(); })()`, js(target)))
		if err != nil {
			t.Fatal(err)
		}
		return text(t, p, "body")
	}
	if got := forge(box1.url + "/accounts/edit"); !strings.Contains(got, "security token") {
		t.Errorf("same-site form without the CSRF token answered:\n%s", got)
	}
	if err := p.Navigate(ctx, box1.url+"/accounts"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(text(t, p, "main"), "forged") {
		t.Errorf("a forged token was created on box1")
	}
	// An API call without credentials is refused; with the session's
	// cookie but without the CSRF header a change is refused too.
	var codes []int
	if err := p.Eval(ctx, `Promise.all([
		fetch("/api/v1/overlay/peers", {credentials: "omit"}).then(r => r.status),
		fetch("/api/v1/services", {method: "POST", headers: {"Content-Type": "application/json"}, body: '{"instance": "x", "type": "_http._tcp", "port": 80}'}).then(r => r.status),
		fetch("/api/v1/overlay/peers").then(r => r.status),
	])`, &codes); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(codes) != "[401 403 200]" {
		t.Errorf("API without credentials, with the cookie but no CSRF header, with the cookie = %v, want [401 403 200]", codes)
	}

	uploadRelease(t, p, box1, shots)

	// Login rate limiting: log out, five wrong passwords, then even the
	// right one waits.
	if err := p.Do(ctx, `document.querySelector("form[action='/logout'] button").click()`); err != nil {
		t.Fatal(err)
	}
	if got := path(t, p); got != "/login" {
		t.Fatalf("after logging out: %s, want /login", got)
	}
	checkAccessible(t, p, "login")
	shoot(t, p, shots, "box1-login")
	for i := range 5 {
		fill(t, p, map[string]string{"#username": "admin", "#password": "wrong password"}, "form button")
		if msg := text(t, p, "#login-error"); msg != "Wrong name or password." {
			t.Fatalf("wrong password %d: %q", i+1, msg)
		}
	}
	fill(t, p, map[string]string{"#username": "admin", "#password": adminPassword}, "form button")
	if msg := text(t, p, "#login-error"); !strings.Contains(msg, "Too many failed attempts") {
		t.Errorf("after five wrong passwords the right one gives %q, want a wait", msg)
	}
	shoot(t, p, shots, "box1-login-limited")
	t.Logf("done after %v", time.Since(begin).Round(100*time.Millisecond))
}

// uploadRelease uploads a release file on box's Updates page, as an
// administrator in the browser: box trusts no release key, so the box
// refuses it and the page says why (the script's session and CSRF token
// got it through to the API).
func uploadRelease(t *testing.T, p *browsertest.Page, box *panelBox, shots string) {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	if _, err := update.WriteRelease(dir, update.Manifest{Board: "host", Channel: update.DefaultChannel, Version: "7.0.0"},
		[]update.Input{{Name: update.RootArtifact, Data: bytes.Repeat([]byte("root"), 5000)}}); err != nil {
		t.Fatal(err)
	}
	var tarball bytes.Buffer
	if err := update.WriteTar(&tarball, dir, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Navigate(ctx, box.url+"/updates"); err != nil {
		t.Fatal(err)
	}
	err := p.Eval(ctx, fmt.Sprintf(`(() => {
		const bin = Uint8Array.from(atob(%q), c => c.charCodeAt(0));
		const dt = new DataTransfer();
		dt.items.add(new File([bin], "release.tar", {type: "application/x-tar"}));
		document.querySelector("#release").files = dt.files;
		document.querySelector("#release-upload button").click();
	})()`, base64.StdEncoding.EncodeToString(tarball.Bytes())), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor(ctx, 15*time.Second, `document.querySelector("#release-upload-result").textContent.includes("refused")`); err != nil {
		t.Fatalf("upload result: %v: %q", err, text(t, p, "#release-upload-result"))
	}
	if got := text(t, p, "#release-upload-result"); !strings.Contains(got, "trusts no release keys") {
		t.Errorf("upload result %q, want the reason", got)
	}
	shoot(t, p, shots, "box1-updates-refused")
}
