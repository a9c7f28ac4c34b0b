package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"
)

// tcpServer serves each connection on a loopback listener with handle
// until the test ends.
func tcpServer(t *testing.T, handle func(*net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	return ln.Addr().String()
}

// writeInPieces writes b in pieces of random sizes up to 200 KiB, so that
// the tunnel sees short reads, long reads and everything between.
func writeInPieces(w io.Writer, b []byte, rng *rand.Rand) error {
	for len(b) > 0 {
		n := min(len(b), 1+rng.IntN(200<<10))
		if _, err := w.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// TestTunnelRelaysExactly checks what the tunnel's copy loop (raw reads and
// writes, a bounded unsent queue) must keep: every byte in order both
// ways, a half-close passed on (the upload's end reaches the server, which
// still answers), and small interactive messages not held back.
func TestTunnelRelaysExactly(t *testing.T) {
	home := newBox(t, "home")
	_, httpAddr, _ := startProxy(t, authConfig(home))
	alice := "alice:" + home.issue(t, "alice", time.Hour)
	const size = 16 << 20
	payload := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	want := sha256.Sum256(payload)

	t.Run("upload-then-half-close", func(t *testing.T) {
		addr := tcpServer(t, func(c *net.TCPConn) {
			h := sha256.New()
			if _, err := io.Copy(h, c); err != nil { // until the client's end
				return
			}
			c.Write(h.Sum(nil))
		})
		c, code := connectTunnel(t, httpAddr, addr, alice)
		if code != 200 {
			t.Fatalf("CONNECT: %d", code)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if err := writeInPieces(c, payload, rand.New(rand.NewPCG(3, 4))); err != nil {
			t.Fatal(err)
		}
		if err := c.(tunnelConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("reading the server's answer after the half-close: %v", err)
		}
		if !bytes.Equal(got, want[:]) {
			t.Fatalf("server hashed %x, want %x (%d bytes sent)", got, want, size)
		}
	})

	t.Run("download", func(t *testing.T) {
		addr := tcpServer(t, func(c *net.TCPConn) {
			writeInPieces(c, payload, rand.New(rand.NewPCG(5, 6)))
		})
		c, code := connectTunnel(t, httpAddr, addr, alice)
		if code != 200 {
			t.Fatalf("CONNECT: %d", code)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		h := sha256.New()
		n, err := io.Copy(h, c)
		if err != nil {
			t.Fatal(err)
		}
		if got := h.Sum(nil); n != size || !bytes.Equal(got, want[:]) {
			t.Fatalf("got %d bytes hashing to %x, want %d bytes hashing to %x", n, got, size, want)
		}
	})

	t.Run("interactive", func(t *testing.T) {
		addr := tcpServer(t, func(c *net.TCPConn) { io.Copy(c, c) })
		c, code := connectTunnel(t, httpAddr, addr, alice)
		if code != 200 {
			t.Fatalf("CONNECT: %d", code)
		}
		defer c.Close()
		// Messages up to 24 KiB, each answered before the next is sent.
		rng := rand.New(rand.NewPCG(7, 8))
		var rtts []time.Duration
		buf := make([]byte, 24<<10)
		for i := range 200 {
			msg := payload[i*1000 : i*1000+1+rng.IntN(24<<10)]
			c.SetDeadline(time.Now().Add(5 * time.Second))
			start := time.Now()
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
				t.Fatalf("message %d (%d bytes) did not come back: %v", i, len(msg), err)
			}
			rtts = append(rtts, time.Since(start))
			if !bytes.Equal(buf[:len(msg)], msg) {
				t.Fatalf("message %d came back changed", i)
			}
		}
		slices.Sort(rtts)
		med := rtts[len(rtts)/2]
		t.Logf("round trips through the tunnel: median %v, slowest %v", med, rtts[len(rtts)-1])
		if med > 5*time.Millisecond {
			t.Errorf("median round trip %v, want < 5 ms: messages are held", med)
		}
	})
}

// requestSeeds are raw client requests for FuzzRequest.
var requestSeeds = []string{
	"GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\n\r\n",
	"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\nProxy-Authorization: Basic YWxpY2U6eA==\r\n\r\n",
	"CONNECT [::1]:22 HTTP/1.1\r\nHost: [::1]:22\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET https://example.org/ HTTP/1.1\r\nHost: example.org\r\nProxy-Authorization: Basic !!!\r\n\r\n",
	"POST http://203.0.113.9/ HTTP/1.1\r\nHost: 203.0.113.9\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello",
	"CONNECT 127.0.0.1:443 HTTP/1.0\r\n\r\n",
	"GET http://[fe80::1%25eth0]/ HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\n\r\n",
	"\x00\x01\x02garbage\r\n\r\n",
	"GET http://example.org/ HTTP/9.9\r\n\r\n",
}

// FuzzRequest sends raw bytes as a client to a running proxy: whatever
// they are, it answers within its timeouts with one of the statuses of
// bad input (never a relayed response: no credential can be valid), or
// closes without an answer; an answer never names a loopback or private
// address.
func FuzzRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	home := newBox(f, "home")
	cfg := authConfig(home)
	cfg.AllowedDestinations = nil // default rules: loopback and private denied
	cfg.HeaderTimeout = 2 * time.Second
	cfg.Resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		return nil, errors.New("no DNS in this test")
	}}
	_, httpAddr, _ := startProxy(f, cfg)
	allowed := map[int]bool{400: true, 403: true, 405: true, 407: true, 411: true, 413: true, 414: true,
		417: true, 429: true, 431: true, 501: true, 505: true}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := net.DialTimeout("tcp", httpAddr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(raw)
		c.(*net.TCPConn).CloseWrite()
		answer, err := io.ReadAll(c)
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("reading the answer: %v (the proxy did not end the exchange in time)", err)
		}
		if len(answer) == 0 {
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(answer)), nil)
		if err != nil {
			t.Fatalf("answer is not an HTTP response: %v\n%q", err, answer)
		}
		if !allowed[resp.StatusCode] {
			t.Fatalf("status %d for %q:\n%q", resp.StatusCode, raw, answer)
		}
		for _, leak := range []string{"127.0.0.1", "::1", "192.168.", "10.0.", "172.16."} {
			if bytes.Contains(answer, []byte(leak)) && !bytes.Contains(raw, []byte(leak)) {
				t.Fatalf("answer names %s:\n%q", leak, answer)
			}
		}
	})
}
