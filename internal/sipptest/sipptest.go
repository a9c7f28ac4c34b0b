// Package sipptest runs SIPp (Debian sip-tester), the SIP traffic
// generator, as a real phone in tests: it registers, calls, answers and
// plays G.711 RTP. The scenarios are embedded; their [NAME] placeholders
// are replaced by the keys the caller gives (SIPp's own -key does not
// reach into actions such as rtp_stream). It does not judge SIP itself:
// a scenario passes when SIPp exits 0.
//
// Scenarios: register.xml ([user], [domain], [cport]: the contact port,
// optional [cparams]: its URI parameters; credentials by -au/-ap), uac.xml ([caller], [callee], [domain], [tone]:
// hangs up after -d), uac_bye.xml (as uac.xml, but waits for the BYE),
// uas.xml ([tone]: answers one call, waits for BYE).
package sipptest

import (
	"bytes"
	"context"
	"embed"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/netnstest"
	"github.com/cloudbox/cloudbox/internal/testenv"
)

//go:embed scenarios/*.xml
var scenarios embed.FS

// Run is one SIPp process; it is killed when the test ends.
type Run struct {
	name string
	dir  string
	cmd  *exec.Cmd
	out  netnstest.Buffer
	done chan error
}

// Command makes the command that runs SIPp, e.g. a network namespace's
// (nil means exec.CommandContext on the host).
type Command func(ctx context.Context, args ...string) *exec.Cmd

// Start runs sipp with the embedded scenario, keys replaced, and args.
func Start(t testing.TB, ctx context.Context, cmd Command, scenario string, keys map[string]string, args ...string) *Run {
	t.Helper()
	bin := testenv.RequireCommand(t, "sipp", "sip-tester")
	text, err := scenarios.ReadFile("scenarios/" + scenario)
	if err != nil {
		t.Fatalf("scenario %s: %v", scenario, err)
	}
	for k, v := range keys {
		text = bytes.ReplaceAll(text, []byte("["+k+"]"), []byte(v))
	}
	text = bytes.ReplaceAll(text, []byte("[cparams]"), nil) // optional

	r := &Run{name: scenario, dir: t.TempDir(), done: make(chan error, 1)}
	sf := filepath.Join(r.dir, scenario)
	if err := os.WriteFile(sf, text, 0o644); err != nil {
		t.Fatal(err)
	}
	if cmd == nil {
		cmd = func(ctx context.Context, args ...string) *exec.Cmd {
			return exec.CommandContext(ctx, args[0], args[1:]...)
		}
	}
	c := cmd(ctx, append([]string{bin, "-sf", sf, "-nostdin", "-trace_err", "-error_file", filepath.Join(r.dir, "err.log")}, args...)...)
	c.Dir, c.Stdout, c.Stderr, c.WaitDelay = r.dir, &r.out, &r.out, time.Second
	r.cmd = c
	if err := c.Start(); err != nil {
		t.Fatalf("starting sipp %s: %v", scenario, err)
	}
	go func() { r.done <- c.Wait() }()
	t.Cleanup(func() {
		_ = c.Process.Kill()
		r.done <- <-r.done
	})
	return r
}

// Wait waits for SIPp to exit and fails the test unless it exited 0 (every
// call of the scenario succeeded) within timeout.
func (r *Run) Wait(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			errs, _ := os.ReadFile(filepath.Join(r.dir, "err.log"))
			t.Fatalf("sipp %s: %v\n%s\n%s", r.name, err, tail(r.out.String()), tail(string(errs)))
		}
	case <-time.After(timeout):
		t.Fatalf("sipp %s did not finish in %v\n%s", r.name, timeout, tail(r.out.String()))
	}
}

// Kill stops SIPp at once, as a phone that loses power.
func (r *Run) Kill() {
	if r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
	}
}

// Tone writes seconds of G.711 u-law silence for the scenarios' [tone].
func Tone(t testing.TB, seconds int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tone.ulaw")
	if err := os.WriteFile(p, bytes.Repeat([]byte{0xff}, seconds*8000), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func tail(s string) string {
	if len(s) > 3000 {
		return s[len(s)-3000:]
	}
	return s
}
