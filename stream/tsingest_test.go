package stream

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/stream/streamtest"
)

// TestTSIngestFFmpeg: ffmpeg sends MPEG-TS (H.264 and Opus) over UDP; a
// pion viewer receives both and ffprobe decodes the video.
func TestTSIngestFFmpeg(t *testing.T) {
	ts := newTestServer(t, Config{})
	in, err := ts.IngestTS("camera", TSOptions{Description: "a camera"})
	if err != nil {
		t.Fatal(err)
	}
	ffmpeg(t, "-map", "0:v", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "25", "-profile:v", "baseline", "-bf", "0",
		"-tune", "zerolatency", "-map", "1:a", "-c:a", "libopus", "-f", "mpegts", fmt.Sprintf("udp://127.0.0.1:%d?pkt_size=1316", in.Port))
	if err := streamtest.WaitFor(5*time.Second, func() bool {
		s := ts.Streams()
		return len(s) == 1 && s[0].Packets > 0 && strings.Join(s[0].Codecs, ",") == "H264,opus"
	}); err != nil {
		t.Fatalf("no media from ffmpeg: %+v", ts.Streams())
	}
	playAndDecode(t, ts, "camera")
}

// TestTSIngestRefuses: AAC audio (the usual in MPEG-TS) is refused with
// a message saying what to send instead.
func TestTSIngestRefuses(t *testing.T) {
	ts := newTestServer(t, Config{})
	in, err := ts.IngestTS("aac", TSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ffmpeg(t, "-map", "0:v", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-bf", "0", "-map", "1:a", "-c:a", "aac",
		"-f", "mpegts", fmt.Sprintf("udp://127.0.0.1:%d?pkt_size=1316", in.Port))
	if err := streamtest.WaitFor(10*time.Second, func() bool {
		s := ts.Streams()
		return len(s) == 1 && strings.Contains(s[0].Problem, "libopus")
	}); err != nil {
		t.Fatalf("AAC not refused: %+v", ts.Streams())
	}
	t.Logf("problem shown: %s", ts.Streams()[0].Problem)
}

func FuzzTSDemuxer(f *testing.F) {
	pat := make([]byte, tsPacketSize)
	copy(pat, []byte{0x47, 0x40, 0x00, 0x10, 0x00, 0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00})
	pmt := make([]byte, tsPacketSize)
	copy(pmt, []byte{0x47, 0x50, 0x00, 0x10, 0x00, 0x02, 0xb0, 0x17, 0x00, 0x01, 0xc1, 0x00, 0x00, 0xe1, 0x00, 0xf0, 0x00,
		0x1b, 0xe1, 0x00, 0xf0, 0x00, 0x06, 0xe1, 0x01, 0xf0, 0x06, 0x05, 0x04, 'O', 'p', 'u', 's'})
	pes := make([]byte, tsPacketSize)
	copy(pes, []byte{0x47, 0x41, 0x00, 0x10, 0x00, 0x00, 0x01, 0xe0, 0x00, 0x00, 0x80, 0x80, 0x05, 0x21, 0x00, 0x01, 0x00, 0x01,
		0x00, 0x00, 0x00, 0x01, 0x65, 0x88})
	f.Add(append(append(append([]byte{}, pat...), pmt...), pes...))
	f.Add([]byte{0x7f, 0xe0, 0x03, 0xfc, 0x01, 0x02})
	f.Fuzz(func(t *testing.T, b []byte) {
		d := newTSDemuxer(func(kind tsKind, pts int64, data []byte) {
			if kind == tsOpus {
				for _, p := range opusPackets(data) {
					opusSamples(p)
				}
			}
		})
		for len(b) >= tsPacketSize {
			d.packet(b[:tsPacketSize])
			b = b[tsPacketSize:]
		}
		opusPackets(b)
	})
}
