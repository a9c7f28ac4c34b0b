package stream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// Default payload types of RTPOptions (dynamic range, RFC 3551 §6).
const (
	DefaultVideoPT = 96
	DefaultAudioPT = 97
)

// RTPOptions describe a plain RTP ingest: one UDP port that receives the
// video and/or audio RTP of a stream (e.g. two ffmpeg "-f rtp" outputs
// to the same port with different payload types). RTCP is not needed.
type RTPOptions struct {
	// Description is shown in the "Live now" list; optional.
	Description string
	// Video is "h264" (packetization mode 1, no B-frames), "vp8", or ""
	// for none; Audio is "opus" or "". Other codecs are refused with a
	// message saying what to send instead.
	Video, Audio string
	// VideoPT and AudioPT are the payload types that tell them apart;
	// zero means DefaultVideoPT and DefaultAudioPT.
	VideoPT, AudioPT uint8
}

// RTPIngest is an open RTP ingest.
type RTPIngest struct {
	// Port is the UDP port to send RTP to.
	Port int
	// Session ends the ingest with CloseSession.
	Session string
}

// rtpSource is the reader of an RTP ingest.
type rtpSource struct {
	conn net.PacketConn
	h    *hub
	f    *feed
	once sync.Once
	done chan struct{}
	// problem is set by the reader before it stops.
	problem string
}

func (r *rtpSource) close() error {
	var err error
	r.once.Do(func() {
		err = r.conn.Close()
		<-r.done
		r.h.detachSource(r.f, r.problem)
	})
	return err
}

// IngestRTP opens a UDP port for the RTP of stream name. It fails with
// ErrUnsupportedCodec for codecs browsers cannot play (AAC...), ErrExists
// when the stream already has a source. H.264 with B-frames is refused
// when the first B slice arrives: the ingest closes and the stream's
// Info.Problem says why.
func (s *Server) IngestRTP(name string, opt RTPOptions) (RTPIngest, error) {
	if err := ValidName(name); err != nil {
		return RTPIngest{}, err
	}
	var codecs []webrtc.RTPCodecCapability
	var pts []uint8
	if opt.Video == "" && opt.Audio == "" {
		return RTPIngest{}, fmt.Errorf("%w: name the video codec (h264 or vp8) and/or the audio codec (opus)", ErrUnsupportedCodec)
	}
	if opt.Video != "" {
		c, err := rtpCodec(opt.Video, true)
		if err != nil {
			return RTPIngest{}, err
		}
		codecs, pts = append(codecs, c), append(pts, cmp.Or(opt.VideoPT, DefaultVideoPT))
	}
	if opt.Audio != "" {
		c, err := rtpCodec(opt.Audio, false)
		if err != nil {
			return RTPIngest{}, err
		}
		codecs, pts = append(codecs, c), append(pts, cmp.Or(opt.AudioPT, DefaultAudioPT))
	}
	if len(pts) == 2 && pts[0] == pts[1] {
		return RTPIngest{}, fmt.Errorf("%w: video and audio need different payload types", ErrUnsupportedCodec)
	}
	src, in, err := s.openIngest(name, SourceRTP, opt.Description)
	if err != nil {
		return RTPIngest{}, err
	}
	tracks, gen := src.h.attachSource(src.f, codecs)
	go src.read(s, tracks, pts, gen, in.Session)
	s.log.Info("rtp ingest open", "stream", name, "port", in.Port, "video", opt.Video, "audio", opt.Audio)
	return in, nil
}

// openIngest opens the UDP port of an RTP or MPEG-TS ingest of stream
// name and claims the stream for it.
func (s *Server) openIngest(name, kind, description string) (*rtpSource, RTPIngest, error) {
	var lc net.ListenConfig
	conn, err := lc.ListenPacket(context.Background(), "udp", net.JoinHostPort(s.cfg.RTPHost, "0"))
	if err != nil {
		return nil, RTPIngest{}, fmt.Errorf("opening a UDP port for %s: %w", kind, err)
	}
	setSocketBuffers(conn, iceSocketBuffer)
	f := &feed{kind: kind}
	h, created, err := s.claim(name, f)
	if err != nil {
		conn.Close()
		return nil, RTPIngest{}, err
	}
	h.setDescription(description)
	src := &rtpSource{conn: conn, h: h, f: f, done: make(chan struct{})}
	f.close = src.close
	id, err := s.addSession(src)
	if err != nil {
		conn.Close()
		h.detachSource(f, "")
		if created {
			h.close()
		}
		return nil, RTPIngest{}, err
	}
	return src, RTPIngest{Port: conn.LocalAddr().(*net.UDPAddr).Port, Session: id}, nil
}

// rtpCodec returns the capability of a codec named by a user.
func rtpCodec(name string, video bool) (webrtc.RTPCodecCapability, error) {
	if p := codecProblem(name); p != "" {
		return webrtc.RTPCodecCapability{}, fmt.Errorf("%w: %s", ErrUnsupportedCodec, p)
	}
	switch n := strings.ToLower(name); {
	case n == "h264" && video:
		return webrtc.RTPCodecCapability{MimeType: mimeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, nil
	case n == "vp8" && video:
		return webrtc.RTPCodecCapability{MimeType: mimeVP8, ClockRate: 90000}, nil
	case n == "opus" && !video:
		return webrtc.RTPCodecCapability{MimeType: mimeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, nil
	}
	kind := "audio"
	if video {
		kind = "video"
	}
	return webrtc.RTPCodecCapability{}, fmt.Errorf("%w: %s is not a %s codec", ErrUnsupportedCodec, name, kind)
}

// read forwards the ingest's packets until the socket closes or a B
// slice arrives.
func (r *rtpSource) read(s *Server, tracks []*track, pts []uint8, gen uint64, id string) {
	defer close(r.done)
	for {
		buf := make([]byte, 1500)
		n, _, err := r.conn.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Warn("rtp ingest failed", "stream", r.h.name, "error", err)
			}
			return
		}
		if n < 12 || buf[0]>>6 != 2 {
			continue
		}
		pt := buf[1] & 0x7f
		i := -1
		for j, p := range pts {
			if p == pt {
				i = j
			}
		}
		if i < 0 {
			s.counters.rtpRejected.Add(1)
			continue
		}
		checkB := strings.EqualFold(tracks[i].codec.MimeType, mimeH264)
		if forward(tracks[i], gen, buf[:n], checkB, time.Now()) == pktBFrame {
			r.problem = bFrameProblem
			s.log.Warn("rtp ingest refused", "stream", r.h.name, "reason", "h264 b-frames")
			s.dropSession(id)
			go r.close()
			return
		}
	}
}
