package plainhttp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

type ctxKey struct{}

// stateLog records the ConnState calls of a server.
type stateLog struct {
	mu     sync.Mutex
	states map[net.Conn][]http.ConnState
	ended  chan net.Conn // a connection reached StateClosed or StateHijacked
}

func (l *stateLog) record(c net.Conn, s http.ConnState) {
	l.mu.Lock()
	l.states[c] = append(l.states[c], s)
	l.mu.Unlock()
	if s == http.StateClosed || s == http.StateHijacked {
		l.ended <- c
	}
}

// TestConnHooksAndBodies runs the same requests against this package's
// server and net/http's: ConnContext and ConnState as http.Server calls
// them, a handler's Content-Length kept for a long body, a body shorter
// than declared ending the connection, a longer one refused, 100
// Continue, and Hijack.
func TestConnHooksAndBodies(t *testing.T) {
	checkGoroutines(t)
	for _, impl := range []string{"plainhttp", "net/http"} {
		t.Run(impl, func(t *testing.T) {
			states := &stateLog{states: make(map[net.Conn][]http.ConnState), ended: make(chan net.Conn, 16)}
			overErr := make(chan error, 1)
			mux := http.NewServeMux()
			mux.HandleFunc("/ctx", func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, r.Context().Value(ctxKey{}).(string))
			})
			mux.HandleFunc("/declared", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", fmt.Sprint(len(bigBody)))
				w.Write(bigBody)
			})
			mux.HandleFunc("/short", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "10")
				io.WriteString(w, "12345")
			})
			mux.HandleFunc("/over", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "3")
				_, err := io.WriteString(w, "12345")
				overErr <- err
			})
			mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				w.Write(b)
			})
			mux.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
				c, _, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Errorf("Hijack: %v", err)
					return
				}
				io.WriteString(c, "raw")
				c.Close()
			})
			cfg := ServerConfig{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second,
				ErrorLog: log.New(io.Discard, "", 0),
				ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
					return context.WithValue(ctx, ctxKey{}, "conn value")
				},
				ConnState: states.record,
			}
			var srv HTTPServer = &Server{Config: cfg}
			if impl == "net/http" {
				srv = &http.Server{Handler: cfg.Handler, ReadHeaderTimeout: cfg.ReadHeaderTimeout, IdleTimeout: cfg.IdleTimeout,
					ErrorLog: cfg.ErrorLog, ConnContext: cfg.ConnContext, ConnState: cfg.ConnState}
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ln) }()
			defer func() {
				srv.Close()
				if err := <-served; !errors.Is(err, http.ErrServerClosed) {
					t.Errorf("Serve: %v", err)
				}
			}()

			// exchange sends raw requests on a new connection and returns
			// the connection's reader.
			exchange := func(t *testing.T, raw string) (net.Conn, *bufio.Reader) {
				t.Helper()
				c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.WriteString(c, raw)
				return c, bufio.NewReader(c)
			}
			readResp := func(t *testing.T, br *bufio.Reader, method string) (*http.Response, string, error) {
				t.Helper()
				resp, err := http.ReadResponse(br, &http.Request{Method: method})
				if err != nil {
					t.Fatalf("reading response: %v", err)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp, string(b), err
			}
			// ended waits for a connection of the server to end and
			// returns its states.
			ended := func(t *testing.T) []http.ConnState {
				t.Helper()
				select {
				case c := <-states.ended:
					states.mu.Lock()
					defer states.mu.Unlock()
					return states.states[c]
				case <-time.After(5 * time.Second):
					t.Fatal("no connection ended")
					return nil
				}
			}

			t.Run("context and states", func(t *testing.T) {
				c, br := exchange(t, "GET /ctx HTTP/1.1\r\nHost: x\r\n\r\nGET /ctx HTTP/1.1\r\nHost: x\r\n\r\n")
				for range 2 {
					if _, body, _ := readResp(t, br, "GET"); body != "conn value" {
						t.Errorf("body %q, want the ConnContext value", body)
					}
				}
				c.Close()
				want := []http.ConnState{http.StateNew, http.StateActive, http.StateIdle, http.StateActive, http.StateIdle, http.StateClosed}
				if got := ended(t); !slices.Equal(got, want) {
					t.Errorf("states %v, want %v", got, want)
				}
			})
			t.Run("declared length kept", func(t *testing.T) {
				_, br := exchange(t, "GET /declared HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
				resp, body, err := readResp(t, br, "GET")
				if err != nil || body != string(bigBody) || resp.ContentLength != int64(len(bigBody)) || len(resp.TransferEncoding) > 0 {
					t.Errorf("got %d bytes, %v, Content-Length %d, Transfer-Encoding %v; want %d bytes with that length",
						len(body), err, resp.ContentLength, resp.TransferEncoding, len(bigBody))
				}
				ended(t)
			})
			t.Run("short body ends the connection", func(t *testing.T) {
				_, br := exchange(t, "GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, body, err := readResp(t, br, "GET")
				if resp.ContentLength != 10 || body != "12345" || !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("got Content-Length %d, %q, %v; want 10, 12345, unexpected EOF", resp.ContentLength, body, err)
				}
				ended(t)
			})
			t.Run("long body refused", func(t *testing.T) {
				_, br := exchange(t, "GET /over HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
				readResp(t, br, "GET")
				if err := <-overErr; !errors.Is(err, http.ErrContentLength) {
					t.Errorf("writing more than declared: %v, want http.ErrContentLength", err)
				}
				ended(t)
			})
			t.Run("100 continue", func(t *testing.T) {
				c, br := exchange(t, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\nConnection: close\r\n\r\n")
				line, err := br.ReadString('\n')
				if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
					t.Fatalf("first line %q, %v; want 100 Continue", line, err)
				}
				if l, _ := br.ReadString('\n'); l != "\r\n" {
					t.Fatalf("after 100 Continue: %q", l)
				}
				io.WriteString(c, "abc")
				if _, body, err := readResp(t, br, "POST"); body != "abc" || err != nil {
					t.Errorf("echo %q, %v; want abc", body, err)
				}
				ended(t)
			})
			t.Run("hijack", func(t *testing.T) {
				_, br := exchange(t, "GET /hijack HTTP/1.1\r\nHost: x\r\n\r\n")
				if b, err := io.ReadAll(br); string(b) != "raw" || err != nil {
					t.Errorf("hijacked connection: %q, %v; want raw", b, err)
				}
				if got, want := ended(t), []http.ConnState{http.StateNew, http.StateActive, http.StateHijacked}; !slices.Equal(got, want) {
					t.Errorf("states %v, want %v", got, want)
				}
			})
		})
	}
}
