package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/testenv"
)

// davServer serves the folders of f over WebDAV on loopback, with Basic
// auth for alice and bob (password "secret").
func davServer(t *testing.T, quota int64) (*Folders, *httptest.Server) {
	t.Helper()
	f, err := New(Config{Root: t.TempDir(), Quota: quota})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/dav/", func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || pass != "secret" || (user != "alice" && user != "bob") {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "log in", http.StatusUnauthorized)
			return
		}
		f.ServeDAV(w, r, user)
	})
	mux.HandleFunc("/s/{token}", func(w http.ResponseWriter, r *http.Request) { f.ServeLink(w, r, r.PathValue("token")) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv
}

// curl runs curl as alice.
func curl(t *testing.T, stdin []byte, args ...string) (string, string) {
	t.Helper()
	return testenv.Curl(t, stdin, append([]string{"-u", "alice:secret"}, args...)...)
}

func TestWebDAVCurl(t *testing.T) {
	testenv.RequireCommand(t, "curl", "curl")
	f, srv := davServer(t, 1<<20)
	dir := t.TempDir()
	data := make([]byte, 300<<10)
	rand.Read(data)
	local := filepath.Join(dir, "photo.bin")
	os.WriteFile(local, data, 0o600)
	base := srv.URL + "/dav"

	if _, code := curl(t, nil, "-X", "MKCOL", base+"/pics/"); code != "201" {
		t.Fatalf("MKCOL = %s, want 201", code)
	}
	if _, code := curl(t, nil, "-T", local, base+"/pics/photo.bin"); code != "201" {
		t.Fatalf("PUT = %s, want 201", code)
	}
	body, code := curl(t, nil, "-X", "PROPFIND", "-H", "Depth: 1", base+"/pics/")
	if code != "207" || !strings.Contains(body, "/dav/pics/photo.bin") || strings.Contains(body, uploadPrefix) {
		t.Fatalf("PROPFIND = %s:\n%s", code, body)
	}
	out := filepath.Join(dir, "back.bin")
	if _, code := curl(t, nil, "-o", out, base+"/pics/photo.bin"); code != "200" {
		t.Fatalf("GET = %s", code)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
		t.Fatalf("downloaded %d bytes differ from the %d uploaded", len(got), len(data))
	}
	// Bob does not see alice's files.
	if entries, _ := f.List("bob", "/"); len(entries) != 0 {
		t.Fatalf("bob's folder lists %v", entries)
	}

	// Over the quota: announced length, then chunked (unknown length).
	big := make([]byte, 900<<10)
	rand.Read(big)
	os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o600)
	if _, code := curl(t, nil, "-T", filepath.Join(dir, "big.bin"), base+"/big.bin"); code != "507" {
		t.Fatalf("PUT over quota = %s, want 507", code)
	}
	if _, code := curl(t, big, "-T", "-", "-H", "Transfer-Encoding: chunked", base+"/big-chunked.bin"); code != "507" {
		t.Fatalf("chunked PUT over quota = %s, want 507", code)
	}
	// Overwriting a file over the quota keeps the old content.
	bigger := append(big, big[:200<<10]...)
	if _, code := curl(t, bigger, "-T", "-", "-H", "Transfer-Encoding: chunked", base+"/pics/photo.bin"); code != "507" {
		t.Fatalf("chunked overwrite over quota = %s, want 507", code)
	}
	if used, _ := f.Usage("alice"); used != int64(len(data)) {
		t.Fatalf("usage after refused uploads = %d, want %d", used, len(data))
	}
	entries, _ := f.List("alice", "/")
	if len(entries) != 1 || entries[0].Name != "pics" {
		t.Fatalf("alice's folder after refused uploads: %+v", entries)
	}

	// Path traversal: raw, encoded, and in a MOVE's Destination.
	for _, p := range []string{"/dav/../../../etc/passwd", "/dav/pics/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/dav/..%2f..%2fetc%2fpasswd"} {
		// ServeMux redirects a raw ".." to the cleaned path, outside
		// /dav/; the folders refuse the encoded forms themselves.
		if body, code := curl(t, nil, "--path-as-is", srv.URL+p); (code != "400" && code != "307") || strings.Contains(body, "root:") {
			t.Errorf("GET %s = %s, want 400 or a redirect out of /dav/:\n%s", p, code, body)
		}
	}
	if _, code := curl(t, nil, "-X", "MOVE", "-H", "Destination: "+srv.URL+"/dav/../../escaped.bin", base+"/pics/photo.bin"); code != "400" {
		t.Errorf("MOVE out of the folder = %s, want 400", code)
	}
	if _, err := os.Stat(filepath.Join(f.cfg.Root, "escaped.bin")); err == nil {
		t.Error("a MOVE escaped the folder")
	}

	// Share link, rename, delete.
	l, err := f.CreateLink("alice", "/pics/photo.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, code := curl(t, nil, "-o", out, srv.URL+"/s/"+l.Token); code != "200" {
		t.Fatalf("share link = %s", code)
	}
	if _, code := curl(t, nil, "-X", "MOVE", "-H", "Destination: "+base+"/pics/renamed.bin", base+"/pics/photo.bin"); code != "201" {
		t.Fatalf("MOVE = %s, want 201", code)
	}
	if _, code := curl(t, nil, "-X", "DELETE", base+"/pics/renamed.bin"); code != "204" {
		t.Fatalf("DELETE = %s, want 204", code)
	}
	if _, code := curl(t, nil, base+"/pics/renamed.bin"); code != "404" {
		t.Fatalf("GET after DELETE = %s, want 404", code)
	}
	if used, _ := f.Usage("alice"); used != 0 {
		t.Fatalf("usage after delete = %d", used)
	}
	if st := f.Stats(); st.QuotaRefused != 3 || st.PathRefused != 3 || st.Uploads != 1 {
		t.Errorf("stats %+v, want 3 quota and 3 path refusals, 1 upload", st)
	}
}

