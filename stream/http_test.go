package stream

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

// viewerOffer returns a real recvonly offer of a pion peer connection.
func viewerOffer(t *testing.T) string {
	t.Helper()
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return o.SDP
}

const aacOffer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
	"a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 97\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:97 mpeg4-generic/48000/2\r\n"

// TestMalformed: bad WHIP and WHEP requests get 4xx with a message.
func TestMalformed(t *testing.T) {
	ts := newTestServer(t, Config{})
	good := viewerOffer(t)
	for _, tc := range []struct {
		name, method, path, ctype, body string
		want                            int
		msg                             string
	}{
		{"get whip", "GET", "/whip/a", "", "", 405, "POST"},
		{"no content type", "POST", "/whip/a", "text/plain", "v=0", 415, "application/sdp"},
		{"empty", "POST", "/whip/a", "application/sdp", "", 400, "empty"},
		{"garbage", "POST", "/whip/a", "application/sdp", "hello", 400, "bad SDP"},
		{"bad name", "POST", "/whip/A%20B", "application/sdp", good, 400, "invalid stream name"},
		{"too large", "POST", "/whip/a", "application/sdp", strings.Repeat("a", MaxSDPSize+1), 413, "over"},
		{"recvonly to whip", "POST", "/whip/a", "application/sdp", good, 400, "sendonly"},
		{"aac", "POST", "/whip/a", "application/sdp", aacOffer, 422, "Opus"},
		{"sendonly to whep", "POST", "/whep/a", "application/sdp", aacOffer, 400, "recvonly"},
		{"no media", "POST", "/whep/a", "application/sdp", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n", 400, "no media"},
		{"unknown stream", "POST", "/whep/nothing", "application/sdp", good, 404, "not live"},
		{"unknown session", "DELETE", "/session/123", "", "", 404, "not found"},
		{"patch session", "PATCH", "/session/123", "application/trickle-ice-sdpfrag", "a=x", 405, "trickle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, ts.http.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.want || !strings.Contains(string(body), tc.msg) {
				t.Errorf("%s %s: %d %q, want %d containing %q", tc.method, tc.path, resp.StatusCode, body, tc.want, tc.msg)
			}
		})
	}
}
