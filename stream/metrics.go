package stream

import (
	"fmt"
	"io"
	"sync/atomic"
)

// counters are the server's totals since start.
type counters struct {
	rejected      atomic.Uint64 // offers refused
	viewersTotal  atomic.Uint64 // WHEP sessions started
	firstFrames   atomic.Uint64 // viewers connected
	sent          atomic.Uint64 // packets sent to viewers that left
	dropped       atomic.Uint64
	retransmitted atomic.Uint64
	pulls         atomic.Uint64 // relays attached to a source
	pullFailures  atomic.Uint64
	rtpRejected   atomic.Uint64 // RTP ingest packets of no declared payload type
}

// Streams returns the streams of this box, local and relayed.
func (s *Server) Streams() []Info {
	s.mu.Lock()
	hubs := make([]*hub, 0, len(s.hubs))
	for _, h := range s.hubs {
		hubs = append(hubs, h)
	}
	s.mu.Unlock()
	out := make([]Info, 0, len(hubs))
	for _, h := range hubs {
		out = append(out, h.info())
	}
	return out
}

// WriteMetrics writes the server's metrics in the Prometheus text format.
func (s *Server) WriteMetrics(w io.Writer) {
	streams := s.Streams()
	var live, relayed, viewers, relays int
	var sent, dropped, retx, packets uint64
	for _, in := range streams {
		if in.Relay {
			relayed++
		} else {
			live++
		}
		viewers += in.Viewers
		relays += in.Relays
		dropped += in.Dropped
		packets += in.Packets
	}
	s.mu.Lock()
	for _, h := range s.hubs {
		h.mu.Lock()
		for v := range h.viewers {
			sent += v.sent.Load()
			retx += v.retransmitted.Load()
		}
		h.mu.Unlock()
	}
	s.mu.Unlock()
	c := &s.counters
	m := func(name, typ, help string, v any) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", name, help, name, typ, name, v)
	}
	m("cloudbox_stream_streams", "gauge", "Streams published on this box.", live)
	m("cloudbox_stream_relayed_streams", "gauge", "Streams this box pulls from another box.", relayed)
	m("cloudbox_stream_viewers", "gauge", "WHEP sessions (people and relaying boxes).", viewers)
	m("cloudbox_stream_relay_viewers", "gauge", "WHEP sessions of other boxes relaying a stream.", relays)
	m("cloudbox_stream_viewers_total", "counter", "WHEP sessions started.", c.viewersTotal.Load())
	m("cloudbox_stream_rejected_total", "counter", "WHIP and WHEP offers refused.", c.rejected.Load())
	m("cloudbox_stream_packets_in_total", "counter", "RTP packets received from sources (current streams).", packets)
	m("cloudbox_stream_packets_out_total", "counter", "RTP packets sent to viewers.", sent+c.sent.Load())
	m("cloudbox_stream_packets_dropped_total", "counter", "RTP packets dropped for viewers that fell behind.", dropped+c.dropped.Load())
	m("cloudbox_stream_retransmitted_total", "counter", "RTP packets resent after a NACK.", retx+c.retransmitted.Load())
	m("cloudbox_stream_pulls_total", "counter", "Relays attached to a source box.", c.pulls.Load())
	m("cloudbox_stream_pull_failures_total", "counter", "Relay pulls that failed or were lost.", c.pullFailures.Load())
	m("cloudbox_stream_rtp_rejected_total", "counter", "RTP ingest packets of an undeclared payload type.", c.rtpRejected.Load())
}
