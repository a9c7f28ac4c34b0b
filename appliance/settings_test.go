package appliance

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLogRing(t *testing.T) {
	ring := newLogRing()
	var out bytes.Buffer
	log := slog.New(ring.handler(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn})))
	dns := log.With("component", "dns")
	dns.Info("upstream answered", "upstream", "192.0.2.53", "token", "cbt_secret1")
	log.WithGroup("req").Warn("login failed", "account", "alice", "password", "hunter22", "note", "has cbp1_abc inside", slog.Group("g", "setup_code", "ABCD"))
	log.Error("invitation", "value", "cloudbox-invite:xyz", "n", 3, "ctl", "a\x00b")
	log.Debug("not kept")

	recs := ring.records(logFilter{Level: slog.LevelDebug, Limit: 10})
	if len(recs) != 3 {
		t.Fatalf("records = %+v, want 3", recs)
	}
	if recs[0].Message != "invitation" || recs[2].Component != "dns" || recs[1].Component != "daemon" {
		t.Errorf("records not newest first with components: %+v", recs)
	}
	all := ""
	for _, r := range recs {
		for k, v := range r.Attrs {
			all += k + "=" + v + " "
		}
	}
	for _, secret := range []string{"cbt_secret1", "hunter22", "cbp1_abc", "ABCD", "cloudbox-invite:"} {
		if strings.Contains(all, secret) {
			t.Errorf("a secret %q is in the ring: %s", secret, all)
		}
	}
	for _, want := range []string{"upstream=192.0.2.53", "req.account=alice", "req.g.setup_code=" + redacted, "n=3", "ctl=a b"} {
		if !strings.Contains(all, want) {
			t.Errorf("ring lacks %q: %s", want, all)
		}
	}
	// The next handler gets what it asked for, unchanged.
	if s := out.String(); strings.Contains(s, "upstream answered") || !strings.Contains(s, "login failed") {
		t.Errorf("next handler got:\n%s", s)
	}
	if got := ring.records(logFilter{Level: slog.LevelWarn, Limit: 10}); len(got) != 2 {
		t.Errorf("warn and above: %d records, want 2", len(got))
	}
	if got := ring.records(logFilter{Component: "dns", Limit: 10}); len(got) != 1 {
		t.Errorf("component dns: %d records, want 1", len(got))
	}
	if got := ring.components(); strings.Join(got, ",") != "daemon,dns" {
		t.Errorf("components = %q", got)
	}
	// The ring keeps the newest logRecords.
	for i := range logRecords + 5 {
		log.Info("filler", "i", i)
	}
	got := ring.records(logFilter{Limit: logRecords + 10})
	if len(got) != logRecords || got[0].Attrs["i"] != "2004" || got[len(got)-1].Attrs["i"] != "5" {
		t.Errorf("after overflow: %d records, newest %v, oldest %v", len(got), got[0].Attrs, got[len(got)-1].Attrs)
	}
	for _, q := range []string{"level=loud", "limit=0", "limit=x"} {
		v, _ := url.ParseQuery(q)
		if _, err := parseLogFilter(v); err == nil {
			t.Errorf("parseLogFilter(%s): no error", q)
		}
	}
}

func FuzzParseLogFilter(f *testing.F) {
	f.Add("level=warn&component=dns&limit=5")
	f.Add("limit=99999999999999999999")
	f.Fuzz(func(t *testing.T, q string) {
		v, err := url.ParseQuery(q)
		if err != nil {
			return
		}
		if lf, err := parseLogFilter(v); err == nil && (lf.Limit < 1 || lf.Limit > logRecords) {
			t.Fatalf("limit %d accepted", lf.Limit)
		}
	})
}

// TestSettingsAndLogsPages changes the box's settings on the Settings page
// and finds the change on the Logs page.
func TestSettingsAndLogsPages(t *testing.T) {
	h, _ := newTestHandler(t, "b1")
	h.cfg.overlay = &fakeOverlay{v: overlayView{State: "not a member", NotMember: true}}
	h.cfg.logger = slog.New(h.cfg.logs.handler(slog.DiscardHandler))
	b := wizard(t, h)

	resp, page := b.do("GET", "/settings", nil)
	wantCode(t, "GET /settings", resp, page, http.StatusOK)
	if !strings.Contains(page, `value="rooftop"`) || !strings.Contains(page, h.cfg.https.ca.fingerprint()) || !strings.Contains(page, `action="/settings/restore"`) {
		t.Errorf("settings page lacks the name, fingerprint or restore form:\n%s", page)
	}
	tok := b.csrf("/settings")
	resp, page = b.do("POST", "/settings/box", url.Values{"csrf": {tok}, "name": {"Bad Name!"}, "location": {"x"}})
	wantCode(t, "bad name", resp, page, http.StatusBadRequest)
	if !strings.Contains(page, `id="name-error"`) {
		t.Errorf("bad name not marked at its field:\n%s", page)
	}
	resp, page = b.do("POST", "/settings/box", url.Values{"name": {"attic"}})
	wantCode(t, "settings without CSRF token", resp, page, http.StatusForbidden)
	resp, page = b.do("POST", "/settings/box", url.Values{"csrf": {tok}, "name": {"attic"}, "location": {"Plaça 1"}})
	wantCode(t, "POST /settings/box", resp, page, http.StatusOK)
	if got := h.cfg.auth.accounts.box(); got != (boxSettings{"attic", "Plaça 1"}) {
		t.Errorf("box settings = %+v", got)
	}
	stored, _ := os.ReadFile(filepath.Join(filepath.Dir(h.cfg.auth.accounts.path), AccountsFile))
	if !strings.Contains(string(stored), `"attic"`) {
		t.Errorf("settings not stored: %s", stored)
	}

	resp, page = b.do("POST", "/settings/backup", url.Values{"csrf": {tok}, "password": {"long enough pw"}, "password2": {"other enough pw"}})
	wantCode(t, "backup with differing passwords", resp, page, http.StatusBadRequest)
	if !strings.Contains(page, `id="backup-password-error"`) {
		t.Errorf("backup password error not at its field:\n%s", page)
	}

	resp, page = b.do("GET", "/logs?level=info&component=daemon", nil)
	wantCode(t, "GET /logs", resp, page, http.StatusOK)
	if !strings.Contains(page, "settings changed") || !strings.Contains(page, "attic") {
		t.Errorf("logs page lacks the settings change:\n%s", page)
	}
	resp, page = b.do("GET", "/logs?level=error", nil)
	if strings.Contains(page, "settings changed") {
		t.Errorf("logs filtered by level error show an info record")
	}
	resp, page = b.do("GET", "/logs?limit=-1", nil)
	wantCode(t, "GET /logs with a bad limit", resp, page, http.StatusBadRequest)

	// The log API is for administrators.
	if resp := do(t, h, "GET", "/api/v1/logs", "Authorization", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous GET /api/v1/logs = %d", resp.StatusCode)
	}
	if resp := do(t, h, "GET", "/api/v1/logs?component=daemon"); resp.StatusCode != http.StatusOK || !strings.Contains(body(t, resp), "settings changed") {
		t.Errorf("GET /api/v1/logs = %d", resp.StatusCode)
	}
}
