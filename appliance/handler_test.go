package appliance

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/json"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/appliance/state"
)

var testStart = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// testNode returns a node with a fixed key, so its ID is known.
func testNode(t *testing.T, name string) *state.Node {
	t.Helper()
	key, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{42}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return &state.Node{Name: name, Created: testStart.Add(-time.Hour), PrivateKey: key}
}

// newTestHandler returns a handler whose clock says it has run for 42 s, with
// the real "state" component on dir and a failing fake component "overlay".
func newTestHandler(t *testing.T, name string) (*handler, *state.Node) {
	t.Helper()
	node := testNode(t, name)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, state.FileName), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := newHandler(handlerConfig{
		auth:    newTestAuth(t),
		https:   newTestHTTPS(t),
		version: "v1.2.3",
		board:   "testboard",
		node:    node,
		started: testStart,
		now:     func() time.Time { return testStart.Add(42*time.Second + 900*time.Millisecond) },
		components: map[string]StatusFunc{
			"state": stateStatus(dir),
			"overlay": func(context.Context) ComponentStatus {
				return ComponentStatus{OK: false, Error: "no peers <yet>"}
			},
		},
	})
	if err != nil {
		t.Fatalf("newHandler: %v", err)
	}
	return h, node
}

func do(t *testing.T, h http.Handler, method, target string, hdr ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	setHeaders(req, hdr)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mediaType(t *testing.T, resp *http.Response) string {
	t.Helper()
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type %q: %v", resp.Header.Get("Content-Type"), err)
	}
	return mt
}

func TestStatus(t *testing.T) {
	h, node := newTestHandler(t, "box-a")
	resp := do(t, h, "GET", "/api/v1/status")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status code = %d, want 200", resp.StatusCode)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	var got map[string]any
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("decoding status: %v", err)
	}

	keys := slices.Sorted(maps.Keys(got))
	if want := []string{"board", "components", "node_id", "node_name", "uptime_s", "version"}; !slices.Equal(keys, want) {
		t.Errorf("keys = %q, want %q", keys, want)
	}
	for field, want := range map[string]string{
		"version":   "v1.2.3",
		"board":     "testboard",
		"node_name": "box-a",
		"node_id":   node.ID(),
	} {
		if s, ok := got[field].(string); !ok || s != want {
			t.Errorf("%s = %#v, want string %q", field, got[field], want)
		}
	}
	if n, ok := got["uptime_s"].(json.Number); !ok || n.String() != "42" {
		t.Errorf("uptime_s = %#v, want the integer 42", got["uptime_s"])
	}

	comps, ok := got["components"].(map[string]any)
	if !ok {
		t.Fatalf("components = %#v, want an object", got["components"])
	}
	st, _ := comps["state"].(map[string]any)
	detail, _ := st["detail"].(map[string]any)
	if st["ok"] != true || detail["dir"] == nil || st["error"] != nil {
		t.Errorf("components.state = %#v, want {ok: true, detail: {dir: ...}}", comps["state"])
	}
	ov, _ := comps["overlay"].(map[string]any)
	if ov["ok"] != false || ov["error"] != "no peers <yet>" {
		t.Errorf("components.overlay = %#v, want {ok: false, error: \"no peers <yet>\"}", comps["overlay"])
	}

	if resp := do(t, h, "HEAD", "/api/v1/status"); resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD status code = %d, want 200", resp.StatusCode)
	}
}

func TestStateComponent(t *testing.T) {
	dir := t.TempDir()
	f := stateStatus(dir)
	if s := f(t.Context()); s.OK || !strings.Contains(s.Error, state.FileName) {
		t.Errorf("without node.json: %+v, want not OK with an error naming %s", s, state.FileName)
	}
	if err := os.WriteFile(filepath.Join(dir, state.FileName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if s := f(t.Context()); !s.OK || s.Detail["dir"] != dir {
		t.Errorf("with node.json: %+v, want OK with dir %s", s, dir)
	}
}

func TestAPIErrors(t *testing.T) {
	h, _ := newTestHandler(t, "box-a")
	for _, tc := range []struct {
		method, target string
		wantCode       int
		wantAllow      string
	}{
		{"GET", "/api/v1/nope", http.StatusNotFound, ""},
		{"GET", "/api/v1/", http.StatusNotFound, ""},
		{"GET", "/api/v1/status/extra", http.StatusNotFound, ""},
		{"POST", "/api/v1/nope", http.StatusNotFound, ""},
		{"POST", "/api/v1/status", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"DELETE", "/api/v1/status", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"PUT", "/api/v1/status", http.StatusMethodNotAllowed, "GET, HEAD"},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			resp := do(t, h, tc.method, tc.target)
			if resp.StatusCode != tc.wantCode {
				t.Errorf("status code = %d, want %d", resp.StatusCode, tc.wantCode)
			}
			if got := resp.Header.Get("Allow"); got != tc.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tc.wantAllow)
			}
			if got := mediaType(t, resp); got != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", got)
			}
			dec := json.NewDecoder(resp.Body)
			dec.DisallowUnknownFields()
			var e struct {
				Error string `json:"error"`
			}
			if err := dec.Decode(&e); err != nil || e.Error == "" {
				t.Errorf("body decodes to %+v (err %v), want {\"error\": \"...\"}", e, err)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	h, _ := newTestHandler(t, "box-a")
	resp := do(t, h, "GET", "/metrics")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status code = %d, want 200", resp.StatusCode)
	}
	if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type = %q, want text/plain; version=0.0.4", got)
	}
	text := body(t, resp)
	for _, want := range []string{
		`(?m)^# TYPE cloudbox_build_info gauge$`,
		`(?m)^cloudbox_build_info\{version="v1\.2\.3",board="testboard"\} 1$`,
		`(?m)^# TYPE cloudbox_uptime_seconds gauge$`,
		`(?m)^cloudbox_uptime_seconds 42\.9$`,
		`(?m)^go_goroutines [1-9][0-9]*$`,
		`(?m)^go_memory_classes_heap_objects_bytes [0-9.e+]+$`,
		`(?m)^go_memory_classes_total_bytes [0-9.e+]+$`,
		`(?m)^process_resident_memory_bytes [0-9.e+]+$`,
		`(?m)^go_info\{version="go[^"]+"\} 1$`,
	} {
		if !regexp.MustCompile(want).MatchString(text) {
			t.Errorf("metrics do not match %s:\n%s", want, text)
		}
	}

	checkMetricsFormat(t, text)
}

