package meshtest

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/netnstest"
	"github.com/cloudbox/cloudbox/internal/testenv"
)

// checkDNS asks every box's DNS server, over the overlay from the next box,
// for the names of all members: each answers A and AAAA with the member's
// overlay addresses (addrs: name -> ipv4, ipv6) from the community zone.
func checkDNS(t *testing.T, boxes []*box, addrs map[string][2]string) {
	t.Helper()
	testenv.RequireCommand(t, "dig", "dnsutils")
	took := netnstest.WaitFor(t, 20*time.Second, func() string {
		for i, server := range boxes {
			client := boxes[(i+1)%len(boxes)]
			for _, member := range boxes {
				name := member.name + ".cb.home.arpa."
				for j, qtype := range []string{"A", "AAAA"} {
					out, err := client.ns.Try("dig", "@"+addrs[server.name][0], "+short", "+tries=1", "+time=2", qtype, name)
					if err != nil {
						return fmt.Sprintf("dig @%s (%s) %s %s from %s: %v %s", addrs[server.name][0], server.name, qtype, name, client.name, err, out)
					}
					if got, want := strings.TrimSpace(out), addrs[member.name][j]; got != want {
						return fmt.Sprintf("%s (asked by %s) answers %s %s = %q, want %q", server.name, client.name, qtype, name, got, want)
					}
				}
			}
		}
		return ""
	})
	t.Logf("every box answers A and AAAA of every member over the overlay (%v)", took.Round(10*time.Millisecond))
}

// service is a service in GET /api/v1/services.
type service struct {
	Instance string `json:"instance"`
	Type     string `json:"type"`
	Port     uint16 `json:"port"`
	Box      string `json:"box"`
	IPv4     string `json:"ipv4"`
	Healthy  bool   `json:"healthy"`
}

func (b *box) services(query string) ([]service, error) {
	var out []service
	code, err := b.get("/api/v1/services"+query, &out)
	if err == nil && code != 200 {
		err = fmt.Errorf("GET /api/v1/services%s on %s = %d", query, b.name, code)
	}
	return out, err
}

