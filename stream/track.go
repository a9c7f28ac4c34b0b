package stream

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

const (
	// historySize is how many recent packets of a track are kept to
	// answer NACKs (shared by all viewers); a power of two.
	historySize = 1024
	// maxGOPPackets bounds the keyframe cache of a track; a longer group
	// of pictures is not cached and new viewers wait for a keyframe.
	maxGOPPackets = 1500
	// keyframeInterval is the least time between two keyframe requests
	// sent upstream for one track.
	keyframeInterval = 500 * time.Millisecond
)

// packet is one RTP packet as forwarded: the header already carries the
// track's output sequence number and timestamp. It is immutable once
// pushed and shared by every viewer.
type packet struct {
	hdr      rtp.Header
	payload  []byte
	keyStart bool // first packet of a keyframe
	arrived  time.Time
}

// track is one media track of a stream (video or audio). Its output
// numbering survives a change of source: sequence numbers and timestamps
// continue where the previous source stopped.
type track struct {
	// Immutable after newTrack.
	kind  webrtc.RTPCodecType
	codec webrtc.RTPCodecCapability
	id    string
	video bool
	// keyframe asks the current source for a keyframe; rate-limited by
	// requestKeyframe. Set by the hub at each change of source.
	keyframe atomic.Pointer[func()]

	lastPLI atomic.Int64 // unix nanoseconds of the last request upstream

	packets, bytes, dropped atomic.Uint64
	keyframes, nacksServed  atomic.Uint64

	// mu guards the following; it is held by the source's reader while it
	// pushes a packet to the sinks.
	mu       sync.Mutex
	sinks    []*sink
	gop      []*packet // since the last keyframe start; nil when too long
	gopTS    uint32
	history  [historySize]*packet
	haveOut  bool // outSeq and outTS are valid
	outSeq   uint16
	outTS    uint32
	outAt    time.Time // when outTS was sent
	srcID    uint64    // source generation the offsets belong to
	seqOff   uint16
	tsOff    uint32
	lastSrcS uint16
}

func newTrack(kind webrtc.RTPCodecType, codec webrtc.RTPCodecCapability, id string) *track {
	return &track{kind: kind, codec: codec, id: id, video: kind == webrtc.RTPCodecTypeVideo}
}

// requestKeyframe asks upstream for a keyframe unless one was asked for
// within keyframeInterval.
func (t *track) requestKeyframe() {
	kf := t.keyframe.Load()
	if !t.video || kf == nil || *kf == nil {
		return
	}
	now := time.Now().UnixNano()
	last := t.lastPLI.Load()
	if now-last < int64(keyframeInterval) || !t.lastPLI.CompareAndSwap(last, now) {
		return
	}
	(*kf)()
}

// push forwards one packet of source generation src. The header is
// rewritten to the track's output numbering; payload is kept, not
// copied, and must not be modified afterwards.
func (t *track) push(src uint64, h *rtp.Header, payload []byte, now time.Time) {
	p := &packet{hdr: *h, payload: payload, arrived: now}
	p.hdr.Extension, p.hdr.Extensions, p.hdr.ExtensionProfile = false, nil, 0
	p.hdr.Padding, p.hdr.PaddingSize = false, 0
	p.hdr.CSRC = nil
	if t.video {
		p.keyStart = isKeyframeStart(t.codec.MimeType, payload)
	}
	t.mu.Lock()
	if src != t.srcID {
		// A new source: continue the output numbering after the last
		// packet sent, with the time that passed since then.
		t.srcID = src
		if t.haveOut {
			t.seqOff = t.outSeq + 1 - h.SequenceNumber
			elapsed := uint32(now.Sub(t.outAt).Seconds() * float64(t.codec.ClockRate))
			t.tsOff = t.outTS + max(elapsed, 1) - h.Timestamp
		} else {
			t.seqOff, t.tsOff = 0, 0
		}
		t.gop = nil
	}
	p.hdr.SequenceNumber = h.SequenceNumber + t.seqOff
	p.hdr.Timestamp = h.Timestamp + t.tsOff
	if !t.haveOut || int16(p.hdr.SequenceNumber-t.outSeq) > 0 {
		t.outSeq, t.outTS, t.outAt, t.haveOut = p.hdr.SequenceNumber, p.hdr.Timestamp, now, true
	}
	t.history[p.hdr.SequenceNumber%historySize] = p
	if t.video {
		switch {
		case p.keyStart && (t.gop == nil || p.hdr.Timestamp != t.gopTS):
			t.keyframes.Add(1)
			t.gop = append(t.gop[:0:0], p)
			t.gopTS = p.hdr.Timestamp
		case t.gop != nil && len(t.gop) < maxGOPPackets:
			t.gop = append(t.gop, p)
		default:
			t.gop = nil
		}
	}
	for _, s := range t.sinks {
		s.offer(p)
	}
	t.mu.Unlock()
	t.packets.Add(1)
	t.bytes.Add(uint64(len(payload)))
}

// attach adds s and queues the cached group of pictures for it; without
// one it asks upstream for a keyframe.
func (t *track) attach(s *sink) {
	t.mu.Lock()
	if t.video {
		s.waitKey = true
		for _, p := range t.gop {
			s.offer(p)
		}
	}
	t.sinks = append(t.sinks, s)
	noGOP := t.video && len(t.gop) == 0
	t.mu.Unlock()
	if noGOP {
		t.requestKeyframe()
	}
}

func (t *track) detach(s *sink) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, x := range t.sinks {
		if x == s {
			last := len(t.sinks) - 1
			t.sinks[i] = t.sinks[last]
			t.sinks[last] = nil
			t.sinks = t.sinks[:last]
			return
		}
	}
}

// lookup returns the packet with output sequence number seq, if still in
// the history.
func (t *track) lookup(seq uint16) *packet {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.history[seq%historySize]
	if p == nil || p.hdr.SequenceNumber != seq {
		return nil
	}
	return p
}

// sameCodec reports whether c can continue a track of codec t.codec
// without renegotiating with the viewers.
func (t *track) sameCodec(c webrtc.RTPCodecCapability) bool {
	return strings.EqualFold(c.MimeType, t.codec.MimeType) && c.ClockRate == t.codec.ClockRate
}

// sink is one viewer's end of one track. offer is called with the track's
// lock held, from the source's reader.
type sink struct {
	v       *viewer
	out     *localTrack
	waitKey bool // video: forward nothing until a keyframe starts
	lagging bool // waitKey because the viewer fell behind: skips count as drops
	behind  int  // packets dropped in a row for a full queue
}

// maxBehind is how many packets in a row a viewer may lose to a full
// queue (each repairable by NACK from the shared history) before its
// video skips to the next keyframe.
const maxBehind = 32

func (s *sink) offer(p *packet) {
	if s.waitKey {
		if !p.keyStart {
			if s.lagging {
				s.v.dropped.Add(1)
			}
			return
		}
		s.waitKey, s.lagging = false, false
	}
	select {
	case s.v.queue <- item{p: p, out: s.out}:
		s.behind = 0
	default:
		// The viewer is behind: drop (a NACK can still fetch it from
		// the history); when it stays behind, video waits for the next
		// keyframe rather than show a broken picture.
		s.v.dropped.Add(1)
		s.behind++
		if s.out.video && s.behind > maxBehind {
			s.waitKey, s.lagging, s.behind = true, true, 0
			s.out.track.requestKeyframe()
		}
	}
}