// checkMetricsFormat checks that every sample line is well formed and
// follows its TYPE line, and that no metric has two TYPE lines.
func checkMetricsFormat(t *testing.T, text string) {
	t.Helper()
	sample := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? [-+0-9.eE]+$`)
	typed := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if typed[strings.Fields(name)[0]] {
				t.Errorf("metric %s has two TYPE lines", strings.Fields(name)[0])
			}
			typed[strings.Fields(name)[0]] = true
			continue
		}
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		m := sample.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("malformed metrics line %q", line)
			continue
		}
		if !typed[m[1]] {
			t.Errorf("metric %s has no TYPE line before it", m[1])
		}
	}
}

func TestWriteMetricEscapes(t *testing.T) {
	var b bytes.Buffer
	writeMetric(&b, "m", "gauge", "h", 1, "board", "a\"b\\c\nd")
	want := "# HELP m h\n# TYPE m gauge\nm{board=\"a\\\"b\\\\c\\nd\"} 1\n"
	if got := b.String(); got != want {
		t.Errorf("writeMetric = %q, want %q", got, want)
	}
}

func TestHealthz(t *testing.T) {
	h, _ := newTestHandler(t, "box-a")
	resp := do(t, h, "GET", "/healthz")
	if got := body(t, resp); resp.StatusCode != http.StatusOK || got != "ok\n" {
		t.Errorf("GET /healthz = %d %q, want 200 \"ok\\n\"", resp.StatusCode, got)
	}
}

func TestDashboard(t *testing.T) {
	h, node := newTestHandler(t, `Tom & Jerry's <box>`)
	resp := do(t, h, "GET", "/")
	if resp.StatusCode != http.StatusOK || mediaType(t, resp) != "text/html" {
		t.Fatalf("GET / = %d %s, want 200 text/html", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	html := body(t, resp)
	for _, want := range []string{
		`<html lang="en">`,
		`<meta name="viewport" content="width=device-width, initial-scale=1">`,
		node.ID(),
		`Tom &amp; Jerry&#39;s &lt;box&gt;`,
		"v1.2.3",
		"testboard",
		">42s<",
		`<a href="/" aria-current="page">Overview</a>`,
		"state", "overlay", "no peers &lt;yet&gt;", "Problem",
		"Community", "Services", "Streams", "Calls", "Gateway", "Storage", "Updates", "Settings",
	} {
		if !strings.Contains(html, want) {
			t.Errorf("dashboard does not contain %q", want)
		}
	}
	for _, bad := range []string{"<box>", "<script", `src="http`, `href="http`, "no peers <yet>"} {
		if strings.Contains(html, bad) {
			t.Errorf("dashboard contains %q", bad)
		}
	}
	soon := 0
	for _, it := range navItems {
		if it.Soon {
			soon++
		}
	}
	if got := strings.Count(html, "(coming soon)"); got != soon || soon == len(navItems) {
		t.Errorf("dashboard marks %d nav items as coming soon, want %d", got, soon)
	}

	// The stylesheet the page links to is served.
	m := regexp.MustCompile(`<link rel="stylesheet" href="([^"]+)">`).FindStringSubmatch(html)
	if m == nil {
		t.Fatal("dashboard links no stylesheet")
	}
	if resp := do(t, h, "GET", m[1]); resp.StatusCode != http.StatusOK || mediaType(t, resp) != "text/css" {
		t.Errorf("GET %s = %d %s, want 200 text/css", m[1], resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestPlaceholderPages(t *testing.T) {
	h, _ := newTestHandler(t, "box-a")
	for _, item := range navItems {
		if !item.Soon {
			continue
		}
		t.Run(item.Label, func(t *testing.T) {
			resp := do(t, h, "GET", item.Path)
			html := body(t, resp)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s = %d, want 200", item.Path, resp.StatusCode)
			}
			for _, want := range []string{
				"<h1>" + item.Label + ` <span class="soon big">coming soon</span></h1>`,
				`<a href="` + item.Path + `" aria-current="page" class="is-soon">`,
				item.Blurb,
			} {
				if !strings.Contains(html, want) {
					t.Errorf("page does not contain %q", want)
				}
			}
		})
	}
}

func TestPanelErrors(t *testing.T) {
	h, _ := newTestHandler(t, "box-a")
	for _, tc := range []struct {
		method, target string
		wantCode       int
		wantMedia      string
		wantBody       string
	}{
		{"GET", "/nope", http.StatusNotFound, "text/html", "<code>/nope</code>"},
		{"GET", "/static/nope.css", http.StatusNotFound, "text/html", "Page not found"},
		{"GET", "/static/", http.StatusNotFound, "text/html", "Page not found"},
		{"POST", "/", http.StatusMethodNotAllowed, "text/plain", "use GET"},
		{"POST", "/metrics", http.StatusMethodNotAllowed, "text/plain", "use GET"},
		{"DELETE", "/community", http.StatusMethodNotAllowed, "text/plain", "use GET"},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			resp := do(t, h, tc.method, tc.target)
			if resp.StatusCode != tc.wantCode || mediaType(t, resp) != tc.wantMedia {
				t.Errorf("= %d %s, want %d %s", resp.StatusCode, mediaType(t, resp), tc.wantCode, tc.wantMedia)
			}
			if got := body(t, resp); !strings.Contains(got, tc.wantBody) {
				t.Errorf("body = %q, want it to contain %q", got, tc.wantBody)
			}
		})
	}
}

func TestStatic(t *testing.T) {
	h, _ := newTestHandler(t, "box-a")
	css := h.static["style.css"]
	for _, tc := range []struct {
		name, target string
		hdr          []string
		wantCode     int
		wantCache    string
	}{
		{"current hash", "/static/style.css?h=" + css.hash, nil, http.StatusOK, "public, max-age=31536000, immutable"},
		{"no hash", "/static/style.css", nil, http.StatusOK, "no-cache"},
		{"old hash", "/static/style.css?h=0000", nil, http.StatusOK, "no-cache"},
		{"revalidated", "/static/style.css", []string{"If-None-Match", `"` + css.hash + `"`}, http.StatusNotModified, "no-cache"},
		{"icon", "/static/favicon.svg", nil, http.StatusOK, "no-cache"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := do(t, h, "GET", tc.target, tc.hdr...)
			if resp.StatusCode != tc.wantCode {
				t.Errorf("status code = %d, want %d", resp.StatusCode, tc.wantCode)
			}
			if got := resp.Header.Get("Cache-Control"); got != tc.wantCache {
				t.Errorf("Cache-Control = %q, want %q", got, tc.wantCache)
			}
			if got := resp.Header.Get("ETag"); got == "" {
				t.Error("no ETag")
			}
		})
	}
	if resp := do(t, h, "GET", "/static/favicon.svg"); mediaType(t, resp) != "image/svg+xml" {
		t.Errorf("favicon Content-Type = %q, want image/svg+xml", resp.Header.Get("Content-Type"))
	}
	// Nothing may come from elsewhere: the CSP would block it anyway.
	if s := string(css.content); strings.Contains(s, "url(") || strings.Contains(s, "@import") {
		t.Error("style.css loads other resources")
	}
}

func TestSecurityHeaders(t *testing.T) {
	h, _ := newTestHandler(t, "box-a")
	want := map[string]string{
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": "default-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
		"Referrer-Policy":         "same-origin",
		"X-Frame-Options":         "DENY",
	}
	for _, target := range []string{
		"GET /", "GET /community", "GET /nope", "POST /",
		"GET /api/v1/status", "GET /api/v1/nope", "POST /api/v1/status",
		"GET /metrics", "GET /healthz", "GET /static/style.css", "GET /api/v1",
	} {
		t.Run(target, func(t *testing.T) {
			method, path, _ := strings.Cut(target, " ")
			resp := do(t, h, method, path)
			for k, v := range want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestFormatUptime(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{999 * time.Millisecond, "0s"},
		{59 * time.Second, "59s"},
		{61 * time.Second, "1m 1s"},
		{time.Hour + 2*time.Minute + 3*time.Second, "1h 2m"},
		{49*time.Hour + 5*time.Minute, "2d 1h"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if got := formatUptime(tc.d); got != tc.want {
				t.Errorf("formatUptime(%v) = %q, want %q", tc.d, got, tc.want)
			}
		})
	}
}
