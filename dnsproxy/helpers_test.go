package dnsproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/testenv"
	"github.com/miekg/dns"
)

// packet is one datagram through a chanPC.
type packet struct {
	b    []byte
	addr netip.AddrPort
}

// chanPC is a net.PacketConn on channels, for tests inside a synctest
// bubble: the test writes queries with any source address it likes to in
// and reads the server's answers from out.
type chanPC struct {
	in, out   chan packet
	closed    chan struct{}
	closeOnce sync.Once
}

func newChanPC() *chanPC {
	return &chanPC{in: make(chan packet), out: make(chan packet, 1024), closed: make(chan struct{})}
}

func (c *chanPC) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case p := <-c.in:
		return copy(b, p.b), net.UDPAddrFromAddrPort(p.addr), nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

func (c *chanPC) WriteTo(b []byte, a net.Addr) (int, error) {
	p := packet{b: append([]byte(nil), b...), addr: a.(*net.UDPAddr).AddrPort()}
	select {
	case c.out <- p:
		return len(b), nil
	case <-c.closed:
		return 0, net.ErrClosed
	}
}

func (c *chanPC) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

func (c *chanPC) LocalAddr() net.Addr                { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 53), Port: 53} }
func (c *chanPC) SetDeadline(t time.Time) error      { return nil }
func (c *chanPC) SetReadDeadline(t time.Time) error  { return nil }
func (c *chanPC) SetWriteDeadline(t time.Time) error { return nil }

// send sends m from src without waiting for an answer.
func (c *chanPC) send(t *testing.T, src string, m *dns.Msg) {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatalf("packing query: %v", err)
	}
	c.sendRaw(src, b)
}

func (c *chanPC) sendRaw(src string, b []byte) {
	c.in <- packet{b: b, addr: netip.MustParseAddrPort(src)}
}

// recv waits (bounded, in the bubble's time) for the next answer.
func (c *chanPC) recv(t *testing.T) *dns.Msg {
	t.Helper()
	select {
	case p := <-c.out:
		m := new(dns.Msg)
		if err := m.Unpack(p.b); err != nil {
			t.Fatalf("answer does not unpack: %v", err)
		}
		return m
	case <-time.After(30 * time.Second):
		t.Fatal("no answer within 30 s")
		return nil
	}
}

// exchange sends m from src and returns the answer.
func (c *chanPC) exchange(t *testing.T, src string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c.send(t, src, m)
	r := c.recv(t)
	if r.Id != m.Id {
		t.Fatalf("answer has ID %d, want %d", r.Id, m.Id)
	}
	return r
}

// noAnswer checks that the server sent nothing; call after synctest.Wait.
func (c *chanPC) noAnswer(t *testing.T) {
	t.Helper()
	select {
	case p := <-c.out:
		t.Fatalf("unexpected answer of %d bytes", len(p.b))
	default:
	}
}

// newQuery builds a query for name and type with RD set.
func newQuery(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

// fakeUpstream is a DNS resolver behind Config.Dial, on net.Pipe, so that
// it lives in a synctest bubble. handler decides the answers; a nil answer
// means no answer at all (the query times out).
type fakeUpstream struct {
	mu      sync.Mutex
	queries int
	dials   int
	down    bool
	handler func(q *dns.Msg) *dns.Msg
}

func (u *fakeUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.queries
}

func (u *fakeUpstream) dialCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.dials
}

func (u *fakeUpstream) setDown(down bool) {
	u.mu.Lock()
	u.down = down
	u.mu.Unlock()
}

func (u *fakeUpstream) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	u.mu.Lock()
	u.dials++
	down := u.down
	u.mu.Unlock()
	if down {
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	}
	client, server := net.Pipe()
	go u.serve(server, network == "tcp")
	return client, nil
}

func (u *fakeUpstream) serve(conn net.Conn, tcp bool) {
	defer conn.Close()
	for {
		var b []byte
		if tcp {
			var l [2]byte
			if _, err := io.ReadFull(conn, l[:]); err != nil {
				return
			}
			b = make([]byte, binary.BigEndian.Uint16(l[:]))
			if _, err := io.ReadFull(conn, b); err != nil {
				return
			}
		} else {
			buf := make([]byte, 65536)
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			b = buf[:n]
		}
		q := new(dns.Msg)
		if err := q.Unpack(b); err != nil {
			return
		}
		u.mu.Lock()
		u.queries++
		h := u.handler
		u.mu.Unlock()
		r := h(q)
		if r == nil {
			continue
		}
		if !tcp {
			// As a real server: cut to the query's payload size, set TC.
			size := dns.MinMsgSize
			if opt := q.IsEdns0(); opt != nil {
				size = int(opt.UDPSize())
			}
			r.Truncate(size)
		}
		out, err := r.Pack()
		if err != nil {
			return
		}
		if tcp {
			out = append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...)
		}
		if _, err := conn.Write(out); err != nil {
			return
		}
	}
}

