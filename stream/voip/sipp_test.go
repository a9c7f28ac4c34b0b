package voip

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/testenv"
)

// startSipp runs the sipp tool with a scenario from testdata, its [NAME]
// placeholders replaced by keys.
type sippRun struct {
	cmd  *exec.Cmd
	out  lockedBuffer
	done chan error
}

// lockedBuffer is a bytes.Buffer written by a process and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startSipp(t *testing.T, ctx context.Context, scenario string, keys map[string]string, args ...string) *sippRun {
	t.Helper()
	bin := testenv.RequireCommand(t, "sipp", "sip-tester")
	text, err := os.ReadFile(filepath.Join("testdata", scenario))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range keys { // sipp does not expand -key values inside actions
		text = bytes.ReplaceAll(text, []byte("["+k+"]"), []byte(v))
	}
	sf := filepath.Join(t.TempDir(), scenario)
	if err := os.WriteFile(sf, text, 0o644); err != nil {
		t.Fatal(err)
	}
	all := []string{"-sf", sf, "-nostdin", "-trace_err", "-error_file", filepath.Join(t.TempDir(), "err.log")}
	all = append(all, args...)
	r := &sippRun{done: make(chan error, 1)}
	r.cmd = exec.CommandContext(ctx, bin, all...)
	r.cmd.Dir = t.TempDir()
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	r.cmd.WaitDelay = time.Second
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("starting sipp %s: %v", scenario, err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		<-r.done
		r.done <- nil
	})
	return r
}

// wait waits for sipp to end and fails the test unless it exited 0 (every
// call of the scenario succeeded).
func (r *sippRun) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Fatalf("sipp %v: %v\n%s", r.cmd.Args[1:3], err, tail(r.out.String(), 3000))
		}
	case <-time.After(timeout):
		t.Fatalf("sipp %v did not finish in %v\n%s", r.cmd.Args[1:3], timeout, tail(r.out.String(), 3000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// freePorts returns n UDP ports free on ip (even ones, so that media port
// +1 and +2 are likely free as well).
func freePorts(t *testing.T, ip string, n int) []int {
	t.Helper()
	var ports []int
	var conns []net.PacketConn
	for len(ports) < n {
		c, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		p := c.LocalAddr().(*net.UDPAddr).Port
		if p%2 == 0 && p < 65000 {
			ports = append(ports, p)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	return ports
}

// toneFile writes 4 s of G.711 u-law silence for sipp's rtp_stream.
func toneFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "tone.ulaw")
	if err := os.WriteFile(p, bytes.Repeat([]byte{0xff}, 4*8000), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
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
	tone := toneFile(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	reg := startSipp(t, ctx, "register.xml", map[string]string{"user": "201", "cport": strconv.Itoa(uport), "domain": "cloudbox.test"},
		proxy, "-i", "127.0.0.1", "-p", strconv.Itoa(rport), "-au", "201", "-ap", "secret-201", "-m", "1", "-timeout", "10s")
	reg.wait(t, 15*time.Second)
	if !s.Registered("201") {
		t.Fatalf("201 not registered: %+v", s.Registrations())
	}
	uas := startSipp(t, ctx, "uas.xml", map[string]string{"tone": tone},
		"-i", "127.0.0.1", "-p", strconv.Itoa(uport), "-mi", "127.0.0.1", "-mp", strconv.Itoa(umedia), "-m", "1", "-timeout", "30s")
	time.Sleep(200 * time.Millisecond)
	uac := startSipp(t, ctx, "uac.xml", map[string]string{"tone": tone, "caller": "100", "callee": "201", "domain": "cloudbox.test"},
		proxy, "-i", "127.0.0.1", "-p", strconv.Itoa(cport), "-mi", "127.0.0.1", "-mp", strconv.Itoa(cmedia),
		"-m", "1", "-d", "3000", "-timeout", "30s")

	var during []Call
	defer func() {
		t.Logf("calls: %+v relay: %+v\nuac: %s\nuas: %s", during, s.Relay().Stats(), tail(uac.out.String(), 1500), tail(uas.out.String(), 1500))
	}()
	waitFor(t, 10*time.Second, "relayed RTP both ways", func() bool {
		during = s.Calls()
		return len(during) == 1 && during[0].State == StateActive && during[0].PacketsFrom >= 50 && during[0].PacketsTo >= 50
	})
	if c := during[0]; c.From != "100" || c.To != "201" {
		t.Errorf("call = %+v, want from 100 to 201", c)
	}
	uac.wait(t, 20*time.Second)
	uas.wait(t, 10*time.Second)
	waitFor(t, 2*time.Second, "the call to end", func() bool { return len(s.Calls()) == 0 })
	if st := s.Relay().Stats(); st.Ports != 0 || st.Packets < 200 {
		t.Errorf("relay after the call: %+v, want no ports in use and >= 200 packets relayed", st)
	}
	rs := recs.all()
	if len(rs) != 1 || rs[0].Result != "answered" || rs[0].Duration < 2*time.Second || rs[0].From != "100" || rs[0].To != "201" {
		t.Fatalf("records = %+v, want one answered call of about 3 s from 100 to 201", rs)
	}
}
