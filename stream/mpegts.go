package stream

import (
	"errors"
	"fmt"
)

// MPEG-TS (ISO/IEC 13818-1) as cameras and ffmpeg ("-f mpegts udp://...")
// send it: the demuxer below finds the program's video and audio
// elementary streams (PAT, PMT), reassembles their PES packets and hands
// each one, with its presentation time stamp, to a callback.

const (
	tsPacketSize = 188
	tsSync       = 0x47
	// Stream types of a PMT (ISO/IEC 13818-1 Table 2-34 and
	// registrations).
	tsTypeH264    = 0x1b
	tsTypeHEVC    = 0x24
	tsTypeAAC     = 0x0f
	tsTypeAACLATM = 0x11
	tsTypeMP2     = 0x03
	tsTypeMP2b    = 0x04
	tsTypeAC3     = 0x81
	tsTypePrivate = 0x06 // Opus: with a registration descriptor "Opus"
	tsTypeMPEG2V  = 0x02
	// maxPES bounds a reassembled PES packet (a large keyframe fits).
	maxPES = 4 << 20
)

var errTSSync = errors.New("not an MPEG-TS packet (no sync byte)")

// tsKind is what an elementary stream carries.
type tsKind int

const (
	tsNone tsKind = iota
	tsH264
	tsOpus
)

// tsDemuxer reassembles the PES packets of the first program of a
// transport stream. It is not safe for concurrent use.
type tsDemuxer struct {
	// onPES receives each complete PES payload of the video or audio
	// stream with its PTS (90 kHz, -1 when absent). data is valid only
	// during the call.
	onPES func(kind tsKind, pts int64, data []byte)

	pmtPID       int // -1 until the PAT names it
	video, audio int // PIDs, -1 for none
	// problem says why the program cannot be passed through (AAC...),
	// "" when it can; set with the PMT.
	problem string
	havePMT bool
	pes     map[int]*pesBuf
}

type pesBuf struct {
	kind tsKind
	data []byte
	open bool
}

func newTSDemuxer(onPES func(kind tsKind, pts int64, data []byte)) *tsDemuxer {
	return &tsDemuxer{onPES: onPES, pmtPID: -1, video: -1, audio: -1, pes: make(map[int]*pesBuf)}
}

// feed parses one datagram of whole 188-byte packets.
func (d *tsDemuxer) feed(b []byte) error {
	if len(b)%tsPacketSize != 0 {
		return fmt.Errorf("datagram of %d bytes is not a whole number of TS packets", len(b))
	}
	for ; len(b) > 0; b = b[tsPacketSize:] {
		if err := d.packet(b[:tsPacketSize]); err != nil {
			return err
		}
	}
	return nil
}

// packet parses one TS packet (§2.4.3.2).
func (d *tsDemuxer) packet(p []byte) error {
	if p[0] != tsSync {
		return errTSSync
	}
	pusi := p[1]&0x40 != 0
	pid := int(p[1]&0x1f)<<8 | int(p[2])
	afc := p[3] >> 4 & 0x3
	payload := p[4:]
	if afc&0x2 != 0 { // adaptation field
		n := int(payload[0])
		if n+1 > len(payload) {
			return fmt.Errorf("adaptation field of %d bytes", n)
		}
		payload = payload[n+1:]
	}
	if afc&0x1 == 0 || len(payload) == 0 {
		return nil
	}
	switch {
	case pid == 0:
		if pusi {
			return d.pat(payload)
		}
	case pid == d.pmtPID:
		if pusi {
			return d.pmt(payload)
		}
	case pid == d.video || pid == d.audio:
		d.pesData(pid, pusi, payload)
	}
	return nil
}

// section returns the section after the pointer field with its
// table_id, checking the section length (§2.4.4.1, §2.4.4.3).
func section(p []byte) ([]byte, byte, error) {
	ptr := int(p[0])
	if 1+ptr+3 > len(p) {
		return nil, 0, errors.New("short section")
	}
	s := p[1+ptr:]
	n := int(s[1]&0x0f)<<8 | int(s[2])
	if 3+n > len(s) || n < 9 {
		return nil, 0, fmt.Errorf("section length %d", n)
	}
	return s[:3+n-4], s[0], nil // without the CRC
}

// pat reads the program association table (§2.4.4.3).
func (d *tsDemuxer) pat(p []byte) error {
	s, id, err := section(p)
	if err != nil || id != 0 {
		return fmt.Errorf("PAT: %v", cmpErr(err, "table id"))
	}
	for e := s[8:]; len(e) >= 4; e = e[4:] {
		if program := int(e[0])<<8 | int(e[1]); program != 0 {
			d.pmtPID = int(e[2]&0x1f)<<8 | int(e[3])
			return nil
		}
	}
	return nil
}

func cmpErr(err error, what string) string {
	if err != nil {
		return err.Error()
	}
	return "bad " + what
}

