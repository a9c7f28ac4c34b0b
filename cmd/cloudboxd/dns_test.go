package main

import (
	"encoding/json"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/cloudbox/cloudbox/internal/testenv"
)

var dnsListeningRE = regexp.MustCompile(`msg="dns listening" component=dns network=udp addr=(\S+)`)

// upstream is a resolver on loopback that answers every A question with
// 192.0.2.7 and counts the questions.
func upstream(t *testing.T) (addr string, asked *atomic.Int64) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	asked = new(atomic.Int64)
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		asked.Add(1)
		m := new(dns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		if q := r.Question[0]; q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
				A:   net.IPv4(192, 0, 2, 7),
			})
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String(), asked
}

func dig(t *testing.T, server string, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(server)
	out, err := exec.Command("dig", append([]string{"@" + host, "-p", port, "+tries=1", "+time=3"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestDNS: the daemon answers its community zone itself, forwards other
// names to the upstream given by --dns-upstreams, answers them again from
// its cache, and shows its DNS in the API.
func TestDNS(t *testing.T) {
	t.Parallel()
	testenv.RequireCommand(t, "dig", "dnsutils")
	up, asked := upstream(t)
	d := start(t, "--state-dir", filepath.Join(t.TempDir(), "s"), "--dns-upstreams", up)
	server := d.log.waitFor(t, dnsListeningRE)[1]

	soa := dig(t, server, "SOA", "cb.home.arpa.")
	if !strings.Contains(soa, "status: NOERROR") || !regexp.MustCompile(`flags: qr aa`).MatchString(soa) {
		t.Errorf("SOA of the community zone is not an authoritative answer:\n%s", soa)
	}
	if asked.Load() != 0 {
		t.Errorf("the community zone was forwarded upstream %d times", asked.Load())
	}
	for i := range 2 {
		a := dig(t, server, "+short", "A", "www.example.test.")
		if strings.TrimSpace(a) != "192.0.2.7" {
			t.Fatalf("query %d: A www.example.test = %q, want 192.0.2.7", i, a)
		}
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("upstream asked %d times for two queries of one name, want 1 (the second from the cache)", n)
	}

	_, body := d.get(t, "/api/v1/dns")
	var v struct {
		Enabled   bool     `json:"enabled"`
		Domain    string   `json:"domain"`
		Upstreams []string `json:"upstreams"`
		Stats     struct {
			CacheHits uint64 `json:"cache_hits"`
		} `json:"stats"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decoding /api/v1/dns %s: %v", body, err)
	}
	if !v.Enabled || v.Domain != "cb.home.arpa." || len(v.Upstreams) != 1 || v.Upstreams[0] != up || v.Stats.CacheHits < 1 {
		t.Errorf("/api/v1/dns = %s", body)
	}
	st := d.status(t)
	if !strings.Contains(string(st.Components["dns"]), `"ok":true`) {
		t.Errorf("dns component = %s", st.Components["dns"])
	}
}

// TestDNSPortBusy: a DNS address that cannot be bound stops the daemon
// with an error that says which flag to change.
func TestDNSPortBusy(t *testing.T) {
	t.Parallel()
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	d := startNoWait(t, "--state-dir", filepath.Join(t.TempDir(), "s"), "--dns", busy.LocalAddr().String())
	if code := d.wait(t, 10*time.Second); code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	if want := "--dns picks other addresses"; !strings.Contains(d.log.String(), want) {
		t.Errorf("stderr does not contain %q:\n%s", want, d.log.String())
	}
}
