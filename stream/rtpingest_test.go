package stream

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/testenv"
	"github.com/cloudbox/cloudbox/stream/streamtest"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// ffmpegRTP runs ffmpeg sending a test picture (H.264 with x264 options
// x264) and a tone (Opus) as RTP to port until the test ends.
func ffmpegRTP(t *testing.T, port int, x264 ...string) {
	t.Helper()
	dst := fmt.Sprintf("rtp://127.0.0.1:%d", port)
	ffmpeg(t, append(append([]string{"-sdp_file", filepath.Join(t.TempDir(), "sdp"), "-map", "0:v", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "25"}, x264...),
		"-f", "rtp", "-payload_type", "96", dst, "-map", "1:a", "-c:a", "libopus", "-f", "rtp", "-payload_type", "97", dst)...)
}

// ffmpeg runs ffmpeg with a test picture as input 0 and a tone as input
// 1, and the output arguments out, until the test ends.
func ffmpeg(t *testing.T, out ...string) {
	t.Helper()
	bin := testenv.RequireCommand(t, "ffmpeg", "ffmpeg")
	args := []string{"-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", "30"}
	args = append(args, out...)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting ffmpeg: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("ffmpeg: %s", log.String())
		}
	})
}

// TestRTPIngestFFmpeg: ffmpeg pushes H.264 and Opus over RTP; a pion
// viewer receives it and ffprobe decodes the frames it got.
func TestRTPIngestFFmpeg(t *testing.T) {
	ts := newTestServer(t, Config{})
	in, err := ts.IngestRTP("camera", RTPOptions{Video: "h264", Audio: "opus", Description: "test picture"})
	if err != nil {
		t.Fatal(err)
	}
	ffmpegRTP(t, in.Port, "-profile:v", "baseline", "-bf", "0", "-tune", "zerolatency")

	if err := streamtest.WaitFor(5*time.Second, func() bool { return len(ts.Streams()) == 1 && ts.Streams()[0].Packets > 0 }); err != nil {
		t.Fatalf("no RTP from ffmpeg: %+v", ts.Streams())
	}
	playAndDecode(t, ts, "camera")
}

// playAndDecode plays stream name with a pion viewer until video and
// audio flowed, and checks with ffprobe that the H.264 it got decodes.
func playAndDecode(t *testing.T, ts *testServer, name string) {
	t.Helper()
	ffprobe := testenv.RequireCommand(t, "ffprobe", "ffmpeg")
	var mu sync.Mutex
	var annexB bytes.Buffer
	var depack codecs.H264Packet
	o := loopback
	o.VideoSink = func(p *rtp.Packet) {
		mu.Lock()
		defer mu.Unlock()
		if b, err := depack.Unmarshal(p.Payload); err == nil {
			annexB.Write(b)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := streamtest.Play(ctx, ts.url("whep", name), o)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := streamtest.WaitFor(10*time.Second, func() bool { return v.VideoPackets.Load() > 200 && v.AudioPackets.Load() > 50 }); err != nil {
		t.Fatalf("viewer: %d video, %d audio packets", v.VideoPackets.Load(), v.AudioPackets.Load())
	}
	mu.Lock()
	file := filepath.Join(t.TempDir(), "video.h264")
	err = os.WriteFile(file, annexB.Bytes(), 0o644)
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0", file).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v: %s", err, out)
	}
	f := strings.Split(strings.TrimSpace(string(out)), ",")
	if len(f) != 4 || f[0] != "h264" || f[1] != "320" {
		t.Fatalf("ffprobe: %q, want h264,320,240,N", out)
	}
	frames, _ := strconv.Atoi(f[3])
	t.Logf("viewer decoded %d frames of %s", frames, strings.TrimSpace(string(out)))
	if frames < 10 {
		t.Errorf("decoded %d frames, want at least 10", frames)
	}
}

// TestRTPIngestRefuses: codecs browsers cannot play are refused with a
// message, up front (AAC) or when the first B-frame arrives.
func TestRTPIngestRefuses(t *testing.T) {
	ts := newTestServer(t, Config{})
	if _, err := ts.IngestRTP("radio", RTPOptions{Audio: "aac"}); StatusOf(err) != 422 || !strings.Contains(err.Error(), "libopus") {
		t.Errorf("AAC: %v, want unsupported codec naming libopus", err)
	}
	if _, err := ts.IngestRTP("radio", RTPOptions{Video: "opus"}); StatusOf(err) != 422 {
		t.Errorf("opus as video: %v, want unsupported codec", err)
	}
	in, err := ts.IngestRTP("bframes", RTPOptions{Video: "h264", Audio: "opus"})
	if err != nil {
		t.Fatal(err)
	}
	ffmpegRTP(t, in.Port, "-profile:v", "high", "-bf", "2")
	if err := streamtest.WaitFor(10*time.Second, func() bool {
		s := ts.Streams()
		return len(s) == 1 && strings.Contains(s[0].Problem, "B-frames") && s[0].Source == ""
	}); err != nil {
		t.Fatalf("B-frames not refused: %+v", ts.Streams())
	}
	t.Logf("problem shown: %s", ts.Streams()[0].Problem)
}
