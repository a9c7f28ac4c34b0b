package meshtest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/netnstest"
)

// gatewayInfo is the part of GET /api/v1/proxy the test reads.
type gatewayInfo struct {
	Running bool `json:"running"`
	Stats   *struct {
		Requests uint64 `json:"requests"`
		Users    []struct {
			User     string `json:"user"`
			Box      string `json:"box"`
			Requests uint64 `json:"requests"`
		} `json:"users"`
	} `json:"stats"`
	Local struct {
		Addr         string `json:"addr"`
		Uses         string `json:"uses"`
		Failovers    uint64 `json:"failovers"`
		DialFailures uint64 `json:"dial_failures"`
	} `json:"local"`
	Gateways []struct {
		Box     string `json:"box"`
		Addr    string `json:"addr"`
		Healthy bool   `json:"healthy"`
	} `json:"gateways"`
}

func (b *box) gateway(t *testing.T) gatewayInfo {
	t.Helper()
	var v gatewayInfo
	if code, err := b.get("/api/v1/proxy", &v); err != nil || code != http.StatusOK {
		t.Fatalf("GET /api/v1/proxy on %s = %d %v", b.name, code, err)
	}
	return v
}

// TestGateway: two boxes share their uplink, a third uses them through its
// local proxy port. The Internet is an origin server in the switch, which
// only the gateways have a route to.
//
//	             sw: br0 192.0.2.254/24 and
//	                     198.51.100.1/24 ("the Internet", HTTP :8080)
//	    ┌────────────────┼────────────────┐
//	client .3         gw1 .1            gw2 .2
//	local port :3129  --gateway          --gateway
//	(no route out)    route 198.51.100.0/24 via 192.0.2.254
//
// curl through the client's local port with a member's credential reaches
// the origin through the gateway the client ranks first; a wrong
// credential gets 407 from a gateway; stopping the gateway in use moves
// new requests to the other one, and the time that takes is measured.
func TestGateway(t *testing.T) {
	requireTools(t, [2]string{"curl", "curl"}, [2]string{"dig", "dnsutils"})
	bin, sw := prepare(t)
	sw.IP("addr", "add", "192.0.2.254/24", "dev", "br0")
	sw.IP("addr", "add", "198.51.100.1/24", "dev", "br0")
	var ln net.Listener
	if err := inNetNS("/run/netns/"+sw.Name, func() (err error) {
		ln, err = net.Listen("tcp", "198.51.100.1:8080")
		return err
	}); err != nil {
		t.Fatalf("listening in %s: %v", sw.Name, err)
	}
	origin := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintf(w, "origin saw %s\n", host)
	}), ReadHeaderTimeout: 5 * time.Second}
	go origin.Serve(ln)
	t.Cleanup(func() { origin.Close() })

	client := newBox(t, bin, sw, "client", 3)
	gw1 := newBox(t, bin, sw, "gw1", 1)
	gw2 := newBox(t, bin, sw, "gw2", 2)
	for _, gw := range []*box{gw1, gw2} {
		gw.ns.IP("route", "add", "198.51.100.0/24", "via", "192.0.2.254")
		gw.args = []string{"--gateway"}
	}
	started := time.Now()
	addrs, _ := community(t, bin, []*box{client, gw1, gw2}, "192.0.2.3:51820")
	byName := map[string]*box{"gw1": gw1, "gw2": gw2}

	// Both gateways are published, healthy, and known to the client.
	var info gatewayInfo
	took := netnstest.WaitFor(t, 60*time.Second, func() string {
		info = client.gateway(t)
		healthy := 0
		for _, g := range info.Gateways {
			if g.Healthy {
				healthy++
			}
		}
		if healthy != 2 || info.Local.Uses == "" {
			return fmt.Sprintf("client sees gateways %+v, local port uses %q", info.Gateways, info.Local.Uses)
		}
		return ""
	})
	t.Logf("the client lists both gateways as healthy %v after the community formed (%v after start)",
		took.Round(10*time.Millisecond), time.Since(started).Round(10*time.Millisecond))
	first, second := byName[info.Local.Uses], byName[info.Gateways[1].Box]
	if first == nil || second == nil || first == second {
		t.Fatalf("client's gateways: %+v", info)
	}

	// The PAC file (public) lists the local port, then the gateways; the
	// zone has wpad pointing at the client.
	pac := client.getText(t, "/wpad.dat")
	want := fmt.Sprintf(`return "PROXY 127.0.0.1:3129; PROXY %s:3128; PROXY %s:3128; DIRECT";`, addrs[first.name][0], addrs[second.name][0])
	if !strings.Contains(pac, want) {
		t.Errorf("client's PAC file lacks %s:\n%s", want, pac)
	}
	if out, err := client.ns.Try("dig", "@127.0.0.1", "+short", "+tries=1", "+time=2", "wpad.cb.home.arpa."); err != nil ||
		!strings.Contains(out, "192.0.2.3") {
		t.Errorf("dig wpad.cb.home.arpa on the client = %v %q, want 192.0.2.3", err, out)
	}

	// A member's credential, issued by the client box.
	resp, err := client.client.Post("http://"+apiAddr+"/api/v1/proxy/credentials", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var cred struct {
		User       string `json:"user"`
		Credential string `json:"credential"`
	}
	err = json.NewDecoder(resp.Body).Decode(&cred)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated || !strings.HasPrefix(cred.Credential, "cbp1_") {
		t.Fatalf("POST /api/v1/proxy/credentials = %d %v %+v", resp.StatusCode, err, cred)
	}
	userpass := cred.User + ":" + cred.Credential

	// The client has no way out but the gateways.
	if out, err := client.ns.Try("curl", "-sS", "--max-time", "2", "http://198.51.100.1:8080/"); err == nil {
		t.Fatalf("the client reaches the origin directly: %s", out)
	}
	viaLocal := func(timeout string) (string, error) {
		return client.ns.Try("curl", "-sS", "--max-time", timeout, "-x", "http://127.0.0.1:3129", "-U", userpass, "http://198.51.100.1:8080/")
	}
	out, err := viaLocal("10")
	if wantOut := fmt.Sprintf("origin saw %s\n", first.addr); err != nil || out != wantOut {
		t.Fatalf("curl through the client's local port = %v %q, want %q (through %s)", err, out, wantOut, first.name)
	}
	if v := first.gateway(t); v.Stats == nil || len(v.Stats.Users) != 1 || v.Stats.Users[0].User != cred.User || v.Stats.Users[0].Requests != 1 {
		t.Errorf("%s's gateway stats after one request: %+v", first.name, v.Stats)
	}

	// Wrong credentials at a gateway: 407.
	forged := cred.Credential[:len(cred.Credential)-2] + "AA"
	if forged == cred.Credential {
		forged = cred.Credential[:len(cred.Credential)-2] + "BB"
	}
	for _, up := range []string{cred.User + ":" + forged, "mallory:" + cred.Credential, cred.User + ":wrong"} {
		out, err := client.ns.Try("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
			"-x", "http://"+addrs[second.name][0]+":3128", "-U", up, "http://198.51.100.1:8080/")
		if err != nil || out != "407" {
			t.Errorf("curl to %s with credentials %.20s… = %v %q, want 407", second.name, up, err, out)
		}
	}

	// Stop the gateway in use: new requests go through the other one.
	stopped := time.Now()
	first.stop(t)
	stopTook := time.Since(stopped)
	attempts := 0
	var lastErr string
	for {
		attempts++
		out, err := viaLocal("5")
		if err == nil && out == fmt.Sprintf("origin saw %s\n", second.addr) {
			break
		}
		lastErr = fmt.Sprintf("%v %q", err, out)
		if time.Since(stopped) > 30*time.Second {
			t.Fatalf("no request through %s within 30s of stopping %s; last: %s", second.name, first.name, lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	failover := time.Since(stopped)
	t.Logf("after stopping %s (its shutdown took %v), the first request went through %s after %v (attempt %d)",
		first.name, stopTook.Round(10*time.Millisecond), second.name, failover.Round(10*time.Millisecond), attempts)
	if failover > 15*time.Second {
		t.Errorf("failover took %v, want at most 15s", failover)
	}
	// Later requests go straight to the other gateway, and the client's
	// list drops the stopped one.
	for range 3 {
		start := time.Now()
		if out, err := viaLocal("5"); err != nil || out != fmt.Sprintf("origin saw %s\n", second.addr) {
			t.Errorf("curl after the failover = %v %q", err, out)
		} else if d := time.Since(start); d > time.Second {
			t.Errorf("a request after the failover took %v, want well under the dial timeout", d)
		}
	}
	netnstest.WaitFor(t, 30*time.Second, func() string {
		v := client.gateway(t)
		if v.Local.Uses != second.name || len(v.Gateways) != 1 {
			return fmt.Sprintf("client still lists %+v, uses %q", v.Gateways, v.Local.Uses)
		}
		return ""
	})
	t.Logf("the client's catalog dropped %s %v after it stopped", first.name, time.Since(stopped).Round(10*time.Millisecond))
	v := client.gateway(t)
	t.Logf("client's local port: %d failovers, %d dial failures", v.Local.Failovers, v.Local.DialFailures)
}