// TestWebDAVRclone drives the folders with rclone, a real WebDAV client.
func TestWebDAVRclone(t *testing.T) {
	testenv.RequireCommand(t, "rclone", "rclone")
	f, srv := davServer(t, 2<<20)
	rclone := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "rclone", append([]string{"--config", "/dev/null", "--retries", "1", "--low-level-retries", "1"}, args...)...)
		obscured, err := exec.CommandContext(ctx, "rclone", "obscure", "secret").Output()
		if err != nil {
			t.Fatalf("rclone obscure: %v", err)
		}
		cmd.Env = append(os.Environ(), "RCLONE_CONFIG_BOX_TYPE=webdav", "RCLONE_CONFIG_BOX_URL="+srv.URL+"/dav/",
			"RCLONE_CONFIG_BOX_VENDOR=other", "RCLONE_CONFIG_BOX_USER=alice", "RCLONE_CONFIG_BOX_PASS="+strings.TrimSpace(string(obscured)))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	src := t.TempDir()
	files := map[string][]byte{"a.txt": []byte("hello from rclone\n"), "sub/b.bin": make([]byte, 700<<10)}
	rand.Read(files["sub/b.bin"])
	for name, b := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(src, name)), 0o700)
		os.WriteFile(filepath.Join(src, name), b, 0o600)
	}
	if out, err := rclone("copy", src, "box:docs"); err != nil {
		t.Fatalf("rclone copy: %v\n%s", err, out)
	}
	out, err := rclone("ls", "box:")
	if err != nil || !strings.Contains(out, "docs/a.txt") || !strings.Contains(out, "docs/sub/b.bin") {
		t.Fatalf("rclone ls: %v\n%s", err, out)
	}
	dst := t.TempDir()
	if out, err := rclone("copy", "box:docs", dst); err != nil {
		t.Fatalf("rclone copy back: %v\n%s", err, out)
	}
	for name, b := range files {
		if got, _ := os.ReadFile(filepath.Join(dst, name)); !bytes.Equal(got, b) {
			t.Errorf("%s came back as %d bytes, want %d", name, len(got), len(b))
		}
	}
	// Over the quota: rclone reports the failure and nothing is left.
	big := filepath.Join(t.TempDir(), "big.bin")
	bb := make([]byte, 1500<<10)
	rand.Read(bb)
	os.WriteFile(big, bb, 0o600)
	if out, err := rclone("copyto", big, "box:big.bin"); err == nil {
		t.Fatalf("rclone copy over the quota succeeded:\n%s", out)
	}
	if out, err := rclone("delete", "box:docs/sub"); err != nil {
		t.Fatalf("rclone delete: %v\n%s", err, out)
	}
	out, err = rclone("ls", "box:")
	if err != nil || strings.Contains(out, "b.bin") || strings.Contains(out, "big.bin") || !strings.Contains(out, "a.txt") {
		t.Fatalf("rclone ls after delete: %v\n%s", err, out)
	}
	if used, _ := f.Usage("alice"); used != int64(len(files["a.txt"])) {
		t.Fatalf("usage %d, want %d", used, len(files["a.txt"]))
	}
}
