package appliance

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/appliance/state"
	"github.com/cloudbox/cloudbox/internal/testenv"
)

// newStorageServer returns the panel with the storage component (quota
// 1 MiB, no overlay) and the accounts alice and bob, on loopback.
func newStorageServer(t *testing.T) (*handler, *httptest.Server) {
	t.Helper()
	h, node := newTestHandler(t, "box")
	addTestStorage(t, h, node)
	a := h.cfg.auth.accounts
	if err := a.setAccount("admin", roleAdmin, "admin password 123", false, testStart); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice", "bob"} {
		if err := a.setAccount(name, roleMember, name+" password 123", false, testStart); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.finishSetup(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv
}

// addTestStorage gives h the storage component (quota 1 MiB, no overlay).
func addTestStorage(t *testing.T, h *handler, node *state.Node) {
	t.Helper()
	dir := t.TempDir()
	logger := slog.New(slog.DiscardHandler)
	ov := &overlayService{cfg: OverlayConfig{}.withDefaults(), log: logger}
	ov.catalog = newCatalogService(dir, logger, &ov.changed)
	copy(ov.key[:], node.PrivateKey.Bytes())
	st, err := openStorage(StorageConfig{Quota: 1 << 20}, dir, node, ov, logger, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	h.cfg.storage = st
}

// TestStorageWebDAVAccounts: WebDAV clients log in with the panel's
// accounts (password or API token), each sees only its own folder, share
// links work without an account, and the API and pages show the folder.
func TestStorageWebDAVAccounts(t *testing.T) {
	testenv.RequireCommand(t, "curl", "curl")
	h, srv := newStorageServer(t)
	dav := srv.URL + "/dav"
	req, _ := http.NewRequest(http.MethodPut, dav+"/note.txt", strings.NewReader("hello from alice"))
	req.SetBasicAuth("alice", "alice password 123")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT as alice = %d", resp.StatusCode)
	}
	if body, code := testenv.Curl(t, nil, "-u", "alice:alice password 123", dav+"/note.txt"); code != "200" || body != "hello from alice" {
		t.Fatalf("GET as alice = %s %q", code, body)
	}
	// Members' files must not run scripts on the panel's origin.
	if hdr, _ := testenv.Curl(t, nil, "-D", "-", "-o", "/dev/null", "-u", "alice:alice password 123", dav+"/note.txt"); !strings.Contains(hdr, "Content-Security-Policy: "+userContentPolicy) {
		t.Fatalf("WebDAV GET headers lack the sandbox policy:\n%s", hdr)
	}
	if _, code := testenv.Curl(t, nil, "-u", "alice:wrong", dav+"/note.txt"); code != "401" {
		t.Fatalf("GET with a wrong password = %s, want 401", code)
	}
	if _, code := testenv.Curl(t, nil, dav+"/note.txt"); code != "401" {
		t.Fatalf("GET without an account = %s, want 401", code)
	}
	if _, code := testenv.Curl(t, nil, "-u", "bob:bob password 123", dav+"/note.txt"); code != "404" {
		t.Fatalf("GET of alice's file as bob = %s, want 404", code)
	}
	tok, _, err := h.cfg.auth.accounts.newToken("alice", "rclone", testStart)
	if err != nil {
		t.Fatal(err)
	}
	if body, code := testenv.Curl(t, nil, "-u", "alice:"+tok, "-X", "PROPFIND", "-H", "Depth: 1", dav+"/"); code != "207" || !strings.Contains(body, "note.txt") {
		t.Fatalf("PROPFIND with an API token as password = %s:\n%s", code, body)
	}
	if _, code := testenv.Curl(t, nil, "-u", "bob:"+tok, dav+"/"); code != "401" {
		t.Fatalf("alice's token as bob's password = %s, want 401", code)
	}

	// API: the folder, and a share link anyone can open.
	var info StorageInfo
	if code := getJSON(t, http.DefaultClient, srv.URL+"/api/v1/storage", tok, &info); code != http.StatusOK ||
		info.Folder == nil || info.Folder.Used != int64(len("hello from alice")) || info.Folder.Quota != 1<<20 {
		t.Fatalf("GET /api/v1/storage = %d %+v", code, info.Folder)
	}
	req, _ = http.NewRequest(http.MethodPost, srv.URL+"/api/v1/storage/links", strings.NewReader(`{"path":"/note.txt"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var link struct{ Token string }
	json.NewDecoder(resp.Body).Decode(&link)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || link.Token == "" {
		t.Fatalf("POST /api/v1/storage/links = %d", resp.StatusCode)
	}
	if body, code := testenv.Curl(t, nil, srv.URL+"/s/"+link.Token); code != "200" || body != "hello from alice" {
		t.Fatalf("share link = %s %q", code, body)
	}
	if _, code := testenv.Curl(t, nil, srv.URL+"/s/"+link.Token+"x"); code != "404" {
		t.Fatalf("wrong share link = %s, want 404", code)
	}

	// The vault needs boxes: a clear error without them.
	req, _ = http.NewRequest(http.MethodPost, srv.URL+"/api/v1/storage/vault?name=a.txt", bytes.NewReader([]byte("secret")))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "--vault-offer") {
		t.Fatalf("vault store without boxes = %d %s", resp.StatusCode, b)
	}

	// Metrics.
	if b := body(t, do(t, h, http.MethodGet, "/metrics")); !strings.Contains(b, "cloudbox_storage_webdav_uploads_total 1\n") {
		t.Errorf("metrics lack the upload:\n%s", b)
	} else {
		checkMetricsFormat(t, b)
	}

	// Pages.
	for _, p := range []string{"/storage", "/storage/files", "/storage/files?path=/"} {
		resp := do(t, h, http.MethodGet, p, "Authorization", "Bearer "+tok)
		if b := body(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(b, "storage.js") {
			t.Errorf("GET %s = %d:\n%s", p, resp.StatusCode, b)
		}
	}
	if b := body(t, do(t, h, http.MethodGet, "/storage/files", "Authorization", "Bearer "+tok)); !strings.Contains(b, "note.txt") {
		t.Errorf("the file browser does not list note.txt:\n%s", b)
	}
}
