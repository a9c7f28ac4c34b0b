//go:build !router

package appliance

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/stream/streamtest"
)

// TestStreamAPI runs the daemon on loopback: a WHIP client with the
// stream's publish key (and no account) goes live; GET /api/v1/streams
// shows it; a member watches over WHEP; requests without credentials are
// refused; the Streams pages render.
func TestStreamAPI(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "state")
	ctx, cancel := context.WithCancel(t.Context())
	wait := runAsync(t, ctx, Config{StateDir: dir, Name: "box-stream", Listener: ln})
	defer func() {
		cancel()
		if err := wait(); err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	base := "http://" + ln.Addr().String()
	client := &http.Client{Timeout: 5 * time.Second}
	do := func(method, path, token, ctype, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// The server answers once Run serves.
	if err := streamtest.WaitFor(5*time.Second, func() bool { c, _ := do("GET", "/healthz", "", "", ""); return c == 200 }); err != nil {
		t.Fatal("daemon not serving")
	}

	if _, body := do("GET", "/api/v1/status", testAdminToken, "", ""); !strings.Contains(body, `"stream":{"ok":true`) {
		t.Fatalf("stream component not OK: %s", body)
	}
	if code, body := do("POST", "/api/v1/streams/show/whip", "", "application/sdp", "v=0"); code != http.StatusUnauthorized {
		t.Errorf("WHIP without credentials: %d %s, want 401", code, body)
	}
	if code, body := do("POST", "/api/v1/streams/show/whep", "", "application/sdp", "v=0"); code != http.StatusUnauthorized {
		t.Errorf("WHEP without credentials: %d %s, want 401", code, body)
	}
	code, body := do("POST", "/api/v1/streams/show/key", testAdminToken, "", "")
	var key StreamKeyInfo
	if code != http.StatusCreated || json.Unmarshal([]byte(body), &key) != nil || !strings.HasPrefix(key.Key, "cbs1_") {
		t.Fatalf("POST key: %d %s", code, body)
	}
	if b, err := os.ReadFile(filepath.Join(dir, StreamKeysFile)); err != nil || strings.Contains(string(b), key.Key) {
		t.Errorf("keys file: %v, holds the key itself: %v", err, strings.Contains(string(b), key.Key))
	}
	if code, _ := do("POST", "/api/v1/streams/other/whip", key.Key, "application/sdp", "v=0"); code != http.StatusUnauthorized {
		t.Errorf("another stream's key: %d, want 401", code)
	}

	o := streamtest.Options{Loopback: true, Header: http.Header{"Authorization": {"Bearer " + key.Key}}}
	pctx, pcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer pcancel()
	p, err := streamtest.Publish(pctx, base+"/api/v1/streams/show/whip", o)
	if err != nil {
		t.Fatalf("publishing with the key: %v", err)
	}
	defer p.Close()
	o.Header.Set("Authorization", "Bearer "+testAdminToken)
	v, err := streamtest.Play(pctx, base+"/api/v1/streams/show/whep", o)
	if err != nil {
		t.Fatalf("playing as a member: %v", err)
	}
	defer v.Close()
	if err := streamtest.WaitFor(5*time.Second, func() bool { return v.Keyframes.Load() > 0 && v.AudioPackets.Load() > 5 }); err != nil {
		t.Fatalf("viewer: %d keyframes, %d audio packets", v.Keyframes.Load(), v.AudioPackets.Load())
	}
	code, body = do("GET", "/api/v1/streams", testAdminToken, "", "")
	var info StreamsInfo
	if code != 200 || json.Unmarshal([]byte(body), &info) != nil || len(info.Streams) != 1 || info.Streams[0].Name != "show" ||
		info.Streams[0].Viewers != 1 || len(info.Live) != 1 {
		t.Errorf("GET /api/v1/streams: %d %s", code, body)
	}
	for _, path := range []string{"/streams", "/streams/golive", "/streams/watch?name=show"} {
		if code, body := do("GET", path, testAdminToken, "", ""); code != 200 || !strings.Contains(body, "stream.js") {
			t.Errorf("GET %s: %d", path, code)
		}
	}
	if code, _ := do("GET", "/streams/watch?name=Bad%20Name", testAdminToken, "", ""); code != http.StatusNotFound {
		t.Errorf("player of an invalid name: %d, want 404", code)
	}
	if code, body := do("GET", "/metrics", testAdminToken, "", ""); code != 200 || !strings.Contains(body, "cloudbox_stream_viewers 1\n") {
		t.Errorf("metrics lack cloudbox_stream_viewers 1: %d", code)
	}
}
