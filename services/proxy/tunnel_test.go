package proxy

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"slices"
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
