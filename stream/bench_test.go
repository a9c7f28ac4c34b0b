package stream

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/stream/streamtest"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// discardWriter is a webrtc.TrackLocalWriter that drops what it gets.
type discardWriter struct{ n int }

func (d *discardWriter) WriteRTP(h *rtp.Header, p []byte) (int, error) { d.n++; return len(p), nil }
func (d *discardWriter) Write(b []byte) (int, error)                   { d.n++; return len(b), nil }

// fanout builds a video track with n viewers whose writers discard, and
// drains their queues on the calling goroutine.
func fanout(n int) (*track, []*viewer) {
	t := newTrack(webrtc.RTPCodecTypeVideo, webrtc.RTPCodecCapability{MimeType: mimeVP8, ClockRate: 90000}, "v")
	var vs []*viewer
	for range n {
		v := &viewer{queue: make(chan item, viewerQueue), done: make(chan struct{})}
		out := &localTrack{track: t, video: true, writer: &discardWriter{}, ssrc: 1, pt: 96}
		out.bound.Store(true)
		s := &sink{v: v, out: out}
		t.attach(s)
		s.waitKey = false
		vs = append(vs, v)
	}
	return t, vs
}

func drain(vs []*viewer) {
	for _, v := range vs {
		for len(v.queue) > 0 {
			it := <-v.queue
			it.out.write(&it.p.hdr, it.p.payload)
		}
	}
}

// BenchmarkFanout forwards one packet to 100 viewers per iteration; the
// allocations are those of one source packet (shared by all viewers).
func BenchmarkFanout(b *testing.B) {
	t, vs := fanout(100)
	payload := make([]byte, 1100)
	payload[0] = 0x10
	h := rtp.Header{Version: 2, PayloadType: 96, SSRC: 5}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		h.SequenceNumber++
		h.Timestamp += 3000
		t.push(1, &h, payload, now)
		drain(vs)
	}
}

// TestForwardAllocs is the allocation budget of the packet path: one
// packet in (its header copy), none per viewer.
func TestForwardAllocs(t *testing.T) {
	tr, vs := fanout(50)
	payload := make([]byte, 1100)
	h := rtp.Header{Version: 2, PayloadType: 96, SSRC: 5}
	now := time.Now()
	allocs := testing.AllocsPerRun(200, func() {
		h.SequenceNumber++
		h.Timestamp += 3000
		tr.push(1, &h, payload, now)
		drain(vs)
	})
	t.Logf("%.1f allocations per source packet forwarded to 50 viewers", allocs)
	if allocs > 3 {
		t.Errorf("%.1f allocations per source packet to 50 viewers, want at most 3 (none per viewer)", allocs)
	}
}

// BenchmarkRelayHop measures the delay one relay hop adds: the same
// synthetic stream watched on its origin and through a relay, on
// loopback. Metrics: hop_ms (median through the relay minus median at the
// origin) and first_ms (a new viewer's first keyframe).
func BenchmarkRelayHop(b *testing.B) {
	a := newTestServer(b, Config{})
	r := newTestServer(b, Config{Sources: func(name string) []Source {
		return []Source{{URL: a.url("whep", name), Name: "a"}}
	}})
	publish(b, a, "hop")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	va, err := streamtest.Play(ctx, a.url("whep", "hop"), loopback)
	if err != nil {
		b.Fatal(err)
	}
	defer va.Close()
	vr, err := streamtest.Play(ctx, r.url("whep", "hop"), loopback)
	if err != nil {
		b.Fatal(err)
	}
	defer vr.Close()
	var first []time.Duration
	for b.Loop() {
		time.Sleep(2 * time.Second)
		v, err := streamtest.Play(ctx, a.url("whep", "hop"), loopback)
		if err != nil {
			b.Fatal(err)
		}
		streamtest.WaitFor(2*time.Second, func() bool { return v.Keyframes.Load() > 0 })
		_, k := v.FirstVideo()
		first = append(first, k)
		v.Close()
	}
	da, dr := median(va.Delays()), median(vr.Delays())
	b.ReportMetric(float64(dr-da)/1e6, "hop_ms")
	b.ReportMetric(float64(median(first))/1e6, "first_ms")
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// TestSlowViewer: a viewer that does not keep up loses packets (bounded
// queue) and the others get every packet, without waiting.
func TestSlowViewer(t *testing.T) {
	tr, vs := fanout(2)
	fast, slow := vs[0], vs[1]
	payload := make([]byte, 1000)
	h := rtp.Header{Version: 2, PayloadType: 96, SSRC: 5}
	sent := 0
	start := time.Now()
	for i := range 3000 {
		h.SequenceNumber++
		h.Timestamp += 3000
		if i%100 == 0 {
			payload = slices.Clone(payload)
			payload[0] = 0x10 // a keyframe every 100 packets
		} else {
			payload = slices.Clone(payload)
			payload[0] = 0x10
			payload[1] = 0x01
		}
		tr.push(1, &h, payload, start)
		drain([]*viewer{fast})
		sent++
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("pushing %d packets took %v with a stuck viewer", sent, d)
	}
	if got := fast.dropped.Load(); got != 0 {
		t.Errorf("fast viewer dropped %d packets", got)
	}
	if got := slow.dropped.Load(); got < uint64(sent-viewerQueue-maxBehind-100) {
		t.Errorf("slow viewer dropped %d of %d packets, queue %d", got, sent, len(slow.queue))
	}
	if len(slow.queue) != viewerQueue {
		t.Errorf("slow viewer's queue holds %d, want its bound %d", len(slow.queue), viewerQueue)
	}
}
