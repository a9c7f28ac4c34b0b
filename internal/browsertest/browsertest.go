// Package browsertest drives headless Chromium for the panel's browser
// tests, through the Chrome DevTools Protocol (CDP) over a pipe
// (--remote-debugging-pipe: JSON messages ended by a NUL byte on file
// descriptors 3 and 4), so that Chromium can run inside a network namespace
// that the test process cannot reach by TCP. It implements the handful of
// CDP methods the tests need (targets, navigation, evaluation, key
// presses, screenshots), not a general client. Tests that use it need the
// chromium command and fail (never skip) without it; as root Chromium runs
// with --no-sandbox.
package browsertest

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/testenv"
)

// Browser is a running headless Chromium; it is stopped when the test ends.
type Browser struct {
	t   testing.TB
	cmd *exec.Cmd
	in  *os.File // our end of Chromium's fd 3 (commands)

	wmu sync.Mutex // serializes writes to in

	mu      sync.Mutex
	nextID  int
	pending map[int]chan response
	done    chan struct{} // closed when the reader stops
}

type response struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Start runs headless Chromium with the command prefix wrap (e.g. "ip
// netns exec NS"; nil for none).
func Start(t testing.TB, wrap ...string) *Browser {
	t.Helper()
	return StartWithFlags(t, nil, wrap...)
}

// MediaFlags give pages a fake camera and microphone (a test pattern and a
// beep) without asking for permission, for WebRTC tests.
var MediaFlags = []string{"--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
	"--autoplay-policy=no-user-gesture-required"}

// StartWithFlags is Start with extra Chromium command line flags.
func StartWithFlags(t testing.TB, flags []string, wrap ...string) *Browser {
	t.Helper()
	bin := testenv.RequireCommand(t, "chromium", "chromium")
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, wrap...), bin, "--headless=new", "--no-sandbox", "--remote-debugging-pipe",
		"--user-data-dir="+t.TempDir(), "--no-first-run", "--no-default-browser-check", "--disable-gpu",
		"--disable-dev-shm-usage", "--disable-extensions", "--disable-background-networking", "--disable-sync",
		"--metrics-recording-only", "--mute-audio", "--hide-scrollbars", "--lang=en-US",
		// Tests drive several pages at once: pages in the background keep
		// their timers and rendering at full speed.
		"--disable-background-timer-throttling", "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows")
	args = append(append(args, flags...), "about:blank")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.ExtraFiles = []*os.File{cmdR, outW} // fd 3: commands in, fd 4: answers out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	var log lockedBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	cmdR.Close()
	outW.Close()
	b := &Browser{t: t, cmd: cmd, in: cmdW, pending: make(map[int]chan response), done: make(chan struct{})}
	go b.read(outR)
	t.Cleanup(func() {
		cmdW.Close()
		// Chromium and its helper processes are one process group.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		outR.Close()
		<-b.done
		if t.Failed() {
			t.Logf("chromium output:\n%s", log.String())
		}
	})
	return b
}

// read dispatches Chromium's answers to their callers; events are dropped.
func (b *Browser) read(r *os.File) {
	defer close(b.done)
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		msg, err := br.ReadBytes(0)
		if err != nil {
			b.mu.Lock()
			for id, ch := range b.pending {
				close(ch)
				delete(b.pending, id)
			}
			b.mu.Unlock()
			return
		}
		var m struct {
			ID int `json:"id"`
			response
		}
		if json.Unmarshal(msg[:len(msg)-1], &m) != nil || m.ID == 0 {
			continue
		}
		b.mu.Lock()
		ch := b.pending[m.ID]
		delete(b.pending, m.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- m.response
		}
	}
}

// call sends a CDP command (to a page's session, or to the browser for
// "") and decodes its result into out (nil to drop it).
func (b *Browser) call(ctx context.Context, session, method string, params, out any) error {
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	ch := make(chan response, 1)
	b.pending[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method, "params": params}
	if params == nil {
		msg["params"] = struct{}{}
	}
	if session != "" {
		msg["sessionId"] = session
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	b.wmu.Lock()
	_, err = b.in.Write(append(data, 0))
	b.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("sending %s: %w", method, err)
	}
	select {
	case <-ctx.Done():
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
		return fmt.Errorf("%s: %w", method, ctx.Err())
	case resp, ok := <-ch:
		if !ok {
			return fmt.Errorf("%s: chromium exited", method)
		}
		if resp.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, resp.Error.Message, resp.Error.Code)
		}
		if out != nil {
			return json.Unmarshal(resp.Result, out)
		}
		return nil
	}
}

// Page is a browser tab.
type Page struct {
	b       *Browser
	session string
}

