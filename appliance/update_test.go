package appliance

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/image/openwrt"
	"github.com/cloudbox/cloudbox/services/update"
)

// testRelease writes a small signed release for board amd64.
func testRelease(t *testing.T, version string, key ed25519.PrivateKey) string {
	t.Helper()
	dir := t.TempDir()
	root := bytes.Repeat([]byte(version), 100<<10)
	if _, err := update.WriteRelease(dir, update.Manifest{Board: "amd64", Channel: "stable", Version: version, ChunkSize: 64 << 10},
		[]update.Input{{Name: update.RootArtifact, Data: root}, {Name: "boot/vmlinuz", Data: []byte("kernel " + version)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := update.SignDir(dir, update.EncodePrivateKey(key)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func pushRelease(t *testing.T, client *http.Client, base, dir string) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	if err := update.WriteTar(&buf, dir, nil); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/update/releases", &buf)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestUpdateAPI pushes releases into a host-mode daemon: a trusted one is
// stored and shown by GET /api/v1/update and the Updates page; one signed
// by an unknown key is refused with the reason and leaves nothing.
func TestUpdateAPI(t *testing.T) {
	seed := sha256.Sum256([]byte("release key"))
	key := ed25519.NewKeyFromSeed(seed[:])
	stranger := ed25519.NewKeyFromSeed(make([]byte, 32))
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(filepath.Join(dir, UpdateDir), 0o755); err != nil {
		t.Fatal(err)
	}
	trust := update.Trust{Keys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, Threshold: 1}
	if err := os.WriteFile(filepath.Join(dir, UpdateDir, "trust.json"), trust.Encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	wait := runAsync(t, ctx, Config{StateDir: dir, Name: "box-upd", Listener: ln, Version: "1.0.0", Board: "amd64"})
	defer func() {
		cancel()
		if err := wait(); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	if code, body := pushRelease(t, client, base, testRelease(t, "2.0.0", stranger)); code != http.StatusForbidden || !strings.Contains(body, "trusted") {
		t.Errorf("untrusted push: %d %s, want 403 naming the signatures", code, body)
	}
	if code, body := pushRelease(t, client, base, testRelease(t, "0.9.0", key)); code != http.StatusForbidden || !strings.Contains(body, "older") {
		t.Errorf("older push: %d %s, want 403 naming the version", code, body)
	}
	if code, body := pushRelease(t, client, base, testRelease(t, "2.0.0", key)); code != http.StatusOK {
		t.Fatalf("push: %d %s", code, body)
	}

	var info UpdateInfo
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code := getJSON(t, client, base+"/api/v1/update", testAdminToken, &info); code != http.StatusOK {
			t.Fatalf("GET /api/v1/update: %d", code)
		}
		if info.Agent != nil && len(info.Agent.Releases) == 1 && info.Agent.Releases[0].Complete {
			break
		}
		if time.Now().After(deadline) {
			b, _ := json.Marshal(info)
			t.Fatalf("release not complete in the API: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if info.Running != "1.0.0" || info.Agent.Releases[0].Version != "2.0.0" || info.Agent.TrustKeys != 1 {
		t.Errorf("update info: %+v", info)
	}
	if len(info.Agent.Rejected) != 2 {
		t.Errorf("rejections: %+v, want 2", info.Agent.Rejected)
	}
	var st statusResponse
	getJSON(t, client, base+"/api/v1/status", testAdminToken, &st)
	if c := st.Components["update"]; !c.OK || c.Detail["newest"] != "2.0.0" {
		t.Errorf("components.update = %+v", c)
	}
	resp, err := authedGet(client, base+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"cloudbox_update_releases 1\n", "cloudbox_update_rejected 2\n", "cloudbox_update_fetched_bytes_total 0\n"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	resp, err = authedGet(client, base+"/updates")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"<h1>Updates</h1>", "<code>2.0.0</code>", "Complete", "1 of 1 trusted keys", `id="release-upload"`} {
		if !strings.Contains(string(page), want) {
			t.Errorf("Updates page (HTTP %d) lacks %q", resp.StatusCode, want)
		}
	}
	// In Catalan, with the release and the refusals.
	req, _ := http.NewRequest(http.MethodGet, base+"/updates", nil)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set("Accept-Language", "ca")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"<h1>Actualitzacions</h1>", "l&#39;han de signar 1 de les 1 claus de confiança", "Complet", "Llançaments rebutjats",
		"<code>0.9.0</code> de una pujada: ", `data-accepted="Llançament %s acceptat."`} {
		if !strings.Contains(string(ca), want) {
			t.Errorf("Updates page in Catalan (HTTP %d) lacks %q", resp.StatusCode, want)
		}
	}
	if i := bytes.Index(ca, []byte("%!")); i >= 0 {
		t.Errorf("Updates page in Catalan has a formatting error: %s", ca[i:min(i+60, len(ca))])
	}
	js := regexp.MustCompile(`<script src="([^"]+)"`).FindSubmatch(page)
	if js == nil {
		t.Fatal("Updates page has no script")
	}
	resp, err = client.Get(base + string(js[1]))
	if err != nil {
		t.Fatal(err)
	}
	script, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(script), "/api/v1/update/releases") || !strings.Contains(resp.Header.Get("Content-Type"), "javascript") {
		t.Errorf("GET %s: %d %q", js[1], resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// TestRouterPackageTrustPath: `cloudbox package --release-trust` installs
// the trust file where cloudboxd looks for the image's.
func TestRouterPackageTrustPath(t *testing.T) {
	if openwrt.TrustPath != ImageTrustFile {
		t.Errorf("router packages install the trust file as %s, cloudboxd reads %s", openwrt.TrustPath, ImageTrustFile)
	}
}
