package main

// These tests build the real cloudboxd binary once and run it in host mode,
// each instance on 127.0.0.1 port 0; the test reads the chosen address from
// the "http listening" log line.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	testVersion = "v9.9.9-test"
	testBoard   = "testboard"
)

// binary is the cloudboxd built by TestMain.
var binary string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "cloudboxd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating build dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "cloudboxd")
	ldflags := "-X github.com/cloudbox/cloudbox/internal/buildinfo.Version=" + testVersion +
		" -X github.com/cloudbox/cloudbox/internal/buildinfo.Board=" + testBoard
	cmd := exec.Command("go", "build", "-o", binary, "-ldflags", ldflags, ".")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building cloudboxd (is the go command on PATH?):", err)
		return 1
	}
	return m.Run()
}

// logBuffer collects a process's stderr and wakes waiters on every write.
type logBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func newLogBuffer() *logBuffer { return &logBuffer{changed: make(chan struct{})} }

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.changed)
	l.changed = make(chan struct{})
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor waits, at most 10 s, until re matches the log, and returns the
// submatches.
func (l *logBuffer) waitFor(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		l.mu.Lock()
		m := re.FindStringSubmatch(l.b.String())
		changed := l.changed
		l.mu.Unlock()
		if m != nil {
			return m
		}
		select {
		case <-changed:
		case <-timeout.C:
			t.Fatalf("log did not match %s within 10s:\n%s", re, l.String())
		}
	}
}

// daemon is a running cloudboxd.
type daemon struct {
	cmd    *exec.Cmd
	log    *logBuffer
	addr   string
	exited chan struct{}
	err    error // set before exited is closed
}

var listeningRE = regexp.MustCompile(`msg="http listening" addr=(\S+)`)

// testToken is the administrator's API token every test daemon accepts
// (--api-token-file); get sends it.
const testToken = "cloudboxd-test-token-0123456789abcdef"

// start runs cloudboxd with args and waits until it listens. The process is
// killed at the end of the test if it is still running.
func start(t *testing.T, args ...string) *daemon {
	t.Helper()
	d := startNoWait(t, args...)
	d.addr = d.log.waitFor(t, listeningRE)[1]
	return d
}

func startNoWait(t *testing.T, args ...string) *daemon {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "api-token")
	if err := os.WriteFile(tokenFile, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &daemon{
		cmd: exec.Command(binary, append([]string{"--http", "127.0.0.1:0", "--dns", "127.0.0.1:0", "--mdns", "off", "--gateway-local", "127.0.0.1:0", "--stream-ice", "127.0.0.1:0", "--stream-turn", "127.0.0.1:0",
			"--api-token-file", tokenFile}, args...)...),
		log:    newLogBuffer(),
		exited: make(chan struct{}),
	}
	d.cmd.Stderr = d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting cloudboxd: %v", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.exited
		if t.Failed() {
			t.Logf("cloudboxd %q stderr:\n%s", args, d.log.String())
		}
	})
	return d
}

// wait waits, at most timeout, for the process to exit and returns its exit
// code.
func (d *daemon) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-d.exited:
	case <-time.After(timeout):
		t.Fatalf("cloudboxd did not exit within %v", timeout)
	}
	var exit *exec.ExitError
	if d.err != nil && !errors.As(d.err, &exit) {
		t.Fatalf("waiting for cloudboxd: %v", d.err)
	}
	return d.cmd.ProcessState.ExitCode()
}

// stop sends SIGTERM and checks for a clean exit.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("sending SIGTERM: %v", err)
	}
	if code := d.wait(t, 5*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
}

type status struct {
	Version    string                     `json:"version"`
	Board      string                     `json:"board"`
	NodeName   string                     `json:"node_name"`
	NodeID     string                     `json:"node_id"`
	UptimeS    *int64                     `json:"uptime_s"`
	Components map[string]json.RawMessage `json:"components"`
}

