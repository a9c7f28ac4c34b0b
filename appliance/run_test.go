package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudbox/cloudbox/appliance/state"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runAsync starts Run and returns a function that waits, bounded, for its
// result.
// testDNS keeps the DNS server of a test daemon on loopback, on a free
// port, without upstreams, unless the test configured it.
func testDNS(c DNSConfig) DNSConfig {
	if len(c.Listen) == 0 {
		c.Listen = []string{"127.0.0.1:0"}
	}
	if c.ResolvConf == "" && len(c.Upstreams) == 0 {
		c.ResolvConf = "/nonexistent/resolv.conf"
	}
	return c
}

func runAsync(t *testing.T, ctx context.Context, cfg Config) func() error {
	t.Helper()
	cfg.DNS = testDNS(cfg.DNS)
	cfg.MDNS.Disabled = true // no multicast on the host's LAN
	if cfg.Stream.ICEAddr == "" {
		cfg.Stream.ICEAddr = "127.0.0.1:0" // parallel tests, other daemons on the host
	}
	if cfg.Stream.TURNAddr == "" {
		cfg.Stream.TURNAddr = "127.0.0.1:0"
	}
	if cfg.VoIP.SIPAddr == "" {
		cfg.VoIP.SIPAddr = "127.0.0.1:0" // not the host's port 5060
	}
	if cfg.VoIP.ICEAddr == "" {
		cfg.VoIP.ICEAddr = "127.0.0.1:0"
	}
	if cfg.AdminTokenFile == "" {
		cfg.AdminTokenFile = filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(cfg.AdminTokenFile, []byte(testAdminToken), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	return func() error {
		t.Helper()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return within 10s")
			return nil
		}
	}
}

// waitGoroutines waits, bounded, until no more than want goroutines exist.
func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= want {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines remain, want at most %d:\n%s", n, want, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRun(t *testing.T) {
	baseline := runtime.NumGoroutine()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "state")
	var logs syncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	wait := runAsync(t, ctx, Config{
		StateDir: dir,
		Name:     "box-run",
		Listener: ln,
		Version:  "v0.0.1",
		Board:    "runboard",
		Logger:   slog.New(slog.NewTextHandler(&logs, nil)),
	})

	tr := &http.Transport{}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	var public statusResponse
	if code := getJSON(t, client, "http://"+ln.Addr().String()+"/api/v1/status", "", &public); code != http.StatusOK {
		t.Fatalf("GET status without a token = %d", code)
	}
	if ov := public.Components["overlay"]; ov.OK || ov.Detail != nil || ov.Error != "" || public.NodeName != "box-run" {
		t.Errorf("public status = %+v, want node_name and components without detail or error", public)
	}
	resp, err := authedGet(client, "http://"+ln.Addr().String()+"/api/v1/status")
	if err != nil {
		t.Fatalf("GET status: %v", err)
	}
	var st statusResponse
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	node, err := state.Open(t.Context(), state.Config{Dir: dir})
	if err != nil {
		t.Fatalf("state written by Run does not load: %v", err)
	}
	if st.NodeID != node.ID() || st.NodeName != "box-run" || st.Version != "v0.0.1" || st.Board != "runboard" {
		t.Errorf("status = %+v, want node %s box-run v0.0.1 runboard", st, node.ID())
	}
	if !st.Components["state"].OK {
		t.Errorf("components.state = %+v, want OK", st.Components["state"])
	}
	if ov := st.Components["overlay"]; ov.OK || !strings.HasPrefix(ov.Detail["state"], "not a member: ") {
		t.Errorf("components.overlay of a box outside any community = %+v, want not OK, state \"not a member: ...\"", ov)
	}

	cancel()
	if err := wait(); err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}
	tr.CloseIdleConnections()
	for _, want := range []string{`msg="http listening" addr=` + ln.Addr().String(), `msg="shutting down"`, `msg=stopped`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log does not contain %s:\n%s", want, logs.String())
		}
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Error("listener still accepts after Run returned")
	}
	waitGoroutines(t, baseline)
}

func TestRunErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name    string
		cfg     func(t *testing.T, root string) Config
		wantErr []string
	}{
		{"state dir under a regular file", func(t *testing.T, root string) Config {
			if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return Config{StateDir: filepath.Join(root, "file", "state"), HTTPAddr: "127.0.0.1:0"}
		}, []string{"opening node state", filepath.Join("file", "state"), "not a directory"}},
		{"address in use", func(t *testing.T, root string) Config {
			return Config{StateDir: root, HTTPAddr: busy.Addr().String()}
		}, []string{"listening for http", busy.Addr().String()}},
		{"component name taken", func(t *testing.T, root string) Config {
			return Config{StateDir: root, HTTPAddr: "127.0.0.1:0", Components: map[string]StatusFunc{
				"state": func(context.Context) ComponentStatus { return ComponentStatus{} },
			}}
		}, []string{`component "state"`}},
		{"overlay component name taken", func(t *testing.T, root string) Config {
			return Config{StateDir: root, HTTPAddr: "127.0.0.1:0", Components: map[string]StatusFunc{
				"overlay": func(context.Context) ComponentStatus { return ComponentStatus{} },
			}}
		}, []string{`component "overlay"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			baseline := runtime.NumGoroutine()
			err := runAsync(t, t.Context(), tc.cfg(t, t.TempDir()))()
			if err == nil {
				t.Fatal("Run = nil, want an error")
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Run error = %q, want it to contain %q", err, want)
				}
			}
			waitGoroutines(t, baseline)
		})
	}
}

func TestRunClosesListenerOnError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	parent := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(parent, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := runAsync(t, t.Context(), Config{StateDir: filepath.Join(parent, "state"), Listener: ln})(); err == nil {
		t.Fatal("Run = nil, want an error")
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Run = %v, want net.ErrClosed", err)
	}
}

// pipeListener is an in-memory net.Listener whose connections are net.Pipe
// ends, so that Run can be tested inside a synctest bubble.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial returns the client end of a new connection.
func (l *pipeListener) dial() net.Conn {
	c, s := net.Pipe()
	l.conns <- s
	return c
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

func TestRunShutdownTimeout(t *testing.T) {
	// A client that does not read its response keeps its connection active
	// (net.Pipe has no buffer); Run must give up on it after
	// ShutdownTimeout, close it and return nil.
	synctest.Test(t, func(t *testing.T) {
		ln := newPipeListener()
		var logs syncBuffer
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			done <- Run(ctx, Config{
				StateDir:        t.TempDir(),
				Listener:        ln,
				ShutdownTimeout: time.Second,
				Logger:          slog.New(slog.NewTextHandler(&logs, nil)),
				DNS:             DNSConfig{Disabled: true}, // real sockets would leave the bubble
				MDNS:            MDNSConfig{Disabled: true},
				Stream:          StreamConfig{ICEAddr: "off"},
				VoIP:            VoIPConfig{Disabled: true},
			})
		}()

		c := ln.dial()
		defer c.Close()
		if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: box\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the server is now blocked writing the response

		start := time.Now()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		if got := time.Since(start); got != time.Second {
			t.Errorf("shutdown took %v, want exactly the 1s ShutdownTimeout", got)
		}
		if !strings.Contains(logs.String(), `msg="http shutdown incomplete, closing connections"`) {
			t.Errorf("log does not report the forced close:\n%s", logs.String())
		}
	})
}

func TestErrorLog(t *testing.T) {
	var logs syncBuffer
	newErrorLog(slog.New(slog.NewTextHandler(&logs, nil))).Printf("http: panic serving %s: %v\n", "1.2.3.4:5", "boom")
	want := `level=WARN msg="http server error" error="http: panic serving 1.2.3.4:5: boom"`
	if !strings.Contains(logs.String(), want) {
		t.Errorf("log = %q, want it to contain %q", logs.String(), want)
	}
}
