package appliance

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// browser is a cookie-keeping client of a handler, as a browser is: it
// sends Sec-Fetch-Site: same-origin like Chromium does for the panel's own
// forms.
type browser struct {
	t      *testing.T
	h      http.Handler
	cookie string
	remote string
}

func (b *browser) do(method, target string, form url.Values, hdr ...string) (*http.Response, string) {
	b.t.Helper()
	var req *http.Request
	if form != nil {
		req = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	req.RemoteAddr = b.remote
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if b.cookie != "" {
		req.Header.Set("Cookie", sessionCookie+"="+b.cookie)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	b.h.ServeHTTP(rec, req)
	resp := rec.Result()
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			b.cookie = c.Value
			if c.MaxAge < 0 {
				b.cookie = ""
			}
		}
	}
	return resp, rec.Body.String()
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token of a page.
func (b *browser) csrf(page string) string {
	b.t.Helper()
	_, body := b.do("GET", page, nil)
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		b.t.Fatalf("no CSRF token on %s:\n%s", page, body)
	}
	return m[1]
}

func wantCode(t *testing.T, what string, resp *http.Response, body string, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("%s = %d, want %d\n%s", what, resp.StatusCode, code, body)
	}
}

// wizard runs the first-boot wizard on h to its end, with a join on the
// fake overlay, and returns the administrator's browser.
func wizard(t *testing.T, h *handler) *browser {
	t.Helper()
	b := &browser{t: t, h: h, remote: "192.0.2.10:5000"}
	resp, body := b.do("GET", "/", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/setup" {
		t.Fatalf("GET / before setup = %d %s, want a redirect to /setup", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body = b.do("POST", "/setup", url.Values{"code": {"WRONG-CODE-0000"}})
	wantCode(t, "POST /setup with a wrong code", resp, body, http.StatusUnauthorized)
	if !strings.Contains(body, `aria-invalid="true"`) || !strings.Contains(body, "not the setup code") {
		t.Errorf("wrong code page does not mark the field:\n%s", body)
	}
	// The code, as someone would type it: lowercase, without dashes.
	code := strings.ToLower(strings.ReplaceAll(h.cfg.auth.setup.code, "-", ""))
	resp, body = b.do("POST", "/setup", url.Values{"code": {code}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/setup/account" || b.cookie == "" {
		t.Fatalf("POST /setup with the code = %d %s, want a session and /setup/account\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	// A wizard session is not a login.
	if resp, body := b.do("GET", "/api/v1/overlay/peers", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API with a wizard session = %d, want 401\n%s", resp.StatusCode, body)
	}
	tok := b.csrf("/setup/account")
	resp, body = b.do("POST", "/setup/account", url.Values{"csrf": {tok}, "username": {"admin"}, "password": {"short"}, "password2": {"short"}})
	wantCode(t, "short password", resp, body, http.StatusBadRequest)
	resp, body = b.do("POST", "/setup/account", url.Values{"username": {"admin"}, "password": {"correct horse battery"}, "password2": {"correct horse battery"}})
	wantCode(t, "account without CSRF token", resp, body, http.StatusForbidden)
	resp, body = b.do("POST", "/setup/account", url.Values{"csrf": {tok}, "username": {"admin"}, "password": {"correct horse battery"}, "password2": {"correct horse battery"}})
	wantCode(t, "POST /setup/account", resp, body, http.StatusSeeOther)
	resp, body = b.do("POST", "/setup/box", url.Values{"csrf": {tok}, "name": {"Not A Label!"}})
	wantCode(t, "bad box name", resp, body, http.StatusBadRequest)
	resp, body = b.do("POST", "/setup/box", url.Values{"csrf": {tok}, "name": {"rooftop"}, "location": {"Carrer Major 5"}})
	wantCode(t, "POST /setup/box", resp, body, http.StatusSeeOther)
	resp, body = b.do("POST", "/setup/community", url.Values{"csrf": {tok}, "action": {"join"}, "token": {"cloudbox-invite:ok"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/setup/progress" {
		t.Fatalf("POST /setup/community = %d %s, want /setup/progress\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	return b
}

func TestWizardAndSessions(t *testing.T) {
	h, _ := newTestHandler(t, "b1")
	ov := &fakeOverlay{v: overlayView{State: "not a member", NotMember: true}}
	h.cfg.overlay = ov
	codeFile := h.cfg.auth.setup.path
	if b, err := os.ReadFile(codeFile); err != nil || !strings.Contains(string(b), h.cfg.auth.setup.code) {
		t.Fatalf("setup code file = %q %v, want the code", b, err)
	}
	b := wizard(t, h)
	if len(ov.joined) != 1 {
		t.Errorf("joins = %q, want the wizard's", ov.joined)
	}
	if _, err := os.Stat(codeFile); !os.IsNotExist(err) {
		t.Errorf("setup code file after setup: %v, want it removed", err)
	}
	// The wizard cannot run again.
	if resp, _ := b.do("POST", "/setup", url.Values{"code": {h.cfg.auth.setup.code}}); resp.Header.Get("Location") != "/" {
		t.Errorf("POST /setup after setup = %d %s, want a redirect to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := b.do("GET", "/", nil)
	wantCode(t, "dashboard after the wizard", resp, body, http.StatusOK)
	if !strings.Contains(body, "rooftop") || !strings.Contains(body, "Log out") {
		t.Errorf("dashboard does not show the box name and a logout button:\n%s", body)
	}
	if c := resp.Header.Get("Cache-Control"); c != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", c)
	}

	// The session works for the API, with the CSRF header for changes.
	tok := b.csrf("/accounts")
	resp, body = b.do("GET", "/api/v1/overlay/peers", nil, "Authorization", "")
	if resp.StatusCode == http.StatusUnauthorized {
		t.Errorf("API GET with the session = 401\n%s", body)
	}
	svc := `{"instance": "wiki", "type": "_http._tcp", "port": 8080}`
	for _, tc := range []struct {
		name string
		hdr  []string
		want int
	}{
		{"without CSRF header", []string{"Content-Type", "application/json"}, http.StatusForbidden},
		{"with CSRF header", []string{"Content-Type", "application/json", csrfHeader, tok}, http.StatusServiceUnavailable}, // no catalog
	} {
		req := httptest.NewRequest("POST", "/api/v1/services", strings.NewReader(svc))
		req.Header.Set("Cookie", sessionCookie+"="+b.cookie)
		for i := 0; i < len(tc.hdr); i += 2 {
			req.Header.Set(tc.hdr[i], tc.hdr[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("POST /api/v1/services with the session %s = %d, want %d: %s", tc.name, rec.Code, tc.want, rec.Body)
		}
	}

	// An API token made on the accounts page works, and is refused once
	// deleted.
	resp, body = b.do("POST", "/accounts/edit", url.Values{"csrf": {tok}, "action": {"token-create"}, "label": {"script"}})
	wantCode(t, "token-create", resp, body, http.StatusOK)
	secret := regexp.MustCompile(`cbt_[A-Z2-7]+`).FindString(body)
	if secret == "" {
		t.Fatalf("no token on the page:\n%s", body)
	}
	api := func(token string) int {
		return do(t, h, "GET", "/api/v1/overlay/peers", "Authorization", "Bearer "+token).StatusCode
	}
	if code := api(secret); code == http.StatusUnauthorized || code == http.StatusForbidden {
		t.Errorf("API with the new token = %d", code)
	}
	id := h.cfg.auth.accounts.tokens("admin")[0].ID
	resp, body = b.do("POST", "/accounts/edit", url.Values{"csrf": {tok}, "action": {"token-delete"}, "id": {id}})
	wantCode(t, "token-delete", resp, body, http.StatusOK)
	if code := api(secret); code != http.StatusUnauthorized {
		t.Errorf("API with a deleted token = %d, want 401", code)
	}

	// A member may publish but not join, invite or manage accounts.
	resp, body = b.do("POST", "/accounts/edit", url.Values{"csrf": {tok}, "action": {"account-create"}, "username": {"ana"}, "role": {"member"},
		"password": {"ana's long password"}, "password2": {"ana's long password"}})
	wantCode(t, "account-create", resp, body, http.StatusOK)
	m := &browser{t: t, h: h, remote: "192.0.2.11:5000"}
	resp, body = m.do("POST", "/login", url.Values{"username": {"ana"}, "password": {"ana's long password"}, "next": {"//evil.example/"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("member login = %d %s, want a redirect to / (not off-site)\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	mtok := m.csrf("/accounts")
	resp, body = m.do("POST", "/community/join", url.Values{"csrf": {mtok}, "token": {"cloudbox-invite:x"}})
	wantCode(t, "member joining", resp, body, http.StatusForbidden)
	resp, body = m.do("POST", "/accounts/edit", url.Values{"csrf": {mtok}, "action": {"account-delete"}, "username": {"admin"}})
	wantCode(t, "member deleting the admin", resp, body, http.StatusForbidden)
	resp, body = m.do("POST", "/api/v1/overlay/revoke", nil, "Content-Type", "application/json", csrfHeader, mtok)
	wantCode(t, "member revoking", resp, body, http.StatusForbidden)

	// Logging out ends the session.
	resp, body = m.do("POST", "/logout", url.Values{"csrf": {mtok}})
	wantCode(t, "logout", resp, body, http.StatusSeeOther)
	if resp, _ := m.do("GET", "/services", nil); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Errorf("GET /services after logout = %d %s, want a redirect to /login", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Deleting an account ends its sessions.
	m2 := &browser{t: t, h: h, remote: "192.0.2.12:5000"}
	m2.do("POST", "/login", url.Values{"username": {"ana"}, "password": {"ana's long password"}})
	resp, body = b.do("POST", "/accounts/edit", url.Values{"csrf": {tok}, "action": {"account-delete"}, "username": {"ana"}})
	wantCode(t, "account-delete", resp, body, http.StatusOK)
	if resp, _ := m2.do("GET", "/", nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("GET / by a deleted account = %d, want a redirect to the login", resp.StatusCode)
	}
}

func TestCSRFAndAnonymous(t *testing.T) {
	h, _ := newTestHandler(t, "b1")
	h.cfg.overlay = &fakeOverlay{v: overlayView{State: "not a member", NotMember: true}}
	b := wizard(t, h)
	tok := b.csrf("/community")
	join := url.Values{"token": {"cloudbox-invite:x"}}
	for _, tc := range []struct {
		name string
		b    *browser
		form url.Values
		hdr  []string
		want int
	}{
		{"session without the token", b, join, nil, http.StatusForbidden},
		{"session with a wrong token", b, url.Values{"csrf": {"nope"}, "token": {"x"}}, nil, http.StatusForbidden},
		{"from another site", b, url.Values{"csrf": {tok}, "token": {"x"}}, []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"without a session", &browser{t: t, h: h}, url.Values{"csrf": {tok}, "token": {"x"}}, nil, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := tc.b.do("POST", "/community/join", tc.form, tc.hdr...)
			wantCode(t, "POST /community/join", resp, body, tc.want)
		})
	}

	// Anonymous API calls are refused, except the reduced status.
	for _, target := range []string{"/api/v1/overlay/peers", "/api/v1/services", "/api/v1/dns", "/metrics"} {
		resp := do(t, h, "GET", target, "Authorization", "")
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("anonymous GET %s = %d, want 401 with WWW-Authenticate", target, resp.StatusCode)
		}
	}
	for _, target := range []string{"/api/v1/overlay/join", "/api/v1/services", "/api/v1/overlay/revoke"} {
		resp := post(t, h, target, "application/json", `{"token": "cloudbox-invite:x"}`, "Authorization", "")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("anonymous POST %s = %d, want 401", target, resp.StatusCode)
		}
	}
	if resp := do(t, h, "GET", "/api/v1/status", "Authorization", "Bearer wrong"); resp.StatusCode != http.StatusOK {
		t.Errorf("status with a wrong token = %d, want 200 (public)", resp.StatusCode)
	}
	resp := do(t, h, "GET", "/api/v1/status", "Authorization", "")
	var st statusResponse
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.Components["state"].Detail != nil {
		t.Errorf("anonymous status = %+v %v, want no component details", st, err)
	}
	for _, page := range []string{"/", "/community", "/services", "/accounts", "/streams"} {
		resp := do(t, h, "GET", page, "Authorization", "")
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login?next=") {
			t.Errorf("anonymous GET %s = %d %s, want a redirect to the login", page, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	for _, page := range []string{"/login", "/healthz", "/static/style.css"} {
		if resp := do(t, h, "GET", page, "Authorization", ""); resp.StatusCode != http.StatusOK {
			t.Errorf("anonymous GET %s = %d, want 200", page, resp.StatusCode)
		}
	}
}

func TestLoginRateLimit(t *testing.T) {
	h, _ := newTestHandler(t, "b1")
	h.cfg.overlay = &fakeOverlay{v: overlayView{State: "not a member", NotMember: true}}
	wizard(t, h)
	now := testStart
	h.cfg.auth.limiter.now = func() time.Time { return now }
	login := func(remote, name, password string) *http.Response {
		b := &browser{t: t, h: h, remote: remote}
		resp, _ := b.do("POST", "/login", url.Values{"username": {name}, "password": {password}})
		return resp
	}
	// Per account: five failures from different clients, then even the
	// right password waits.
	for i := range int(loginPerAccount.burst) {
		if resp := login("198.51.100."+string(rune('1'+i))+":1", "admin", "wrong password"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d = %d, want 401", i+1, resp.StatusCode)
		}
	}
	resp := login("198.51.100.9:1", "admin", "correct horse battery")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "30" {
		t.Errorf("login after %v failures = %d Retry-After %q, want 429 after 30 s", loginPerAccount.burst, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	now = now.Add(loginPerAccount.per)
	if resp := login("198.51.100.9:1", "admin", "correct horse battery"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("login %v later = %d, want 303", loginPerAccount.per, resp.StatusCode)
	}
	// Per client: ten failures on any names, then the client waits.
	for i := range int(loginPerClient.burst) {
		if resp := login("203.0.113.5:1", "nobody"+string(rune('a'+i)), "x"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("client failure %d = %d, want 401", i+1, resp.StatusCode)
		}
	}
	if resp := login("203.0.113.5:2", "other", "x"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("client after %v failures = %d, want 429", loginPerClient.burst, resp.StatusCode)
	}
	// The wizard's code is limited too.
	h2, _ := newTestHandler(t, "b2")
	for i := range int(codePerClient.burst) + 1 {
		b := &browser{t: t, h: h2, remote: "203.0.113.6:1"}
		resp, _ := b.do("POST", "/setup", url.Values{"code": {"nope"}})
		want := http.StatusUnauthorized
		if i == int(codePerClient.burst) {
			want = http.StatusTooManyRequests
		}
		if resp.StatusCode != want {
			t.Errorf("setup code attempt %d = %d, want %d", i+1, resp.StatusCode, want)
		}
	}
}

func TestAccountsFile(t *testing.T) {
	dir := t.TempDir()
	s, err := openAccounts(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.setAccount("admin", roleAdmin, "a long password", false, testStart); err != nil {
		t.Fatal(err)
	}
	if err := s.setAccount("admin", roleAdmin, "another password", false, testStart); err != errAccountExists {
		t.Errorf("second admin = %v, want errAccountExists", err)
	}
	secret, _, err := s.newToken("admin", "x", testStart)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.finishSetup(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, PanelDir, AccountsFile)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("accounts file: %v %v, want mode 0600", fi, err)
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), "a long password") || strings.Contains(string(b), secret) {
		t.Errorf("accounts file holds a secret in clear:\n%s", b)
	}
	s2, err := openAccounts(dir)
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	if _, ok := s2.authenticate("admin", "a long password"); !ok || !s2.setupDone() {
		t.Errorf("reopened store: password refused or setup not done")
	}
	if _, ok := s2.authenticate("admin", "a long passworD"); ok {
		t.Errorf("wrong password accepted")
	}
	if a, ok := s2.tokenAccount(secret); !ok || a.Name != "admin" {
		t.Errorf("token after reopening = %v %v", a, ok)
	}
	if err := s2.deleteAccount("admin"); err != errLastAdmin {
		t.Errorf("deleting the last admin = %v, want errLastAdmin", err)
	}
	if err := os.WriteFile(path, []byte(`{"version": 1, "setup_done": true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openAccounts(dir); err == nil || !strings.Contains(err.Error(), "setup_done") {
		t.Errorf("setup done without admin = %v, want an error naming setup_done", err)
	}
}

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"/services": "/services", "/community?x=1": "/community?x=1", "": "/", "//evil.example/": "/",
		"https://evil.example/": "/", "/\\evil.example": "/", "services": "/",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzLocalPath(f *testing.F) {
	for _, s := range []string{"/services", "//evil.example/", "https://x/", "/\\x", "/%2F/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p := localPath(s)
		u, err := url.Parse(p)
		if err != nil || u.Host != "" || u.Scheme != "" || !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") {
			t.Errorf("localPath(%q) = %q, which may leave the box", s, p)
		}
	})
}

func FuzzDecodeAccounts(f *testing.F) {
	h, _ := hashPassword("seed password")
	f.Add([]byte(`{"version": 1, "setup_done": true, "accounts": [{"name": "admin", "role": "admin", "hash": "` + h + `"}]}`))
	f.Add([]byte(`{"version": 1, "tokens": [{"id": "x", "account": "a", "hash": "00"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := decodeAccounts(b)
		if err != nil {
			return
		}
		// What loads is consistent: tokens belong to accounts, roles known.
		names := map[string]bool{}
		for _, acc := range a.Accounts {
			names[acc.Name] = true
			if acc.Role != roleAdmin && acc.Role != roleMember {
				t.Errorf("role %q loaded", acc.Role)
			}
		}
		for _, tk := range a.Tokens {
			if !names[tk.Account] {
				t.Errorf("token of unknown account %q loaded", tk.Account)
			}
		}
	})
}

func FuzzCheckPassword(f *testing.F) {
	h, _ := hashPassword("pw")
	f.Add(h, "pw")
	f.Add("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "x")
	f.Fuzz(func(t *testing.T, encoded, pw string) {
		checkPassword(encoded, pw) // must not panic or hash without bounds
	})
}