// checkCatalog publishes a service on every box through its API — the
// box's roster service, a real TCP port on its overlay address, so the
// owner's health check finds it up — and waits until every box lists every
// one as healthy, then until every box's DNS serves them as DNS-SD records.
func checkCatalog(t *testing.T, boxes []*box, addrs map[string][2]string) {
	t.Helper()
	published := time.Now()
	// The first box publishes with the CLI, the others through the API.
	out, err := boxes[0].ns.Try("env", "CLOUDBOX_TOKEN="+apiToken, boxes[0].bin.cli, "services", "publish", "--box-url", "http://"+apiAddr,
		"--instance", "members of "+boxes[0].name, "--type", "_http._tcp", "--port", "51820", "--txt", "path=/")
	if err != nil || !strings.Contains(out, "published") {
		t.Fatalf("cloudbox services publish on %s: %v\n%s", boxes[0].name, err, out)
	}
	for _, b := range boxes[1:] {
		payload := fmt.Sprintf(`{"instance": "members of %s", "type": "_http._tcp", "port": 51820, "description": "test"}`, b.name)
		resp, err := b.client.Post("http://"+apiAddr+"/api/v1/services", "application/json", strings.NewReader(payload))
		if err != nil {
			t.Fatalf("publishing on %s: %v", b.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 201 {
			t.Fatalf("publishing on %s = %d, want 201", b.name, resp.StatusCode)
		}
	}
	took := netnstest.WaitFor(t, 45*time.Second, func() string {
		for _, b := range boxes {
			svcs, err := b.services("?type=_http._tcp")
			if err != nil {
				return err.Error()
			}
			for _, owner := range boxes {
				want := "members of " + owner.name
				i := slices.IndexFunc(svcs, func(s service) bool { return s.Instance == want })
				if i < 0 {
					var m []string
					for _, l := range strings.Split(b.getText(t, "/metrics"), "\n") {
						if strings.HasPrefix(l, "cloudbox_catalog") {
							m = append(m, l)
						}
					}
					return fmt.Sprintf("%s does not list %q: %+v\n%s", b.name, want, svcs, strings.Join(m, "\n"))
				}
				if s := svcs[i]; s.Box != owner.name || s.IPv4 != addrs[owner.name][0] || s.Port != 51820 || !s.Healthy {
					return fmt.Sprintf("%s lists %+v", b.name, s)
				}
			}
		}
		return ""
	})
	t.Logf("a service published on each of %d boxes is listed, healthy, by all after %v", len(boxes), took.Round(10*time.Millisecond))
	last := boxes[len(boxes)-1]
	out, err = boxes[0].ns.Try("env", "CLOUDBOX_TOKEN="+apiToken, boxes[0].bin.cli, "services", "--box-url", "http://"+apiAddr, "--type", "_http._tcp")
	if err != nil || !strings.Contains(out, "members of "+last.name) || !strings.Contains(out, addrs[last.name][0]) ||
		!strings.Contains(out, "http://"+addrs[boxes[0].name][0]+":51820/") {
		t.Errorf("cloudbox services on %s: %v\n%s", boxes[0].name, err, out)
	}

	// DNS-SD: browse the type, then SRV of one instance, on every box.
	took = netnstest.WaitFor(t, 20*time.Second, func() string {
		for _, server := range boxes {
			ns := addrs[server.name][0]
			out, err := server.ns.Try("dig", "@"+ns, "+short", "+tries=1", "+time=2", "PTR", "_http._tcp.cb.home.arpa.")
			if err != nil {
				return fmt.Sprintf("dig PTR on %s: %v %s", server.name, err, out)
			}
			for _, owner := range boxes {
				if !strings.Contains(out, `members\032of\032`+owner.name+"._http._tcp.cb.home.arpa.") {
					return fmt.Sprintf("PTR _http._tcp on %s lacks %s:\n%s", server.name, owner.name, out)
				}
			}
			srv, err := server.ns.Try("dig", "@"+ns, "+short", "+tries=1", "+time=2", "SRV", `members\032of\032b1._http._tcp.cb.home.arpa.`)
			if err != nil || !strings.Contains(srv, " 51820 ") {
				return fmt.Sprintf("SRV on %s: %v %q", server.name, err, srv)
			}
			target := strings.Fields(srv)[3]
			a, err := server.ns.Try("dig", "@"+ns, "+short", "+tries=1", "+time=2", "A", target)
			if err != nil || strings.TrimSpace(a) != addrs["b1"][0] {
				return fmt.Sprintf("A %s on %s = %q (%v), want %s", target, server.name, a, err, addrs["b1"][0])
			}
		}
		return ""
	})
	t.Logf("every box serves every service over DNS-SD (PTR, SRV, A of the target) after %v", took.Round(10*time.Millisecond))

	// mDNS on the LAN (the boxes' underlay segment): each box announces
	// its own service; it does not proxy those of boxes on the same LAN,
	// which announce theirs themselves (TestMeshNAT checks the proxy).
	a, b := boxes[0], boxes[1]
	took = netnstest.WaitFor(t, 20*time.Second, func() string {
		out, err := mdnsQuery(a.ns, b.addr, "PTR", "_http._tcp.local.")
		if err != nil {
			return err.Error()
		}
		own := `members\032of\032` + b.name + "._http._tcp.local."
		if !strings.Contains(out, own) {
			return fmt.Sprintf("mDNS PTR _http._tcp.local at %s lacks %s:\n%s", b.name, own, out)
		}
		if strings.Contains(out, `\(`+a.name+`\)`) {
			return fmt.Sprintf("%s proxies %s's service, though both are on one LAN:\n%s", b.name, a.name, out)
		}
		return ""
	})
	t.Logf("mDNS on the LAN: %s announces its own service after %v", b.name, took.Round(10*time.Millisecond))
	if elapsed := time.Since(published); elapsed > 60*time.Second {
		t.Errorf("discovery took %v", elapsed)
	}
}

// checkCatalogGone waits until no box of others lists a service of gone,
// which stopped.
func checkCatalogGone(t *testing.T, others []*box, gone *box) {
	t.Helper()
	took := netnstest.WaitFor(t, 30*time.Second, func() string {
		for _, b := range others {
			if b == gone {
				continue
			}
			svcs, err := b.services("?box=" + gone.name)
			if err != nil {
				return err.Error()
			}
			if len(svcs) != 0 {
				return fmt.Sprintf("%s still lists %+v", b.name, svcs)
			}
		}
		return ""
	})
	t.Logf("the services of %s disappeared from every other box %v after it stopped", gone.name, took.Round(10*time.Millisecond))
}

// mdnsQuery asks the mDNS responder at addr:5353 by unicast (a legacy
// query, RFC 6762 §6.7) from ns and returns the answers, one per line.
func mdnsQuery(ns *netnstest.NS, addr netip.Addr, qtype, name string) (string, error) {
	out, err := ns.Try("dig", "-p", "5353", "@"+addr.String(), "+tries=1", "+time=2", "+short", qtype, name)
	if err != nil {
		return "", fmt.Errorf("dig -p 5353 @%s %s %s: %v %s", addr, qtype, name, err, out)
	}
	return out, nil
}

// checkMDNSProxy publishes a service on owner (named ownerName in the
// community, overlay IPv4 ownerIP) and waits until proxy, a box on another
// LAN, announces it there by mDNS as "<instance> (<owner>)" on the host
// "<owner>-cb.local" with the owner's overlay address, as seen from lan, a
// host on proxy's LAN.
func checkMDNSProxy(t *testing.T, owner *box, ownerName, ownerIP string, proxy *box, lan *netnstest.NS) {
	t.Helper()
	testenv.RequireCommand(t, "dig", "dnsutils")
	payload := `{"instance": "wiki", "type": "_http._tcp", "port": 51820}`
	resp, err := owner.client.Post("http://"+apiAddr+"/api/v1/services", "application/json", strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("publishing on %s = %d", owner.name, resp.StatusCode)
	}
	instance := `wiki\032\(` + ownerName + `\)._http._tcp.local.`
	took := netnstest.WaitFor(t, 40*time.Second, func() string {
		out, err := mdnsQuery(lan, proxy.addr, "PTR", "_http._tcp.local.")
		if err != nil {
			return err.Error()
		}
		if !strings.Contains(out, instance) {
			return fmt.Sprintf("mDNS PTR _http._tcp.local at %s lacks %s:\n%s", proxy.name, instance, out)
		}
		srv, err := mdnsQuery(lan, proxy.addr, "SRV", strings.ReplaceAll(strings.ReplaceAll(instance, `\032`, " "), `\`, ""))
		if err != nil || !strings.Contains(srv, "51820 "+ownerName+"-cb.local.") {
			return fmt.Sprintf("mDNS SRV of %s at %s = %q (%v)", instance, proxy.name, srv, err)
		}
		a, err := mdnsQuery(lan, proxy.addr, "A", ownerName+"-cb.local.")
		if err != nil || strings.TrimSpace(a) != ownerIP {
			return fmt.Sprintf("mDNS A %s-cb.local at %s = %q (%v), want %s", ownerName, proxy.name, a, err, ownerIP)
		}
		return ""
	})
	t.Logf("discovery proxy: %s announces %s's service on its LAN by mDNS %v after it was published", proxy.name, ownerName, took.Round(10*time.Millisecond))
}
