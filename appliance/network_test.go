package appliance

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseUpstreams(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		bad  bool
	}{
		{"", nil, false},
		{"192.0.2.53", []string{"192.0.2.53"}, false},
		{"192.0.2.53, 198.51.100.1:5353\n2001:db8::53 [2001:db8::1]:53", []string{"192.0.2.53", "198.51.100.1:5353", "2001:db8::53", "[2001:db8::1]:53"}, false},
		{"dns.example", nil, true},
		{"192.0.2.300", nil, true},
		{"192.0.2.1:99999", nil, true},
		{strings.Repeat("192.0.2.1 ", maxUpstreams+1), nil, true},
	} {
		got, msg := parseUpstreams(c.in)
		if (msg != "") != c.bad || !slices.Equal(got, c.want) {
			t.Errorf("parseUpstreams(%q) = %q %q, want %q (error %v)", c.in, got, msg, c.want, c.bad)
		}
	}
}

// settingsAdmin returns a handler whose wizard ran (not a member of a
// community), with its own state directory, an administrator's browser and
// the count of restarts the handler asked for.
func settingsAdmin(t *testing.T) (*handler, *browser, *int) {
	t.Helper()
	h, _ := newTestHandler(t, "box")
	h.cfg.overlay = &fakeOverlay{v: overlayView{State: "not a member", NotMember: true}}
	h.cfg.stateDir = t.TempDir()
	restarts := new(int)
	h.cfg.restart = func() { *restarts++ }
	return h, wizard(t, h), restarts
}

// TestNetworkSettingsForm: a wrong resolver is refused next to its field
// and nothing is saved; a right one is saved and cloudboxd restarts.
func TestNetworkSettingsForm(t *testing.T) {
	h, b, restarts := settingsAdmin(t)
	tok := b.csrf("/settings")
	file := filepath.Join(h.cfg.stateDir, NetworkFile)

	resp, body := b.do("POST", "/settings/network", url.Values{"csrf": {tok}, "upstreams": {"192.0.2.53 dns.example"}})
	wantCode(t, "bad resolver", resp, body, http.StatusBadRequest)
	if !strings.Contains(body, `id="upstreams-error"`) || !strings.Contains(body, "dns.example") {
		t.Errorf("bad resolver not marked at its field:\n%s", body)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) || *restarts != 0 {
		t.Fatalf("after a refused form: %s %v, %d restarts", NetworkFile, err, *restarts)
	}
	resp, body = b.do("POST", "/settings/network", url.Values{"upstreams": {"192.0.2.53"}})
	wantCode(t, "network without CSRF token", resp, body, http.StatusForbidden)

	resp, body = b.do("POST", "/settings/network", url.Values{"csrf": {tok}, "upstreams": {"192.0.2.53, [2001:db8::53]:53"}})
	wantCode(t, "POST /settings/network", resp, body, http.StatusOK)
	n, err := loadNetwork(h.cfg.stateDir)
	if err != nil || !slices.Equal(n.DNSUpstreams, []string{"192.0.2.53", "[2001:db8::53]:53"}) || *restarts != 1 {
		t.Errorf("saved %+v %v, %d restarts; want the two resolvers and 1", n, err, *restarts)
	}
	if _, page := b.do("GET", "/settings", nil); !strings.Contains(page, `value="192.0.2.53 [2001:db8::53]:53"`) {
		t.Errorf("settings page does not show the saved resolvers:\n%s", page)
	}
}

// TestNetworkSettingsApply: the saved resolvers replace the flags' at the
// next start; a damaged file is ignored with a warning, not fatal.
func TestNetworkSettingsApply(t *testing.T) {
	client := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	dir := filepath.Join(t.TempDir(), "box")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		file string
		want []string
	}{
		{"saved", `{"version": 1, "dns_upstreams": ["192.0.2.53", "198.51.100.53:5353"]}`, []string{"192.0.2.53", "198.51.100.53:5353"}},
		{"damaged", `{"version": 1, "dns_upstreams": ["not an address"]}`, []string{"203.0.113.53"}},
	} {
		if err := os.WriteFile(filepath.Join(dir, NetworkFile), []byte(c.file), 0o600); err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		wait := runAsync(t, ctx, Config{StateDir: dir, Name: "box", Listener: ln, DNS: DNSConfig{Upstreams: []string{"203.0.113.53"}}})
		var dns dnsResponse
		code := getJSON(t, client, "http://"+ln.Addr().String()+"/api/v1/dns", testAdminToken, &dns)
		cancel()
		if err := wait(); err != nil {
			t.Fatalf("%s: Run: %v", c.name, err)
		}
		if code != http.StatusOK || !slices.Equal(dns.Upstreams, c.want) {
			t.Errorf("%s: GET /api/v1/dns = %d upstreams %q, want %q", c.name, code, dns.Upstreams, c.want)
		}
	}
}

// FuzzParseUpstreams: whatever a form sends, the resolvers accepted are
// addresses dnsproxy takes, at most maxUpstreams.
func FuzzParseUpstreams(f *testing.F) {
	for _, s := range []string{"", "192.0.2.53", "192.0.2.53,[2001:db8::1]:53", "a b c", "::1%eth0", "1.2.3.4:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, msg := parseUpstreams(s)
		if msg != "" {
			if got != nil {
				t.Fatalf("parseUpstreams(%q) = %q with error %q", s, got, msg)
			}
			return
		}
		if len(got) > maxUpstreams {
			t.Fatalf("parseUpstreams(%q): %d resolvers", s, len(got))
		}
		for _, u := range got {
			if _, err := netip.ParseAddr(u); err != nil {
				if _, err := netip.ParseAddrPort(u); err != nil {
					t.Fatalf("parseUpstreams(%q) accepted %q", s, u)
				}
			}
		}
	})
}
