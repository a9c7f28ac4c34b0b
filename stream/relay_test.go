package stream

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/stream/streamtest"
)

// TestRelayReattach: a stream published on a is relayed by b; c pulls it
// from b (its first choice) and, when b goes away, re-attaches to a
// within a bounded time, its viewer keeping its session.
//
//	publisher -> a -> b -> c -> viewer
//	             `---------'   (after b stops)
func TestRelayReattach(t *testing.T) {
	a := newTestServer(t, Config{NodeID: "a"})
	b := newTestServer(t, Config{NodeID: "b", Sources: func(string) []Source {
		return []Source{{URL: a.url("whep", "demo"), NodeID: "a", Name: "a"}}
	}})
	c := newTestServer(t, Config{NodeID: "c", Sources: func(name string) []Source {
		return []Source{
			{URL: b.url("whep", name), NodeID: "b", Name: "b"},
			{URL: a.url("whep", name), NodeID: "a", Name: "a"},
		}
	}})
	publish(t, a, "demo")
	vb := play(t, b, "demo")
	growing(t, vb, 5*time.Second)
	vc := play(t, c, "demo")
	growing(t, vc, 5*time.Second)
	if in := c.Streams(); len(in) != 1 || !in[0].Relay || in[0].Upstream != "b" {
		t.Fatalf("c's streams = %+v, want a relay from b", in)
	}
	if in := b.Streams(); len(in) != 1 || in[0].Relays != 1 {
		t.Fatalf("b's streams = %+v, want one relay viewer", in)
	}

	stopped := time.Now()
	b.http.Close()
	b.Close()
	if err := streamtest.WaitFor(10*time.Second, func() bool {
		in := c.Streams()
		return len(in) == 1 && in[0].Upstream == "a"
	}); err != nil {
		t.Fatalf("c did not re-attach to a: %+v", c.Streams())
	}
	kf := vc.Keyframes.Load()
	if err := streamtest.WaitFor(10*time.Second, func() bool { return vc.Keyframes.Load() > kf }); err != nil {
		t.Fatal("c's viewer got no keyframe after the re-attach")
	}
	t.Logf("c's viewer recovered %v after b stopped", time.Since(stopped).Round(time.Millisecond))
	growing(t, vc, 5*time.Second)
	if d := time.Since(stopped); d > 8*time.Second {
		t.Errorf("recovery took %v, want under 8 s", d)
	}
}

// TestRelayNoLoop: a relay's request never makes the box pull in turn.
func TestRelayNoLoop(t *testing.T) {
	a := newTestServer(t, Config{NodeID: "a", Sources: func(string) []Source {
		return []Source{{URL: "http://192.0.2.1:9/whep/x", NodeID: "z", Name: "z"}}
	}})
	_, err := a.Play(t.Context(), "x", viewerOffer(t), PlayOptions{Relay: "b"})
	if StatusOf(err) != 404 {
		t.Fatalf("a relay's request for a stream not live here: %v, want not found", err)
	}
	if len(a.Streams()) != 0 {
		t.Fatalf("a started pulling for a relay: %+v", a.Streams())
	}
}

// TestRelayEnds: when no box offers the stream any more (its origin
// ended), the relay ends it too instead of retrying for its viewers.
func TestRelayEnds(t *testing.T) {
	a := newTestServer(t, Config{SourceGrace: 300 * time.Millisecond})
	var gone atomic.Bool
	c := newTestServer(t, Config{SourceGrace: 300 * time.Millisecond, Sources: func(name string) []Source {
		if gone.Load() {
			return nil
		}
		return []Source{{URL: a.url("whep", name), NodeID: "a", Name: "a"}}
	}})
	p := publish(t, a, "short")
	v := play(t, c, "short")
	growing(t, v, 5*time.Second)
	gone.Store(true)
	p.Close()
	if err := streamtest.WaitFor(10*time.Second, func() bool { return len(c.Streams()) == 0 && len(a.Streams()) == 0 }); err != nil {
		t.Fatalf("streams left: a %+v, c %+v", a.Streams(), c.Streams())
	}
}