// pmt reads the program map table (§2.4.4.8): the first H.264 video and
// the first audio stream; other codecs set problem.
func (d *tsDemuxer) pmt(p []byte) error {
	s, id, err := section(p)
	if err != nil || id != 2 || len(s) < 12 {
		return fmt.Errorf("PMT: %v", cmpErr(err, "table id"))
	}
	infoLen := int(s[10]&0x0f)<<8 | int(s[11])
	if 12+infoLen > len(s) {
		return errors.New("PMT: program info too long")
	}
	video, audio, problem := -1, -1, ""
	var vproblem, aproblem string
	for e := s[12+infoLen:]; len(e) >= 5; {
		typ, pid := e[0], int(e[1]&0x1f)<<8|int(e[2])
		n := int(e[3]&0x0f)<<8 | int(e[4])
		if 5+n > len(e) {
			return errors.New("PMT: ES info too long")
		}
		desc := e[5 : 5+n]
		e = e[5+n:]
		switch typ {
		case tsTypeH264:
			if video < 0 {
				video = pid
			}
		case tsTypeHEVC, tsTypeMPEG2V:
			vproblem = codecProblem(map[byte]string{tsTypeHEVC: "h265", tsTypeMPEG2V: "mpeg2"}[typ])
		case tsTypeAAC, tsTypeAACLATM:
			aproblem = codecProblem("aac")
		case tsTypeMP2, tsTypeMP2b, tsTypeAC3:
			aproblem = "MPEG or AC-3 audio cannot be played by browsers over WebRTC; encode the audio as Opus (ffmpeg: -c:a libopus)"
		case tsTypePrivate:
			if hasOpusRegistration(desc) && audio < 0 {
				audio = pid
			}
		}
	}
	switch {
	case video < 0 && vproblem != "":
		problem = vproblem
	case audio < 0 && aproblem != "":
		problem = aproblem
	case video < 0 && audio < 0:
		problem = "the MPEG-TS program has no H.264 video and no Opus audio"
	}
	if d.havePMT && (video != d.video || audio != d.audio) {
		return errors.New("PMT: the program's streams changed")
	}
	d.video, d.audio, d.problem, d.havePMT = video, audio, problem, true
	return nil
}

// hasOpusRegistration reports whether descriptors hold a registration
// descriptor (tag 5, §2.6.8) with format identifier "Opus".
func hasOpusRegistration(desc []byte) bool {
	for len(desc) >= 2 {
		tag, n := desc[0], int(desc[1])
		if 2+n > len(desc) {
			return false
		}
		if tag == 5 && n >= 4 && string(desc[2:6]) == "Opus" {
			return true
		}
		desc = desc[2+n:]
	}
	return false
}

// pesData collects the payload of a video or audio packet; a new PES
// (payload unit start) completes the previous one.
func (d *tsDemuxer) pesData(pid int, start bool, p []byte) {
	b := d.pes[pid]
	if b == nil {
		kind := tsH264
		if pid == d.audio {
			kind = tsOpus
		}
		b = &pesBuf{kind: kind}
		d.pes[pid] = b
	}
	if start {
		d.flush(b)
		b.open = true
	}
	if !b.open {
		return
	}
	if len(b.data)+len(p) > maxPES {
		b.data, b.open = b.data[:0], false
		return
	}
	b.data = append(b.data, p...)
}

// flush parses the PES header (§2.4.3.6) of a complete packet and hands
// its payload on.
func (d *tsDemuxer) flush(b *pesBuf) {
	if !b.open {
		return
	}
	data := b.data
	b.data, b.open = b.data[:0], false
	if len(data) < 9 || data[0] != 0 || data[1] != 0 || data[2] != 1 {
		return
	}
	hlen := int(data[8])
	if 9+hlen > len(data) {
		return
	}
	pts := int64(-1)
	if data[7]&0x80 != 0 && hlen >= 5 {
		h := data[9:14]
		pts = int64(h[0]>>1&0x07)<<30 | int64(h[1])<<22 | int64(h[2]>>1)<<15 | int64(h[3])<<7 | int64(h[4]>>1)
	}
	d.onPES(b.kind, pts, data[9+hlen:])
}

// opusPackets splits the payload of an Opus PES into Opus packets. Each
// has the control header of the Opus mapping for MPEG-TS, as ffmpeg
// writes it: 11 bits set (0x7FE0) with trim flags, the size as a run of
// bytes ending with one below 255, then optional trim fields.
func opusPackets(p []byte) [][]byte {
	var out [][]byte
	for len(p) >= 3 && p[0] == 0x7f && p[1]&0xe0 == 0xe0 {
		flags := p[1]
		i, size := 2, 0
		for i < len(p) {
			size += int(p[i])
			i++
			if p[i-1] != 255 {
				break
			}
		}
		if flags&0x10 != 0 {
			i += 2
		}
		if flags&0x08 != 0 {
			i += 2
		}
		if size == 0 || i+size > len(p) {
			return out
		}
		out = append(out, p[i:i+size])
		p = p[i+size:]
	}
	return out
}
