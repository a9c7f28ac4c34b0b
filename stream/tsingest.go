package stream

import (
	"bytes"
	"errors"
	"net"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// tsMTU is the payload size of the RTP packets made from MPEG-TS.
const tsMTU = 1200

// TSOptions describe an MPEG-TS ingest.
type TSOptions struct {
	// Description is shown in the "Live now" list; optional.
	Description string
}

// IngestTS opens a UDP port for an MPEG-TS stream (ffmpeg "-f mpegts
// udp://BOX:PORT", IP cameras) of stream name: H.264 video without
// B-frames and/or Opus audio, repacketized as RTP (RFC 6184, RFC 7587).
// A program with AAC, MPEG audio, H.265 or H.264 B-frames is refused when
// its first table or frame arrives: the ingest closes and Info.Problem
// says what to send instead. The answer's Session ends it.
func (s *Server) IngestTS(name string, opt TSOptions) (RTPIngest, error) {
	if err := ValidName(name); err != nil {
		return RTPIngest{}, err
	}
	src, in, err := s.openIngest(name, SourceTS, opt.Description)
	if err != nil {
		return RTPIngest{}, err
	}
	go src.readTS(s, in.Session)
	s.log.Info("mpeg-ts ingest open", "stream", name, "port", in.Port)
	return in, nil
}

// tsTrack repacketizes one elementary stream as RTP.
type tsTrack struct {
	t   *track
	seq uint16
}

// readTS demuxes the ingest's datagrams until the socket closes or the
// stream is refused.
func (r *rtpSource) readTS(s *Server, id string) {
	defer close(r.done)
	var (
		video, audio *tsTrack
		gen          uint64
		refused      string
		payloader    codecs.H264Payloader
	)
	d := newTSDemuxer(nil)
	d.onPES = func(kind tsKind, pts int64, data []byte) {
		if refused != "" || pts < 0 {
			return
		}
		now := time.Now()
		switch {
		case kind == tsH264 && video != nil:
			payloads := payloader.Payload(tsMTU, data)
			for i, p := range payloads {
				if st, ok := h264SliceType(p); ok && isBSlice(st) {
					refused = bFrameProblem
					return
				}
				video.seq++
				hdr := rtp.Header{Version: 2, SequenceNumber: video.seq, Timestamp: uint32(pts), Marker: i == len(payloads)-1}
				// The track keeps the payload: never the demuxer's buffer.
				video.t.push(gen, &hdr, bytes.Clone(p), now)
			}
		case kind == tsOpus && audio != nil:
			ts := uint32(pts * 48000 / 90000)
			for _, p := range opusPackets(data) {
				audio.seq++
				hdr := rtp.Header{Version: 2, SequenceNumber: audio.seq, Timestamp: ts}
				audio.t.push(gen, &hdr, bytes.Clone(p), now)
				ts += opusSamples(p)
			}
		}
	}
	buf := make([]byte, 64*tsPacketSize)
	for refused == "" {
		n, _, err := r.conn.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Warn("mpeg-ts ingest failed", "stream", r.h.name, "error", err)
			}
			return
		}
		if err := d.feed(buf[:n]); err != nil {
			s.counters.rtpRejected.Add(1)
			continue
		}
		if !d.havePMT || video != nil || audio != nil {
			continue
		}
		if d.problem != "" {
			refused = d.problem
			break
		}
		// The program is known: attach its tracks, video first.
		var caps []webrtc.RTPCodecCapability
		if d.video >= 0 {
			c, _ := rtpCodec("h264", true)
			caps = append(caps, c)
		}
		if d.audio >= 0 {
			c, _ := rtpCodec("opus", false)
			caps = append(caps, c)
		}
		tracks, g := r.h.attachSource(r.f, caps)
		gen = g
		if d.video >= 0 {
			video = &tsTrack{t: tracks[0]}
		}
		if d.audio >= 0 {
			audio = &tsTrack{t: tracks[len(tracks)-1]}
		}
	}
	r.problem = refused
	s.log.Warn("mpeg-ts ingest refused", "stream", r.h.name, "reason", refused)
	s.dropSession(id)
	go r.close()
}

// opusSamples returns the number of 48 kHz samples of an Opus packet
// from its TOC byte (RFC 6716 §3.1), 960 (20 ms) when it cannot tell.
func opusSamples(p []byte) uint32 {
	if len(p) == 0 {
		return 960
	}
	config := p[0] >> 3
	var frame uint32
	switch {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		frame = []uint32{480, 960, 1920, 2880}[config%4]
	case config < 16: // hybrid: 10, 20 ms
		frame = []uint32{480, 960}[config%2]
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = []uint32{120, 240, 480, 960}[config%4]
	}
	switch p[0] & 0x3 {
	case 0:
		return frame
	case 1, 2:
		return 2 * frame
	}
	if len(p) < 2 {
		return frame
	}
	return uint32(p[1]&0x3f) * frame
}
