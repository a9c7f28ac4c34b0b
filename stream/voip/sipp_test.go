package voip

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/sipptest"
)

// freePorts returns n even ports free on ip for both UDP and TCP, below
// Linux's ephemeral range (32768 and up): a port picked there can be taken
// by any outgoing connection of a parallel test before sipp binds it.
func freePorts(t *testing.T, ip string, n int) []int {
	t.Helper()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			t.Fatalf("no %d free ports on %s below 32000", n, ip)
		}
		p := 20000 + 2*rand.IntN(6000)
		if slices.Contains(ports, p) {
			continue
		}
		addr := net.JoinHostPort(ip, strconv.Itoa(p))
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			continue
		}
		l, err := net.Listen("tcp", addr)
		u.Close()
		if err != nil {
			continue
		}
		l.Close()
		ports = append(ports, p)
	}
	return ports
}

// records collects call detail records.
type records struct {
	mu sync.Mutex
	rs []Record
}

func (r *records) add(rec Record) {
	r.mu.Lock()
	r.rs = append(r.rs, rec)
	r.mu.Unlock()
}

func (r *records) all() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Record(nil), r.rs...)
}

// runServer starts a Server and stops it at the end of the test.
func runServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return")
		}
	})
	return s
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSippCall: a sipp phone registers (digest auth) on a Server on
// loopback, another calls it through the proxy; G.711 RTP goes both ways
// through the relay; the BYE ends the call, frees the relay ports and
// writes a record.
//
//	sipp UAC 127.0.0.1:cport ──SIP──► Server 127.0.0.1:port ──SIP──► sipp UAS 127.0.0.1:uport
//	     media :cm  ◄──RTP──► relay 127.0.0.1:10000-10999 ◄──RTP──► media :um
func TestSippCall(t *testing.T) {
	var recs records
	s := runServer(t, Config{Addr: "127.0.0.1:0", Domain: "cloudbox.test",
		Password: func(u string) (string, bool) { return "secret-" + u, u == "201" || u == "100" },
		Relay:    RelayConfig{Addr: netipMust("127.0.0.1"), PortMin: 10000, PortMax: 10999},
		OnRecord: recs.add})
	proxy := s.Addr().String()
	ports := freePorts(t, "127.0.0.1", 5)
	uport, umedia, rport, cport, cmedia := ports[0], ports[1], ports[2], ports[3], ports[4]
	tone := sipptest.Tone(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	reg := sipptest.Start(t, ctx, nil, "register.xml", map[string]string{"user": "201", "cport": strconv.Itoa(uport), "domain": "cloudbox.test"},
		proxy, "-i", "127.0.0.1", "-p", strconv.Itoa(rport), "-au", "201", "-ap", "secret-201", "-m", "1", "-timeout", "10s")
	reg.Wait(t, 15*time.Second)
	if !s.Registered("201") {
		t.Fatalf("201 not registered: %+v", s.Registrations())
	}
	uas := sipptest.Start(t, ctx, nil, "uas.xml", map[string]string{"tone": tone},
		"-i", "127.0.0.1", "-p", strconv.Itoa(uport), "-mi", "127.0.0.1", "-mp", strconv.Itoa(umedia), "-m", "1", "-timeout", "30s")
	time.Sleep(200 * time.Millisecond)
	uac := sipptest.Start(t, ctx, nil, "uac.xml", map[string]string{"tone": tone, "caller": "100", "password": "secret-100", "callee": "201", "domain": "cloudbox.test"},
		proxy, "-i", "127.0.0.1", "-p", strconv.Itoa(cport), "-mi", "127.0.0.1", "-mp", strconv.Itoa(cmedia),
		"-m", "1", "-d", "3000", "-timeout", "30s")

	var during []Call
	waitFor(t, 10*time.Second, "relayed RTP both ways", func() bool {
		during = s.Calls()
		return len(during) == 1 && during[0].State == StateActive && during[0].PacketsFrom >= 50 && during[0].PacketsTo >= 50
	})
	if c := during[0]; c.From != "100" || c.To != "201" {
		t.Errorf("call = %+v, want from 100 to 201", c)
	}
	uac.Wait(t, 20*time.Second)
	uas.Wait(t, 10*time.Second)
	waitFor(t, 2*time.Second, "the call to end", func() bool { return len(s.Calls()) == 0 })
	if st := s.Relay().Stats(); st.Ports != 0 || st.Packets < 200 {
		t.Errorf("relay after the call: %+v, want no ports in use and >= 200 packets relayed", st)
	}
	rs := recs.all()
	if len(rs) != 1 || rs[0].Result != "answered" || rs[0].Duration < 2*time.Second || rs[0].From != "100" || rs[0].To != "201" {
		t.Fatalf("records = %+v, want one answered call of about 3 s from 100 to 201", rs)
	}
}

// TestCalleeGoneMidCall: the callee (a phone, or the box before it) goes
// away in the middle of a call without a BYE. Its media stops; after
// MediaTimeout the server ends the call and sends the caller a BYE (the
// caller's scenario passes only when one arrives), and records it.
func TestCalleeGoneMidCall(t *testing.T) {
	var recs records
	s := runServer(t, Config{Addr: "127.0.0.1:0", Domain: "cloudbox.test", MediaTimeout: 2 * time.Second,
		Password: func(string) (string, bool) { return "pw", true },
		Relay:    RelayConfig{Addr: netipMust("127.0.0.1"), PortMin: 12000, PortMax: 12999}, OnRecord: recs.add})
	proxy := s.Addr().String()
	ports := freePorts(t, "127.0.0.1", 5)
	uport, umedia, rport, cport, cmedia := ports[0], ports[1], ports[2], ports[3], ports[4]
	tone := sipptest.Tone(t, 30)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sipptest.Start(t, ctx, nil, "register.xml", map[string]string{"user": "201", "cport": strconv.Itoa(uport), "domain": "cloudbox.test"},
		proxy, "-i", "127.0.0.1", "-p", strconv.Itoa(rport), "-au", "201", "-ap", "pw", "-m", "1", "-timeout", "10s").Wait(t, 15*time.Second)
	uas := sipptest.Start(t, ctx, nil, "uas.xml", map[string]string{"tone": tone},
		"-i", "127.0.0.1", "-p", strconv.Itoa(uport), "-mi", "127.0.0.1", "-mp", strconv.Itoa(umedia), "-m", "1", "-timeout", "30s")
	time.Sleep(200 * time.Millisecond)
	uac := sipptest.Start(t, ctx, nil, "uac_bye.xml", map[string]string{"tone": tone, "caller": "100", "password": "pw", "callee": "201", "domain": "cloudbox.test"},
		proxy, "-i", "127.0.0.1", "-p", strconv.Itoa(cport), "-mi", "127.0.0.1", "-mp", strconv.Itoa(cmedia), "-m", "1", "-timeout", "30s")
	waitFor(t, 10*time.Second, "media both ways", func() bool {
		c := s.Calls()
		return len(c) == 1 && c[0].PacketsFrom > 20 && c[0].PacketsTo > 20
	})
	uas.Kill()
	uac.Wait(t, 15*time.Second) // got its BYE
	waitFor(t, 2*time.Second, "the call to end", func() bool { return len(s.Calls()) == 0 })
	if rs := recs.all(); len(rs) != 1 || rs[0].Result != "timeout" || rs[0].Answered.IsZero() {
		t.Fatalf("records = %+v, want one answered call ended by the media timeout", rs)
	}
	if st := s.Relay().Stats(); st.Ports != 0 {
		t.Errorf("relay ports still in use: %+v", st)
	}
}

// TestSippCallTCP: the same call with every SIP hop on TCP (RFC 3261
// §18.3 framing): the phones register and call over TCP, the proxy dials
// the callee's TCP port and keeps each hop on its connection.
func TestSippCallTCP(t *testing.T) {
	var recs records
	s := runServer(t, Config{Addr: "127.0.0.1:0", Domain: "cloudbox.test",
		Password: func(u string) (string, bool) { return "pw", true },
		Relay:    RelayConfig{Addr: netipMust("127.0.0.1"), PortMin: 15000, PortMax: 15999}, OnRecord: recs.add})
	proxy := s.Addr().String()
	ports := freePorts(t, "127.0.0.1", 5)
	uport, umedia, cmedia := ports[0], ports[1], ports[4]
	tone := sipptest.Tone(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sipptest.Start(t, ctx, nil, "register.xml", map[string]string{"user": "201", "cport": strconv.Itoa(uport), "cparams": ";transport=tcp", "domain": "cloudbox.test"},
		proxy, "-t", "t1", "-i", "127.0.0.1", "-au", "201", "-ap", "pw", "-m", "1", "-timeout", "10s").Wait(t, 15*time.Second)
	uas := sipptest.Start(t, ctx, nil, "uas.xml", map[string]string{"tone": tone},
		"-t", "t1", "-i", "127.0.0.1", "-p", strconv.Itoa(uport), "-mi", "127.0.0.1", "-mp", strconv.Itoa(umedia), "-m", "1", "-timeout", "30s")
	// Over TCP nothing retransmits the INVITE if the phone does not listen
	// yet (a slow start on a busy machine): wait for its socket.
	waitFor(t, 10*time.Second, "the called phone listening on TCP", func() bool { return tcpListening(t, uport) })
	uac := sipptest.Start(t, ctx, nil, "uac.xml", map[string]string{"tone": tone, "caller": "100", "password": "pw", "callee": "201", "domain": "cloudbox.test"},
		proxy, "-t", "t1", "-i", "127.0.0.1", "-mi", "127.0.0.1", "-mp", strconv.Itoa(cmedia), "-m", "1", "-d", "2000", "-timeout", "30s")
	waitFor(t, 10*time.Second, "relayed RTP both ways", func() bool {
		c := s.Calls()
		return len(c) == 1 && c[0].PacketsFrom >= 20 && c[0].PacketsTo >= 20
	})
	uac.Wait(t, 20*time.Second)
	uas.Wait(t, 10*time.Second)
	if rs := recs.all(); len(rs) != 1 || rs[0].Result != "answered" {
		t.Fatalf("records = %+v", rs)
	}
}

// tcpListening reports whether a socket listens on TCP port on this
// machine (/proc/net/tcp, state 0A), without connecting to it.
func tcpListening(t *testing.T, port int) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(":%04X ", port)
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && strings.HasSuffix(f[1]+" ", want) && f[3] == "0A" {
			return true
		}
	}
	return false
}
