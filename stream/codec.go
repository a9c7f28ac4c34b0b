package stream

import (
	"fmt"
	"strings"
)

// Codec MIME types this package passes through (RFC 6184 H.264 with
// packetization mode 1, RFC 7741 VP8, RFC 7587 Opus).
const (
	mimeH264 = "video/H264"
	mimeVP8  = "video/VP8"
	mimeOpus = "audio/opus"
)

// isKeyframeStart reports whether the RTP payload of codec mime begins a
// keyframe: for VP8 the first packet of a key frame (RFC 7741 §4.2,
// §4.3), for H.264 a packet that carries or starts an SPS or IDR NAL unit
// (RFC 6184 §5.6–5.8). It never reads past payload.
func isKeyframeStart(mime string, payload []byte) bool {
	switch {
	case strings.EqualFold(mime, mimeVP8):
		return vp8Keyframe(payload)
	case strings.EqualFold(mime, mimeH264):
		return h264Keyframe(payload)
	}
	return false
}

// vp8Keyframe parses the VP8 payload descriptor (RFC 7741 §4.2) and the
// first byte of the payload header (§4.3).
func vp8Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	x, s, pid := p[0]&0x80 != 0, p[0]&0x10 != 0, p[0]&0x07
	if !s || pid != 0 {
		return false
	}
	i := 1
	if x {
		if len(p) <= i {
			return false
		}
		ext := p[i]
		i++
		if ext&0x80 != 0 { // I: picture ID, 7 or 15 bits
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if ext&0x30 != 0 { // T or K: TID/Y/KEYIDX
			i++
		}
	}
	if len(p) <= i {
		return false
	}
	return p[i]&0x01 == 0 // P bit: 0 is a key frame
}

// h264 NAL unit types (ITU-T H.264 Table 7-1, RFC 6184 §5.2).
const (
	nalSlice = 1
	nalIDR   = 5
	nalSPS   = 7
	nalSTAPA = 24
	nalFUA   = 28
)

func h264Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch t := p[0] & 0x1f; t {
	case nalIDR, nalSPS:
		return true
	case nalSTAPA: // §5.7.1: 16-bit size, NAL unit, ...
		for i := 1; i+2 < len(p); {
			n := int(p[i])<<8 | int(p[i+1])
			i += 2
			if n == 0 || i+n > len(p) {
				return false
			}
			if u := p[i] & 0x1f; u == nalIDR || u == nalSPS {
				return true
			}
			i += n
		}
	case nalFUA: // §5.8: FU indicator, FU header (S E R type)
		if len(p) < 2 {
			return false
		}
		return p[1]&0x80 != 0 && (p[1]&0x1f == nalIDR || p[1]&0x1f == nalSPS)
	}
	return false
}

// h264SliceType returns the slice_type of the first slice NAL unit that
// starts in payload (ITU-T H.264 §7.3.3: first_mb_in_slice and
// slice_type, both ue(v)), and false when the packet starts none.
func h264SliceType(p []byte) (int, bool) {
	if len(p) < 2 {
		return 0, false
	}
	var body []byte
	switch t := p[0] & 0x1f; t {
	case nalSlice, nalIDR:
		body = p[1:]
	case nalSTAPA:
		for i := 1; i+2 < len(p); {
			n := int(p[i])<<8 | int(p[i+1])
			i += 2
			if n < 2 || i+n > len(p) {
				return 0, false
			}
			if u := p[i] & 0x1f; u == nalSlice || u == nalIDR {
				body = p[i+1 : i+n]
				break
			}
			i += n
		}
	case nalFUA:
		if u := p[1] & 0x1f; p[1]&0x80 != 0 && (u == nalSlice || u == nalIDR) {
			body = p[2:]
		}
	}
	if body == nil {
		return 0, false
	}
	r := bitReader{b: unescapeRBSP(body, 32)}
	if _, ok := r.ue(); !ok {
		return 0, false
	}
	st, ok := r.ue()
	return int(st), ok
}

// isBSlice reports whether slice_type is B (Table 7-6: 1 or 6).
func isBSlice(sliceType int) bool { return sliceType%5 == 1 }

// unescapeRBSP removes emulation prevention bytes (§7.4.1: 0x000003) from
// at most the first limit bytes of b.
func unescapeRBSP(b []byte, limit int) []byte {
	if len(b) > limit {
		b = b[:limit]
	}
	out := make([]byte, 0, len(b))
	zeros := 0
	for _, c := range b {
		if zeros >= 2 && c == 3 {
			zeros = 0
			continue
		}
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
		out = append(out, c)
	}
	return out
}

// bitReader reads Exp-Golomb codes (H.264 §9.1).
type bitReader struct {
	b   []byte
	pos int // in bits
}

func (r *bitReader) bit() (uint, bool) {
	if r.pos >= len(r.b)*8 {
		return 0, false
	}
	v := uint(r.b[r.pos/8]>>(7-r.pos%8)) & 1
	r.pos++
	return v, true
}

func (r *bitReader) ue() (uint, bool) {
	zeros := 0
	for {
		b, ok := r.bit()
		if !ok {
			return 0, false
		}
		if b == 1 {
			break
		}
		zeros++
		if zeros > 31 {
			return 0, false
		}
	}
	v := uint(1)<<zeros - 1
	for i := zeros - 1; i >= 0; i-- {
		b, ok := r.bit()
		if !ok {
			return 0, false
		}
		v += b << i
	}
	return v, true
}

// codecProblem returns why a codec (as named by a user or an SDP rtpmap
// encoding name) cannot be passed through to browsers, or "" when it can.
func codecProblem(name string) string {
	switch strings.ToLower(name) {
	case "h264", "vp8", "opus":
		return ""
	case "aac", "mpeg4-generic", "mp4a-latm":
		return "AAC audio cannot be played by browsers over WebRTC; encode the audio as Opus (ffmpeg: -c:a libopus)"
	case "h265", "hevc":
		return "H.265 video cannot be played by most browsers over WebRTC; encode as H.264 without B-frames (ffmpeg: -c:v libx264 -bf 0) or VP8"
	case "mp2t":
		return "MPEG-TS over RTP is not supported; send plain RTP (ffmpeg: -f rtp)"
	}
	return fmt.Sprintf("codec %q is not supported; use H.264 without B-frames or VP8 for video and Opus for audio", name)
}

// bFrameProblem is the message of a stream refused for B-frames.
const bFrameProblem = "H.264 with B-frames cannot be passed through to browsers (pictures arrive out of order); encode without B-frames (ffmpeg: -bf 0, or -profile:v baseline, or x264 -tune zerolatency; OBS: turn B-frames off)"
