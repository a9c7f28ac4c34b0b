package stream

import (
	"context"
	"github.com/cloudbox/cloudbox/internal/testenv"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/stream/streamtest"
)

// testServer is a Server on loopback with its WHIP and WHEP endpoints on
// an httptest server: /whip/{name}, /whep/{name}, /session/{id}.
type testServer struct {
	*Server
	http *httptest.Server
}

func newTestServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	checkLeaks(t)
	cfg.ICEUDPAddr, cfg.ICETCPAddr = "127.0.0.1:0", "off"
	if cfg.TURNAddr == "" {
		cfg.TURNAddr = "off"
	}
	cfg.IncludeLoopback = true
	cfg.IPFilter = func(ip net.IP) bool { return ip.IsLoopback() }
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/whip/{name}", func(w http.ResponseWriter, r *http.Request) {
		s.ServeWHIP(w, r, r.PathValue("name"), "/session/", PublishOptions{Description: r.URL.Query().Get("d")})
	})
	mux.HandleFunc("/whep/{name}", func(w http.ResponseWriter, r *http.Request) {
		s.ServeWHEP(w, r, r.PathValue("name"), "/session/", PlayOptions{Relay: r.Header.Get(RelayHeader)})
	})
	mux.HandleFunc("/session/{id}", func(w http.ResponseWriter, r *http.Request) {
		s.ServeSession(w, r, r.PathValue("id"))
	})
	ts := &testServer{Server: s, http: httptest.NewServer(mux)}
	t.Cleanup(func() {
		ts.http.Close()
		if err := s.Close(); err != nil {
			t.Errorf("closing server: %v", err)
		}
	})
	return ts
}

func (ts *testServer) url(kind, name string) string { return ts.http.URL + "/" + kind + "/" + name }

var loopback = streamtest.Options{Loopback: true}

// publish publishes a synthetic stream as name, with options o (default
// loopback), until the test ends.
func publish(t testing.TB, ts *testServer, name string, o ...streamtest.Options) *streamtest.Publisher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	p, err := streamtest.Publish(ctx, ts.url("whip", name), append(o, loopback)[0])
	if err != nil {
		t.Fatalf("publishing %s: %v", name, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func play(t *testing.T, ts *testServer, name string) *streamtest.Viewer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := streamtest.Play(ctx, ts.url("whep", name), loopback)
	if err != nil {
		t.Fatalf("playing %s: %v", name, err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// growing waits until the viewer's video and audio packets and keyframes
// grow.
func growing(t *testing.T, v *streamtest.Viewer, timeout time.Duration) {
	t.Helper()
	vp, ap, kf := v.VideoPackets.Load(), v.AudioPackets.Load(), v.Keyframes.Load()
	if err := streamtest.WaitFor(timeout, func() bool {
		return v.VideoPackets.Load() > vp+30 && v.AudioPackets.Load() > ap+10 && v.Keyframes.Load() > kf
	}); err != nil {
		t.Fatalf("media not flowing: video %d->%d audio %d->%d keyframes %d->%d", vp, v.VideoPackets.Load(),
			ap, v.AudioPackets.Load(), kf, v.Keyframes.Load())
	}
}

func TestPublishPlay(t *testing.T) {
	ts := newTestServer(t, Config{})
	publish(t, ts, "assembly")
	v1 := play(t, ts, "assembly")
	growing(t, v1, 5*time.Second)
	// A second viewer starts on the cached keyframe at once.
	time.Sleep(300 * time.Millisecond) // mid group of pictures
	v2 := play(t, ts, "assembly")
	if err := streamtest.WaitFor(2*time.Second, func() bool { return v2.Keyframes.Load() > 0 }); err != nil {
		t.Fatal("second viewer got no keyframe within 2 s")
	}
	pkt, key := v2.FirstVideo()
	t.Logf("second viewer: first video packet after %v, first keyframe after %v", pkt, key)
	if key > time.Second {
		t.Errorf("first keyframe after %v, want under 1 s", key)
	}
	infos := ts.Streams()
	if len(infos) != 1 || infos[0].Name != "assembly" || infos[0].Viewers != 2 || infos[0].Source != SourceWHIP {
		t.Fatalf("Streams() = %+v", infos)
	}
	if got := strings.Join(infos[0].Codecs, ","); got != "VP8,opus" {
		t.Errorf("codecs %q, want VP8,opus", got)
	}
	// A second publisher of the same name is refused.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := streamtest.Publish(ctx, ts.url("whip", "assembly"), loopback)
	if he, ok := err.(*streamtest.HTTPError); !ok || he.Status != http.StatusConflict {
		t.Errorf("second publisher: %v, want status 409", err)
	}
	// DELETE of the viewer's session ends it.
	if err := v2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := streamtest.WaitFor(2*time.Second, func() bool { return ts.Streams()[0].Viewers == 1 }); err != nil {
		t.Errorf("viewers after a DELETE: %d, want 1", ts.Streams()[0].Viewers)
	}
	var b strings.Builder
	ts.WriteMetrics(&b)
	for _, want := range []string{"cloudbox_stream_streams 1", "cloudbox_stream_viewers 1", "cloudbox_stream_viewers_total 2"} {
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, b.String())
		}
	}
}

func TestPlayUnknown(t *testing.T) {
	ts := newTestServer(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := streamtest.Play(ctx, ts.url("whep", "nothing"), loopback)
	if he, ok := err.(*streamtest.HTTPError); !ok || he.Status != http.StatusNotFound {
		t.Fatalf("playing an unknown stream: %v, want status 404", err)
	}
}

// TestPublisherReconnects: viewers stay when the publisher comes back
// within the grace time, and get its new pictures.
func TestPublisherReconnects(t *testing.T) {
	ts := newTestServer(t, Config{})
	p := publish(t, ts, "cam")
	v := play(t, ts, "cam")
	growing(t, v, 5*time.Second)
	p.Close()
	publish(t, ts, "cam")
	growing(t, v, 5*time.Second)
	if lost := v.Lost.Load(); lost > 0 {
		t.Errorf("viewer saw %d lost packets across the publisher change; numbering must continue", lost)
	}
}

// checkLeaks fails the test if goroutines started during it are still
// running 10 s after its cleanups (pion stops some of its own lazily).
func checkLeaks(t testing.TB) { testenv.CheckGoroutines(t, 10*time.Second) }
