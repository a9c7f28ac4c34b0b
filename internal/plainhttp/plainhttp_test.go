package plainhttp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/cloudbox/cloudbox/internal/testenv"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// checkGoroutines fails the test if it leaves goroutines behind.
func checkGoroutines(t *testing.T) { testenv.CheckGoroutines(t, 10*time.Second) }

// bigBody is longer than bufferLimit, so it is sent chunked.
var bigBody = bytes.Repeat([]byte("0123456789abcdef"), 3*bufferLimit/16+5)

func testHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"ok":true}`)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { w.Write(bigBody) })
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%s %s %s", r.Method, r.Header.Get("X-Test"), b)
	})
	mux.HandleFunc("/local", func(w http.ResponseWriter, r *http.Request) {
		la, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		fmt.Fprintf(w, "%v", la)
	})
	mux.HandleFunc("/flush", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first ")
		w.(http.Flusher).Flush()
		io.WriteString(w, "second")
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) { panic("test panic") })
	return mux
}

// serve runs a Server on loopback until the test ends.
func serve(t *testing.T, h http.Handler) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Config: ServerConfig{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second,
		MaxHeaderBytes: 4096, ErrorLog: log.New(io.Discard, "", 0)}}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		select {
		case err := <-done:
			if !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return s, ln.Addr().String()
}

// TestClientServer sends requests with both clients, ours and net/http's,
// to our server, and with ours to net/http's server.
func TestClientServer(t *testing.T) {
	checkGoroutines(t)
	_, addr := serve(t, testHandler())
	std := &http.Server{Handler: testHandler()}
	stdLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go std.Serve(stdLn)
	defer std.Close()

	tests := []struct {
		method, path, body string
		wantCode           int
		wantBody           string
		wantType           string
	}{
		{"GET", "/small", "", http.StatusCreated, `{"ok":true}`, "application/json"},
		{"GET", "/big", "", http.StatusOK, string(bigBody), "text/plain; charset=utf-8"},
		{"POST", "/echo", "hello body", http.StatusOK, "POST yes hello body", "text/plain; charset=utf-8"},
		{"GET", "/local", "", http.StatusOK, "", "text/plain; charset=utf-8"},
		{"GET", "/flush", "", http.StatusOK, "first second", "text/plain; charset=utf-8"},
		{"GET", "/empty", "", http.StatusNoContent, "", ""},
		{"HEAD", "/small", "", http.StatusCreated, "", "application/json"},
		{"GET", "/nothing", "", http.StatusNotFound, "404 page not found\n", "text/plain; charset=utf-8"},
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	clients := []struct {
		name   string
		client HTTPClient
		addr   string
	}{
		{"ours to ours", &Client{Timeout: 5 * time.Second}, addr},
		{"net/http to ours", &http.Client{Transport: tr, Timeout: 5 * time.Second}, addr},
		{"ours to net/http", &Client{Timeout: 5 * time.Second}, stdLn.Addr().String()},
	}
	for _, c := range clients {
		for _, tt := range tests {
			t.Run(c.name+" "+tt.method+" "+tt.path, func(t *testing.T) {
				var body io.Reader
				if tt.body != "" {
					body = strings.NewReader(tt.body)
				}
				req, err := http.NewRequest(tt.method, "http://"+c.addr+tt.path, body)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("X-Test", "yes")
				resp, err := c.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				got, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				want := tt.wantBody
				if tt.path == "/local" {
					want = c.addr
				}
				if resp.StatusCode != tt.wantCode || string(got) != want {
					t.Errorf("got %d with %d bytes %.40q, want %d with %d bytes %.40q", resp.StatusCode, len(got), got, tt.wantCode, len(want), want)
				}
				if ct := resp.Header.Get("Content-Type"); ct != tt.wantType {
					t.Errorf("Content-Type %q, want %q", ct, tt.wantType)
				}
			})
		}
	}
}

// TestKeepAlive sends two pipelined requests on one connection, then one
// that asks to close it.
func TestKeepAlive(t *testing.T) {
	checkGoroutines(t)
	_, addr := serve(t, testHandler())
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /small HTTP/1.1\r\nHost: x\r\n\r\n"+
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"+
		"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(c)
	for i, want := range []string{`{"ok":true}`, "POST  abc", string(bigBody)} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != want {
			t.Errorf("response %d: %d bytes %.30q, %v; want %.30q", i, len(b), b, err, want)
		}
	}
	if n, err := br.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("after Connection: close, read %d bytes, %v; want EOF", n, err)
	}
}

// TestBadRequests checks the answers to what the server cannot read.
func TestBadRequests(t *testing.T) {
	checkGoroutines(t)
	_, addr := serve(t, testHandler())
	tests := []struct {
		name, request string
		wantCode      int
	}{
		{"header too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 10000) + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"garbage", "NOT HTTP\r\n\r\n", http.StatusBadRequest},
		{"handler panic", "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, tt.request)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if tt.wantCode == 0 {
				if err == nil {
					t.Errorf("got %s, want the connection closed", resp.Status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantCode {
				t.Errorf("got %s, want %d", resp.Status, tt.wantCode)
			}
		})
	}
}

// TestShutdown checks that Shutdown waits for a request being served,
// closes idle connections at once and stops accepting.
func TestShutdown(t *testing.T) {
	checkGoroutines(t)
	entered, release := make(chan struct{}), make(chan struct{})
	s, addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "done")
	}))
	idle, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idle.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(idle, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
	ibr := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(ibr, nil); err != nil {
		t.Fatal(err)
	} else {
		io.ReadAll(resp.Body)
	}

	got := make(chan string, 1)
	go func() {
		resp, err := (&Client{Timeout: 10 * time.Second}).Do(mustRequest(t, "http://"+addr+"/slow"))
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-entered
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	// The idle connection is closed while the slow request goes on.
	if n, err := ibr.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("idle connection: read %d bytes, %v; want it closed", n, err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v before the request was answered", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if s := <-got; s != "done" {
		t.Errorf("slow request got %q, want done", s)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("the server still accepts after Shutdown")
	}
}

func mustRequest(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestClientBounds checks that the client's Timeout ends a request the
// server does not answer, and that it refuses https.
func TestClientBounds(t *testing.T) {
	checkGoroutines(t)
	release := make(chan struct{})
	_, addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer close(release)
	start := time.Now()
	_, err := (&Client{Timeout: 200 * time.Millisecond}).Do(mustRequest(t, "http://"+addr+"/"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the timeout took %v", d)
	}
	if _, err := (&Client{}).Do(mustRequest(t, "https://"+addr+"/")); !errors.Is(err, ErrNotPlain) {
		t.Errorf("https: got %v, want ErrNotPlain", err)
	}
}

// FuzzServeConn feeds arbitrary bytes to a connection of the server: it
// must neither panic nor hang, and answer with HTTP or nothing.
func FuzzServeConn(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /big HTTP/1.0\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"))
	f.Add([]byte("\x00\xff\r\n\r\n"))
	h := testHandler()
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &Server{Config: ServerConfig{Handler: h, ReadHeaderTimeout: 50 * time.Millisecond,
			IdleTimeout: 20 * time.Millisecond, ReadTimeout: 100 * time.Millisecond, WriteTimeout: time.Second, ErrorLog: log.New(io.Discard, "", 0)}}
		s.conns = make(map[*conn]struct{})
		client, server := net.Pipe()
		c := &conn{c: server}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		go s.serveConn(c)
		go func() {
			client.Write(in)
		}()
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		out, _ := io.ReadAll(client)
		client.Close()
		s.wg.Wait()
		if len(out) > 0 && !bytes.HasPrefix(out, []byte("HTTP/1.1 ")) {
			t.Errorf("answer does not start with a status line: %.40q", out)
		}
	})
}
