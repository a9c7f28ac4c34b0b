package stream

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/pion/webrtc/v4"
)

// nameRE is what a stream name looks like: it appears in URLs and in the
// community catalog (an instance name).
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,47}$`)

// ValidName reports whether name can name a stream: 1 to 48 lowercase
// letters, digits, dots, dashes and underscores, starting with a letter
// or digit.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: %q: use 1 to 48 lowercase letters, digits, '.', '-' or '_'", ErrBadName, name)
	}
	return nil
}

// Source kinds, as Info.Source shows them.
const (
	SourceWHIP  = "whip"
	SourceRTP   = "rtp"
	SourceTS    = "mpegts"
	SourceRelay = "relay"
)

// feed is the current source of a hub.
type feed struct {
	gen  uint64
	kind string
	// upstream names the box a relay pulls from.
	upstream, upstreamName string
	// keyframe asks the source for a keyframe of video track t.
	keyframe func()
	// close ends the source; called once, not under the hub's lock.
	close func() error
}

// hub is one stream on this box: its tracks, its current source and its
// viewers.
type hub struct {
	// Immutable after newHub.
	s       *Server
	name    string
	relay   bool // pulled from another box
	started time.Time
	ready   chan struct{} // closed when the tracks are known

	closeOnce sync.Once
	closed    chan struct{}

	// mu guards the following.
	mu          sync.Mutex
	description string
	tracks      []*track
	src         *feed
	gen         uint64
	lost        time.Time // when the last source left; zero while one feeds
	idleSince   time.Time // relays: when the last viewer left
	viewers     map[*viewer]struct{}
	problem     string
	bitrate     float64 // bits per second, over the last sample
	lastBytes   uint64
	lastSample  time.Time
}

func newHub(s *Server, name string, relay bool) *hub {
	now := time.Now()
	return &hub{s: s, name: name, relay: relay, started: now, ready: make(chan struct{}), closed: make(chan struct{}),
		viewers: make(map[*viewer]struct{}), lost: now, idleSince: now, lastSample: now}
}

// MaxDescription bounds a stream's description in bytes; longer ones are
// cut.
const MaxDescription = 256

func (h *hub) setDescription(d string) {
	for len(d) > MaxDescription || !utf8.ValidString(d) {
		d = strings.ToValidUTF8(d[:min(len(d), MaxDescription)], "")
	}
	h.mu.Lock()
	h.description = d
	h.mu.Unlock()
}

// attachSource makes f (with a new generation) the hub's source, ending
// the previous one. kinds are the codecs of the source's tracks; a track
// whose codec differs from the hub's ends the viewers, who must
// renegotiate.
func (h *hub) attachSource(f *feed, codecs []webrtc.RTPCodecCapability) ([]*track, uint64) {
	h.mu.Lock()
	old := h.src
	h.gen++
	f.gen = h.gen
	h.src, h.lost, h.problem = f, time.Time{}, ""
	same := len(h.tracks) == len(codecs)
	for i := 0; same && i < len(codecs); i++ {
		same = h.tracks[i].sameCodec(codecs[i])
	}
	var drop []*viewer
	if !same {
		if len(h.tracks) > 0 {
			for v := range h.viewers {
				drop = append(drop, v)
			}
		}
		h.tracks = h.tracks[:0:0]
		for _, c := range codecs {
			kind := webrtc.RTPCodecTypeAudio
			if strings.HasPrefix(strings.ToLower(c.MimeType), "video/") {
				kind = webrtc.RTPCodecTypeVideo
			}
			h.tracks = append(h.tracks, newTrack(kind, c, newID()))
		}
	}
	for _, t := range h.tracks {
		t.keyframe.Store(&f.keyframe)
	}
	tracks := h.tracks
	select {
	case <-h.ready:
	default:
		close(h.ready)
	}
	h.mu.Unlock()
	if old != nil && old != f && old.close != nil {
		old.close()
	}
	for _, v := range drop {
		h.s.removeViewer(v)
	}
	return tracks, f.gen
}

// detachSource records that source f ended (or never started), with a
// problem to show ("" for a normal end).
func (h *hub) detachSource(f *feed, problem string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if problem != "" {
		h.problem = problem
	}
	if h.src != f {
		return
	}
	h.src, h.lost = nil, time.Now()
}

// current returns the generation of the current source, 0 without one.
func (h *hub) current() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.src == nil {
		return 0
	}
	return h.src.gen
}

// expired reports whether the hub should end: a stream whose source left
// more than SourceGrace ago (relays re-attach themselves and end when
// idle).
func (h *hub) expired(now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.relay {
		return len(h.viewers) == 0 && now.Sub(h.idleSince) > h.s.cfg.RelayIdle
	}
	return h.src == nil && !h.lost.IsZero() && now.Sub(h.lost) > h.s.cfg.SourceGrace
}

// sample updates the bitrate.
func (h *hub) sample(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var total uint64
	for _, t := range h.tracks {
		total += t.bytes.Load()
	}
	if dt := now.Sub(h.lastSample).Seconds(); dt > 0 && total >= h.lastBytes {
		h.bitrate = float64(total-h.lastBytes) * 8 / dt
	}
	h.lastBytes, h.lastSample = total, now
}

// close ends the source and every viewer and removes the hub.
func (h *hub) close() error {
	var errs []error
	h.closeOnce.Do(func() {
		close(h.closed)
		h.s.mu.Lock()
		if h.s.hubs[h.name] == h {
			delete(h.s.hubs, h.name)
		}
		h.s.mu.Unlock()
		h.mu.Lock()
		src := h.src
		h.src = nil
		viewers := make([]*viewer, 0, len(h.viewers))
		for v := range h.viewers {
			viewers = append(viewers, v)
		}
		h.mu.Unlock()
		if src != nil && src.close != nil {
			errs = append(errs, src.close())
		}
		for _, v := range viewers {
			errs = append(errs, h.s.removeViewer(v))
		}
	})
	return errors.Join(errs...)
}

// Info describes a stream of this box, for the API.
type Info struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Source is SourceWHIP, SourceRTP, SourceTS or SourceRelay; "" while the
	// stream waits for its source to come back.
	Source string `json:"source"`
	// Upstream and UpstreamName name the box a relay pulls from.
	Upstream     string `json:"upstream,omitempty"`
	UpstreamName string `json:"upstream_name,omitempty"`
	// Relay is true for a stream pulled from another box.
	Relay bool `json:"relay"`
	// Viewers counts this box's sessions, Relays those of them that are
	// other boxes pulling the stream.
	Viewers int `json:"viewers"`
	Relays  int `json:"relays"`
	// BitrateKbps is the incoming bitrate over the last second.
	BitrateKbps int       `json:"bitrate_kbps"`
	Codecs      []string  `json:"codecs"`
	Started     time.Time `json:"started"`
	// Problem says why the source was refused or lost, if it was.
	Problem string `json:"problem,omitempty"`
	// Packets, Dropped and Retransmitted count packets received, dropped
	// for slow viewers and resent after NACKs.
	Packets       uint64 `json:"packets"`
	Dropped       uint64 `json:"dropped"`
	Retransmitted uint64 `json:"retransmitted"`
}

func (h *hub) info() Info {
	h.mu.Lock()
	defer h.mu.Unlock()
	in := Info{Name: h.name, Description: h.description, Relay: h.relay, Viewers: len(h.viewers),
		BitrateKbps: int(h.bitrate / 1000), Started: h.started, Problem: h.problem}
	if h.src != nil {
		in.Source, in.Upstream, in.UpstreamName = h.src.kind, h.src.upstream, h.src.upstreamName
	}
	for _, t := range h.tracks {
		in.Codecs = append(in.Codecs, strings.TrimPrefix(strings.TrimPrefix(t.codec.MimeType, "video/"), "audio/"))
		in.Packets += t.packets.Load()
		in.Retransmitted += t.nacksServed.Load()
	}
	for v := range h.viewers {
		if v.relay != "" {
			in.Relays++
		}
		in.Dropped += v.dropped.Load()
	}
	return in
}