func (d *daemon) get(t *testing.T, path string) (*http.Response, []byte) {
	t.Helper()
	return d.getAs(t, path, testToken)
}

// getAs sends GET path with the bearer token ("" for none), without
// following redirects.
func (d *daemon) getAs(t *testing.T, path, token string) (*http.Response, []byte) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequest(http.MethodGet, "http://"+d.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return resp, b
}

func (d *daemon) status(t *testing.T) status {
	t.Helper()
	resp, b := d.get(t, "/api/v1/status")
	var s status
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/status = %d %s", resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("decoding status %s: %v", b, err)
	}
	return s
}

func perm(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

var nodeIDRE = regexp.MustCompile(`^[a-z2-7]{26}$`)

func TestFirstStart(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	d := start(t, "--state-dir", dir, "--name", "box-one")

	s := d.status(t)
	if s.Version != testVersion || s.Board != testBoard || s.NodeName != "box-one" {
		t.Errorf("status = %+v, want version %s, board %s, node_name box-one", s, testVersion, testBoard)
	}
	if !nodeIDRE.MatchString(s.NodeID) || s.UptimeS == nil || s.Components["state"] == nil {
		t.Errorf("status = %+v, want a node_id, uptime_s and a state component", s)
	}
	if got := perm(t, dir); got != 0o700 {
		t.Errorf("state dir mode = %v, want 0700", got)
	}
	if got := perm(t, filepath.Join(dir, "node.json")); got != 0o600 {
		t.Errorf("node.json mode = %v, want 0600", got)
	}
	if !strings.Contains(d.log.String(), "node_id="+s.NodeID) {
		t.Errorf("log does not name node_id %s:\n%s", s.NodeID, d.log.String())
	}

	_, metrics := d.get(t, "/metrics")
	if want := `cloudbox_build_info{version="v9.9.9-test",board="testboard"} 1`; !strings.Contains(string(metrics), want) {
		t.Errorf("metrics do not contain %s:\n%s", want, metrics)
	}
	resp, page := d.get(t, "/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), s.NodeID) || !strings.Contains(string(page), "box-one") {
		t.Errorf("GET / = %d, want 200 with the node id and name", resp.StatusCode)
	}
	if resp, b := d.get(t, "/healthz"); resp.StatusCode != http.StatusOK || string(b) != "ok\n" {
		t.Errorf("GET /healthz = %d %q, want 200 ok", resp.StatusCode, b)
	}
	// A fresh box sends browsers to its wizard and refuses the API
	// without a token; its setup code is in the log and in a file.
	if resp, _ := d.getAs(t, "/", ""); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/setup" {
		t.Errorf("anonymous GET / = %d %s, want a redirect to /setup", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := d.getAs(t, "/metrics", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous GET /metrics = %d, want 401", resp.StatusCode)
	}
	code := regexp.MustCompile(`setup_code=([A-Z2-9-]{14}) `).FindStringSubmatch(d.log.String())
	file, err := os.ReadFile(filepath.Join(dir, "setup-code.txt"))
	if code == nil || err != nil || !strings.Contains(string(file), code[1]) {
		t.Errorf("setup code in the log %q and setup-code.txt %q (%v) differ", code, file, err)
	}
	d.stop(t)
}

func TestBoardFlag(t *testing.T) {
	t.Parallel()
	d := start(t, "--state-dir", filepath.Join(t.TempDir(), "state"), "--board", "otherboard")
	if s := d.status(t); s.Board != "otherboard" || s.Version != testVersion {
		t.Errorf("status = %+v, want board otherboard, version %s", s, testVersion)
	}
	d.stop(t)
}

func TestRestartReusesIdentity(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	first := start(t, "--state-dir", dir, "--name", "box-one")
	want := first.status(t)
	first.stop(t)

	second := start(t, "--state-dir", dir, "--name", "renamed")
	got := second.status(t)
	if got.NodeID != want.NodeID || got.NodeName != "box-one" {
		t.Errorf("after restart node = %s %q, want %s %q (--name applies on first start only)",
			got.NodeID, got.NodeName, want.NodeID, "box-one")
	}
	if strings.Contains(second.log.String(), "node identity created") {
		t.Errorf("restart created a new identity:\n%s", second.log.String())
	}
	second.stop(t)
}

func TestCorruptStateMovedAside(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	first := start(t, "--state-dir", dir)
	old := first.status(t)
	first.stop(t)

	path := filepath.Join(dir, "node.json")
	corrupt := []byte(`{"version": 1, "name": "half-written`)
	if err := os.WriteFile(path, corrupt, 0o600); err != nil {
		t.Fatal(err)
	}
	d := start(t, "--state-dir", dir)
	m := d.log.waitFor(t, regexp.MustCompile(
		`level=WARN msg="state corrupt, moved aside" path=(\S+) moved_to=(\S+) error=`))
	if m[1] != path {
		t.Errorf("logged path = %s, want %s", m[1], path)
	}
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(path) + `\.corrupt-\d{8}T\d{6}Z$`).MatchString(m[2]) {
		t.Errorf("moved_to = %s, want %s.corrupt-<UTC timestamp>", m[2], path)
	}
	kept, err := os.ReadFile(m[2])
	if err != nil || !bytes.Equal(kept, corrupt) {
		t.Errorf("moved file holds %q (err %v), want the original bytes %q", kept, err, corrupt)
	}
	if s := d.status(t); !nodeIDRE.MatchString(s.NodeID) || s.NodeID == old.NodeID {
		t.Errorf("node_id after corruption = %q, want a new one (old %s)", s.NodeID, old.NodeID)
	}
	d.stop(t)
}

func TestSIGTERM(t *testing.T) {
	t.Parallel()
	d := start(t, "--state-dir", filepath.Join(t.TempDir(), "state"))
	d.status(t)
	d.stop(t)
	if !strings.Contains(d.log.String(), `msg="shutting down"`) {
		t.Errorf("log has no \"shutting down\" line:\n%s", d.log.String())
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantLog  string
	}{
		{"state dir under a regular file", []string{"--state-dir", filepath.Join(file, "state")}, 1,
			`msg="cloudboxd failed" error="opening node state: creating state directory: mkdir ` + filepath.Join(file, "state")},
		{"missing parent, as when /perm is not mounted", []string{"--state-dir", filepath.Join(root, "perm", "cloudbox")}, 1,
			"is /perm mounted?"},
		{"invalid name", []string{"--state-dir", filepath.Join(root, "s"), "--name", "bad\tname"}, 1,
			`node name \"bad\\tname\"`},
		{"stray argument", []string{"--state-dir", filepath.Join(root, "s"), "extra"}, 2,
			`unexpected arguments ["extra"]`},
		{"invalid join token", []string{"--state-dir", filepath.Join(root, "j"), "--join", "garbage"}, 1,
			`msg="cloudboxd failed" error="join token: parsing invitation: malformed`},
		{"overlay port out of range", []string{"--state-dir", filepath.Join(root, "s"), "--overlay-port", "70000"}, 2,
			"--overlay-port 70000 is not a port number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startNoWait(t, tc.args...)
			if code := d.wait(t, 10*time.Second); code != tc.wantCode {
				t.Errorf("exit code = %d, want %d", code, tc.wantCode)
			}
			if !strings.Contains(d.log.String(), tc.wantLog) {
				t.Errorf("stderr does not contain %s:\n%s", tc.wantLog, d.log.String())
			}
		})
	}
}

func TestVersionFlag(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "--version").Output()
	if err != nil {
		t.Fatalf("cloudboxd --version: %v", err)
	}
	if got := string(out); got != testVersion+"\n" {
		t.Errorf("cloudboxd --version = %q, want %q", got, testVersion+"\n")
	}
}
