package stream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"
)

const (
	// pullStall is how long a relay waits for a packet from its source
	// before it re-attaches elsewhere.
	pullStall = 2 * time.Second
	// pullAvoid is how long a source that failed is tried only when no
	// other one is left.
	pullAvoid = 30 * time.Second
	// pullRetry is the pause when no source is available.
	pullRetry = 500 * time.Millisecond
)

// RelayHeader is the request header a box's WHEP pull carries: its node
// ID (see PlayOptions.Relay).
const RelayHeader = "Cloudbox-Relay"

// startRelay creates the hub of a stream pulled from another box.
func (s *Server) startRelay(name string) (*hub, error) {
	if s.cfg.Sources == nil || len(s.cfg.Sources(name)) == 0 {
		return nil, fmt.Errorf("%w: %q is not live on this box nor on any other box of the community", ErrNotFound, name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if h := s.hubs[name]; h != nil {
		return h, nil
	}
	if len(s.hubs) >= s.cfg.MaxStreams {
		return nil, fmt.Errorf("%w: this box carries %d streams already", ErrTooMany, len(s.hubs))
	}
	h := newHub(s, name, true)
	s.hubs[name] = h
	s.wg.Add(1)
	go s.pull(h)
	return h, nil
}

// pull keeps the relay hub h attached to a source until h closes.
func (s *Server) pull(h *hub) {
	defer s.wg.Done()
	failed := make(map[string]time.Time)
	var none time.Time // since when Sources has named no box
	for {
		select {
		case <-h.closed:
			return
		case <-s.ctx.Done():
			return
		default:
		}
		srcs := s.cfg.Sources(h.name)
		now := time.Now()
		if len(srcs) > 0 {
			none = time.Time{}
		} else if none.IsZero() {
			none = now
		} else if now.Sub(none) > s.cfg.SourceGrace {
			// The stream ended at its origin: end it here too.
			s.log.Info("relayed stream ended", "stream", h.name)
			h.close()
			return
		}
		src, ok := pickSource(srcs, failed, now)
		if !ok {
			select {
			case <-h.closed:
				return
			case <-s.ctx.Done():
				return
			case <-time.After(pullRetry):
			}
			continue
		}
		s.log.Info("relay pulling", "stream", h.name, "source", src.Name, "rtt", src.RTT, "candidates", sourceList(srcs))
		err := s.pullFrom(h, src)
		if errors.Is(err, errStopped) {
			return
		}
		s.counters.pullFailures.Add(1)
		failed[src.URL] = time.Now()
		s.log.Warn("relay source lost", "stream", h.name, "source", src.Name, "error", err)
	}
}

// pickSource returns the first source that did not fail recently, else
// the one that failed longest ago.
func pickSource(srcs []Source, failed map[string]time.Time, now time.Time) (Source, bool) {
	var oldest Source
	var oldestAt time.Time
	for _, src := range srcs {
		at, bad := failed[src.URL]
		if !bad || now.Sub(at) > pullAvoid {
			return src, true
		}
		if oldestAt.IsZero() || at.Before(oldestAt) {
			oldest, oldestAt = src, at
		}
	}
	if oldestAt.IsZero() || now.Sub(oldestAt) < pullRetry {
		return Source{}, false
	}
	return oldest, true
}

// pullFrom pulls h from src over WHEP until the source fails (an error)
// or h closes (errStopped).
func (s *Server) pullFrom(h *hub, src Source) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.SetupTimeout)
	defer cancel()
	pc, err := s.ingestAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return fmt.Errorf("creating peer connection: %w", err)
	}
	defer pc.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return fmt.Errorf("adding %s transceiver: %w", k, err)
		}
	}
	f := &feed{kind: SourceRelay, upstream: src.NodeID, upstreamName: src.Name}
	rs := newRemoteSet(h, pc, f, 0)
	f.close = func() error { return pc.Close() }
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("creating offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("setting offer: %w", err)
	}
	if err := s.waitGathered(ctx, gathered); err != nil {
		return err
	}
	answer, location, err := s.whepRequest(ctx, src.URL, pc.LocalDescription().SDP)
	if err != nil {
		return err
	}
	defer s.whepDelete(location)
	n, err := countSections(answer, "sendonly", "sendrecv")
	if err != nil || n == 0 {
		return fmt.Errorf("answer of %s sends no media", src.Name)
	}
	rs.mu.Lock()
	rs.expected = n
	rs.mu.Unlock()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fmt.Errorf("setting answer of %s: %w", src.Name, err)
	}
	defer rs.end()
	start := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	attached := false
	for {
		select {
		case <-h.closed:
			return errStopped
		case <-s.ctx.Done():
			return errStopped
		case <-rs.ready:
			if !attached {
				attached = true
				s.counters.pulls.Add(1)
				s.log.Info("relay attached", "stream", h.name, "source", src.Name, "url", src.URL, "after", time.Since(start).Round(time.Millisecond))
			}
		case now := <-tick.C:
			switch pc.ConnectionState() {
			case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
				return fmt.Errorf("connection to %s %s", src.Name, pc.ConnectionState())
			}
			last := rs.lastPacket.Load()
			if last == 0 && now.Sub(start) > s.cfg.SetupTimeout {
				return fmt.Errorf("no media from %s within %v (ice %s, peer connection %s)", src.Name, s.cfg.SetupTimeout,
					pc.ICEConnectionState(), pc.ConnectionState())
			}
			if last != 0 && now.Sub(time.Unix(0, last)) > pullStall {
				return fmt.Errorf("no media from %s for %v", src.Name, pullStall)
			}
		}
	}
}

// whepRequest posts an offer to a WHEP endpoint and returns the answer
// and the session URL.
func (s *Server) whepRequest(ctx context.Context, endpoint, offer string) (string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader([]byte(offer)))
	if err != nil {
		return "", "", fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	if s.cfg.NodeID != "" {
		req.Header.Set(RelayHeader, s.cfg.NodeID)
	}
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("requesting %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxSDPSize+1))
	if err != nil {
		return "", "", fmt.Errorf("reading answer of %s: %w", endpoint, err)
	}
	if resp.StatusCode != http.StatusCreated {
		return "", "", fmt.Errorf("%s answered %s: %.200s", endpoint, resp.Status, body)
	}
	loc := resp.Header.Get("Location")
	if loc != "" {
		base, err := url.Parse(endpoint)
		if err == nil {
			if u, err := base.Parse(loc); err == nil {
				loc = u.String()
			}
		}
	}
	return string(body), loc, nil
}

// whepDelete ends a WHEP session at its source (best effort).
func (s *Server) whepDelete(location string) {
	if location == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, location, nil)
	if err != nil {
		return
	}
	if resp, err := s.cfg.HTTPClient.Do(req); err == nil {
		resp.Body.Close()
	}
}

// sourceList describes sources for a log line: "name (rtt), ...".
func sourceList(srcs []Source) string {
	var b strings.Builder
	for i, s := range srcs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%v)", s.Name, s.RTT.Round(10*time.Microsecond))
	}
	return b.String()
}
