package main

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// post sends a POST with the test token and returns the status and body.
func (d *daemon) post(t *testing.T, path, contentType string, body io.Reader) (int, []byte) {
	t.Helper()
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequest(http.MethodPost, "http://"+d.addr+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestRestoreRestarts restores the backup of box A on box B with the API:
// cloudboxd restarts in the same process as box A, with HTTPS again.
func TestRestoreRestarts(t *testing.T) {
	t.Parallel()
	a := start(t, "--state-dir", filepath.Join(t.TempDir(), "a"), "--name", "box-a")
	want := a.status(t)
	code, backup := a.post(t, "/api/v1/backup", "application/json", strings.NewReader(`{"password": "backup password 1"}`))
	if code != http.StatusOK {
		t.Fatalf("POST /api/v1/backup = %d %s", code, backup)
	}
	a.stop(t)

	b := start(t, "--state-dir", filepath.Join(t.TempDir(), "b"), "--name", "box-b", "--https", "127.0.0.1:0")
	b.log.waitFor(t, regexp.MustCompile(`msg="https listening" addr=(\S+)`))
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("backup", "a.cbbackup")
	fw.Write(backup)
	mw.WriteField("password", "backup password 1")
	mw.Close()
	if code, msg := b.post(t, "/api/v1/restore", mw.FormDataContentType(), &body); code != http.StatusAccepted {
		t.Fatalf("POST /api/v1/restore = %d %s", code, msg)
	}
	m := b.log.waitFor(t, regexp.MustCompile(`(?s)msg=restarting.*msg="applied a restored backup".*msg="http listening" addr=(\S+).*msg="https listening"`))
	b.addr = m[1]
	if got := b.status(t); got.NodeID != want.NodeID || got.NodeName != "box-a" {
		t.Errorf("after the restore: node %s %q, want box A's %s %q", got.NodeID, got.NodeName, want.NodeID, want.NodeName)
	}
	b.stop(t)
}