// NewPage opens a blank tab.
func (b *Browser) NewPage(ctx context.Context) (*Page, error) {
	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &target); err != nil {
		return nil, err
	}
	var att struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att); err != nil {
		return nil, err
	}
	p := &Page{b: b, session: att.SessionID}
	if err := p.Call(ctx, "Page.enable", nil, nil); err != nil {
		return nil, err
	}
	return p, nil
}

// Call sends a CDP command to the page.
func (p *Page) Call(ctx context.Context, method string, params, out any) error {
	return p.b.call(ctx, p.session, method, params, out)
}

// Eval evaluates a JavaScript expression in the page (awaiting a promise)
// and decodes its JSON value into out (nil to drop it).
func (p *Page) Eval(ctx context.Context, expr string, out any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	err := p.Call(ctx, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &r)
	if err != nil {
		return err
	}
	if e := r.ExceptionDetails; e != nil {
		return fmt.Errorf("evaluating %q: %s %s", expr, e.Text, e.Exception.Description)
	}
	if out != nil && len(r.Result.Value) > 0 {
		return json.Unmarshal(r.Result.Value, out)
	}
	return nil
}

// WaitFor evaluates the boolean expression cond every 100 ms until it is
// true (errors, e.g. during a navigation, count as false), for at most
// timeout.
func (p *Page) WaitFor(ctx context.Context, timeout time.Duration, cond string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		var ok bool
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		err := p.Eval(cctx, cond, &ok)
		ccancel()
		if err == nil && ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting %v for %s: %w (last error: %v)", timeout, cond, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// loaded is true in a document that has loaded and was not marked by
// markOld.
const loaded = `document.readyState === "complete" && window.__browsertestOld === undefined`

// markOld marks the current document, so that a wait can tell the next
// one from it.
func (p *Page) markOld(ctx context.Context) error {
	return p.Eval(ctx, `window.__browsertestOld = true`, nil)
}

// Navigate loads url and waits until the resulting page has loaded.
func (p *Page) Navigate(ctx context.Context, url string) error {
	if err := p.markOld(ctx); err != nil {
		return err
	}
	var r struct {
		ErrorText string `json:"errorText"`
	}
	if err := p.Call(ctx, "Page.navigate", map[string]any{"url": url}, &r); err != nil {
		return err
	}
	if r.ErrorText != "" {
		return fmt.Errorf("loading %s: %s", url, r.ErrorText)
	}
	return p.WaitFor(ctx, 30*time.Second, loaded)
}

// Do runs the JavaScript statement js (e.g. a click on a submit button)
// and waits until the page it leads to has loaded.
func (p *Page) Do(ctx context.Context, js string) error {
	if err := p.markOld(ctx); err != nil {
		return err
	}
	if err := p.Eval(ctx, js, nil); err != nil {
		return err
	}
	return p.WaitFor(ctx, 30*time.Second, loaded)
}

// Press presses and releases a key, e.g. "Tab" or "Enter".
func (p *Page) Press(ctx context.Context, key string) error {
	codes := map[string]int{"Tab": 9, "Enter": 13, " ": 32}
	code, ok := codes[key]
	if !ok {
		return fmt.Errorf("key %q not supported", key)
	}
	for _, typ := range []string{"keyDown", "keyUp"} {
		params := map[string]any{"type": typ, "key": key, "code": key, "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code}
		if key == "Enter" && typ == "keyDown" {
			params["text"] = "\r"
		}
		if err := p.Call(ctx, "Input.dispatchKeyEvent", params, nil); err != nil {
			return err
		}
	}
	return nil
}

// Screenshot renders the whole page at width CSS pixels (as a phone when
// width < 600) into a PNG file at path.
func (p *Page) Screenshot(ctx context.Context, width int, path string) error {
	metrics := map[string]any{"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": width < 600}
	if err := p.Call(ctx, "Emulation.setDeviceMetricsOverride", metrics, nil); err != nil {
		return err
	}
	defer p.Call(context.WithoutCancel(ctx), "Emulation.clearDeviceMetricsOverride", nil, nil)
	var height float64
	if err := p.Eval(ctx, `document.documentElement.scrollHeight`, &height); err != nil {
		return err
	}
	var shot struct {
		Data string `json:"data"`
	}
	clip := map[string]any{"x": 0, "y": 0, "width": width, "height": max(height, 100), "scale": 1}
	if err := p.Call(ctx, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true, "clip": clip}, &shot); err != nil {
		return err
	}
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		return fmt.Errorf("decoding screenshot: %w", err)
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		return errors.New("screenshot is not a PNG")
	}
	return os.WriteFile(path, png, 0o644)
}

// lockedBuffer collects Chromium's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.b) < 1<<20 {
		l.b = append(l.b, p...)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