// answerA answers every A query with addr and ttl, NXDOMAIN (with an SOA)
// for names starting with "nx", and NODATA for other types.
func answerA(addr string, ttl uint32) func(q *dns.Msg) *dns.Msg {
	return func(q *dns.Msg) *dns.Msg {
		r := new(dns.Msg)
		r.SetReply(q)
		r.RecursionAvailable = true
		name := q.Question[0].Name
		switch {
		case strings.HasPrefix(name, "nx"):
			r.Rcode = dns.RcodeNameError
			r.Ns = []dns.RR{soaRR("example.", 3600, 120)}
		case q.Question[0].Qtype == dns.TypeA:
			r.Answer = []dns.RR{mustRR(fmt.Sprintf("%s %d IN A %s", name, ttl, addr))}
		default:
			r.Ns = []dns.RR{soaRR("example.", 3600, 120)}
		}
		return r
	}
}

func soaRR(zone string, ttl, minttl uint32) dns.RR {
	return mustRR(fmt.Sprintf("%s %d IN SOA ns.%s host.%s 1 3600 600 86400 %d", zone, ttl, zone, zone, minttl))
}

func mustRR(s string) dns.RR {
	rr, err := dns.NewRR(s)
	if err != nil {
		panic(err)
	}
	return rr
}

// startBubble runs a Server with cfg on a chanPC inside the current
// synctest bubble, and stops it when the test ends.
func startBubble(t *testing.T, cfg Config) (*Server, *chanPC) {
	t.Helper()
	pc := newChanPC()
	cfg.PacketConns = []net.PacketConn{pc}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-s.Ready()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s, pc
}

// testZone is a small community zone with both kinds of records.
func testZone() Zone {
	return Zone{
		Hosts: []Host{
			{Name: "box1", Addrs: []netip.Addr{netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("fd00::1")}},
			{Name: "box2", Addrs: []netip.Addr{netip.MustParseAddr("10.1.0.2")}},
			{Name: "v6only.lab", Addrs: []netip.Addr{netip.MustParseAddr("fd00::3")}},
		},
		Services: []Service{
			{Instance: "Panel", Type: "_http._tcp", Host: "box1", Port: 80, TXT: []string{"path=/"}},
			{Instance: "Kitchen Printer (2) ü", Type: "_http._tcp", Host: "box2", Port: 8080},
			{Instance: "Radio.Stream", Type: "_rtsp._tcp", Host: "box2", Port: 554, TXT: []string{"a=1", "b=two words"}},
		},
	}
}

// digResult is what the tests read from dig's output.
type digResult struct {
	status string
	flags  []string
	answer []string // answer section lines, fields joined by one space
	out    string
}

var (
	digStatus = regexp.MustCompile(`status: ([A-Z]+)`)
	digFlags  = regexp.MustCompile(`;; flags: ([a-z ]*);`)
)

// dig runs the real dig against server (host:port) and parses its output.
func dig(t *testing.T, server string, args ...string) digResult {
	t.Helper()
	bin := testenv.RequireCommand(t, "dig", "dnsutils")
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	all := append([]string{"@" + host, "-p", port, "+time=3", "+tries=1", "+nocookie"}, args...)
	out, err := exec.CommandContext(ctx, bin, all...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", strings.Join(all, " "), err, out)
	}
	r := digResult{out: string(out)}
	if m := digStatus.FindStringSubmatch(r.out); m != nil {
		r.status = m[1]
	}
	if m := digFlags.FindStringSubmatch(r.out); m != nil {
		r.flags = strings.Fields(m[1])
	}
	inAnswer := false
	for line := range strings.SplitSeq(r.out, "\n") {
		switch {
		case strings.HasPrefix(line, ";; ANSWER SECTION:"):
			inAnswer = true
		case inAnswer && strings.TrimSpace(line) == "":
			inAnswer = false
		case inAnswer:
			r.answer = append(r.answer, strings.Join(strings.Fields(line), " "))
		}
	}
	return r
}

// checkNoLeaks fails the test if goroutines with a frame matching one of
// the patterns are still running, after a bounded wait for them to finish.
func checkNoLeaks(t *testing.T, patterns ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			for _, p := range patterns {
				if strings.Contains(g, p) {
					leaked = append(leaked, g)
					break
				}
			}
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines still running after Run returned:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// errAs is errors.As for tests.
func errAs[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}
