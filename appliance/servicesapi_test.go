package appliance

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/cloudbox/cloudbox/services"
)

type fixedCatalog struct{ cat *services.Catalog }

func (f fixedCatalog) current() *services.Catalog { return f.cat }

// newTestCatalog returns a catalog of a community of one, this box "b1",
// that is not running: publishing and listing work without gossip (the
// built-in services are loaded by Run, so they are not listed).
func newTestCatalog(t *testing.T, h *handler) *services.Catalog {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	self := services.Member{NodeID: h.cfg.node.ID(), Name: "b1", NodeKey: [32]byte(k.PublicKey().Bytes()),
		IPv4: netip.MustParseAddr("198.18.0.1"), IPv6: netip.MustParseAddr("fd00:cb::1")}
	cat, err := services.New(services.Config{
		PrivateKey: [32]byte(k.Bytes()), Self: self,
		Members: func() []services.Member { return []services.Member{self} },
		Builtin: func() []services.Service {
			return []services.Service{{Instance: "cloudbox panel", Type: "_http._tcp", Port: 80}}
		},
		StateDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

func TestServicesAPI(t *testing.T) {
	h, _ := newTestHandler(t, "b1")
	if resp := do(t, h, "GET", "/api/v1/services"); resp.StatusCode != http.StatusOK || strings.TrimSpace(body(t, resp)) != "[]" {
		t.Errorf("GET without a catalog = %d, want 200 []", resp.StatusCode)
	}
	resp := post(t, h, "/api/v1/services", "application/json", `{"instance":"Wiki","type":"_http._tcp","port":8080}`)
	if b := body(t, resp); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(b, "join a community first") {
		t.Errorf("POST without a catalog = %d %s, want 503 saying to join", resp.StatusCode, b)
	}

	h.cfg.catalog = fixedCatalog{newTestCatalog(t, h)}
	for _, tc := range []struct {
		name, payload string
		wantCode      int
		wantBody      string
	}{
		{"wiki", `{"instance":"Our wiki","type":"_http._tcp","port":8080,"description":"the wiki","txt":{"path":"/w"}}`, http.StatusCreated, `"instance":"Our wiki"`},
		{"printer", `{"instance":"Printer","type":"_ipp._tcp","port":631,"addr":"198.51.100.7"}`, http.StatusCreated, `"addr":"198.51.100.7"`},
		{"bad type", `{"instance":"X","type":"http","port":80}`, http.StatusBadRequest, "invalid service"},
		{"no port", `{"instance":"X","type":"_http._tcp"}`, http.StatusBadRequest, "invalid service"},
		{"bad addr", `{"instance":"X","type":"_http._tcp","port":1,"addr":"printer"}`, http.StatusBadRequest, "not an IP address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, h, "/api/v1/services", "application/json", tc.payload)
			if b := body(t, resp); resp.StatusCode != tc.wantCode || !strings.Contains(b, tc.wantBody) {
				t.Errorf("POST %s = %d %s, want %d containing %s", tc.payload, resp.StatusCode, b, tc.wantCode, tc.wantBody)
			}
		})
	}

	list := func(query string) []ServiceInfo {
		t.Helper()
		resp := do(t, h, "GET", "/api/v1/services"+query)
		b := body(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d %s", query, resp.StatusCode, b)
		}
		var out []ServiceInfo
		if err := json.Unmarshal([]byte(b), &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	all := list("")
	byName := map[string]ServiceInfo{}
	for _, s := range all {
		byName[s.Instance] = s
	}
	if len(all) != 2 || byName["Our wiki"].URL != "http://198.18.0.1:8080/w" || byName["Printer"].URL != "" ||
		byName["Our wiki"].Box != "b1" || !byName["Printer"].Healthy {
		t.Errorf("GET /api/v1/services = %+v", all)
	}
	if got := list("?type=_ipp._tcp"); len(got) != 1 || got[0].Instance != "Printer" {
		t.Errorf("?type=_ipp._tcp = %+v", got)
	}
	if got := list("?box=nobody"); len(got) != 0 {
		t.Errorf("?box=nobody = %+v", got)
	}
	if resp := do(t, h, "GET", "/api/v1/services?health=sick"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("?health=sick = %d, want 400", resp.StatusCode)
	}

	// The panel lists them with a link, and removes through its form.
	page := body(t, do(t, h, "GET", "/services"))
	for _, want := range []string{"Our wiki", `href="http://198.18.0.1:8080/w"`, "198.51.100.7", "631", `name="action" value="remove"`} {
		if !strings.Contains(page, want) {
			t.Errorf("services page lacks %q", want)
		}
	}
	form := url.Values{"action": {"remove"}, "type": {"_ipp._tcp"}, "instance": {"Printer"}}.Encode()
	if resp := post(t, h, "/services/edit", "application/x-www-form-urlencoded", form, "Sec-Fetch-Site", "same-origin"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("remove form = %d, want 303", resp.StatusCode)
	}
	form = url.Values{"action": {"publish"}, "instance": {"Radio"}, "type": {"_http._tcp"}, "port": {"8000"}, "path": {"/live"}}.Encode()
	if resp := post(t, h, "/services/edit", "application/x-www-form-urlencoded", form, "Sec-Fetch-Site", "cross-site"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site publish form = %d, want 403", resp.StatusCode)
	}
	if resp := post(t, h, "/services/edit", "application/x-www-form-urlencoded", form, "Sec-Fetch-Site", "same-origin"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("publish form = %d %s, want 303", resp.StatusCode, body(t, resp))
	}
	bad := url.Values{"action": {"publish"}, "instance": {"Bad"}, "type": {"_http._tcp"}, "port": {"0"}}.Encode()
	if resp := post(t, h, "/services/edit", "application/x-www-form-urlencoded", bad, "Sec-Fetch-Site", "same-origin"); resp.StatusCode != http.StatusBadRequest ||
		!strings.Contains(body(t, resp), "port: give a number") {
		t.Errorf("publish form with port 0 = %d, want 400 about the port", resp.StatusCode)
	}
	names := map[string]bool{}
	for _, s := range list("") {
		names[s.Instance] = true
	}
	if names["Printer"] || !names["Radio"] {
		t.Errorf("after the forms: %v, want Radio and no Printer", names)
	}
	if resp := do(t, h, "DELETE", "/api/v1/services?type=_http._tcp&instance=Radio"); resp.StatusCode != http.StatusNoContent {
		t.Errorf("DELETE = %d, want 204", resp.StatusCode)
	}
	if resp := do(t, h, "DELETE", "/api/v1/services?type=_http._tcp&instance=Radio"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("second DELETE = %d, want 404", resp.StatusCode)
	}
}
