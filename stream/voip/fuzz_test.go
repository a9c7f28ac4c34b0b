package voip

import (
	"net/netip"
	"testing"
)

func FuzzParseDigest(f *testing.F) {
	for _, s := range []string{
		`Digest username="201", realm="cloudbox.test", nonce="abc", uri="sip:cloudbox.test", response="0123", algorithm=MD5, qop=auth, nc=00000001, cnonce="x"`,
		`Digest username="a\"b", nonce=n, uri=u, response=r`,
		`Digest username="201", nonce=`,
		`Basic dXNlcjpwYXNz`,
		`Digest realm="unterminated`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseDigest(s)
		if err == nil && (c.Username == "" || c.Nonce == "" || c.Response == "" || c.URI == "") {
			t.Fatalf("accepted %q without a required field: %+v", s, c)
		}
	})
}

func FuzzSDP(f *testing.F) {
	f.Add([]byte("v=0\r\no=uac 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n"))
	f.Add([]byte("v=0\nm=audio 6000 RTP/AVP 0\nc=IN IP6 2001:db8::1\nm=video 0 RTP/AVP 96\na=candidate:1 1 udp 1 192.0.2.9 5 typ host\n"))
	f.Add([]byte("v=0\nm=audio 70000 RTP/AVP 0\n"))
	f.Add([]byte("c=IN IP4 nothing\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		media, err := parseSDP(b)
		if err != nil {
			return
		}
		ports := make([]uint16, len(media))
		for i := range ports {
			ports[i] = uint16(20000 + 2*i)
		}
		out := rewriteSDP(b, netip.MustParseAddr("198.51.100.7"), ports)
		again, err := parseSDP(out)
		if err != nil {
			t.Fatalf("rewritten SDP does not parse: %v\n%q", err, out)
		}
		if len(again) != len(media) {
			t.Fatalf("rewrite changed the streams: %d -> %d\n%q", len(media), len(again), out)
		}
		for i, m := range again {
			if media[i].Port != 0 && (m.Port != ports[i] || m.Addr != netip.MustParseAddr("198.51.100.7")) {
				t.Fatalf("stream %d not anchored: %+v\n%q", i, m, out)
			}
		}
	})
}

// FuzzHandle feeds raw datagrams to a Server: whatever comes, it must not
// crash (answers go to a discard address).
func FuzzHandle(f *testing.F) {
	for _, s := range []string{
		"INVITE sip:201@cloudbox.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport\r\nFrom: <sip:100@cloudbox.test>;tag=a\r\nTo: <sip:201@cloudbox.test>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: 60\r\n\r\nv=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 6000 RTP/AVP 0\r\nt=0 0\r\n",
		"REGISTER sip:cloudbox.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK2\r\nFrom: <sip:201@cloudbox.test>;tag=b\r\nTo: <sip:201@cloudbox.test>\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\nContact: *\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n",
		"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-cbxx\r\nVia: SIP/2.0/UDP 192.0.2.2\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
		"BYE sip:201@192.0.2.5 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1\r\nRoute: <sip:127.0.0.1:5060;lr>\r\n\r\n",
		"OPTIONS sip:x SIP/2.0\r\nv: SIP/2.0/UDP [2001:db8::1]:5060\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	s, err := New(Config{Addr: "127.0.0.1:0", Relay: RelayConfig{Addr: netip.MustParseAddr("127.0.0.1"), PortMin: 11000, PortMax: 11999},
		Password: func(string) (string, bool) { return "pw", true }})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	src := peer{ap: netip.MustParseAddrPort("127.0.0.1:9")}
	f.Fuzz(func(t *testing.T, b []byte) {
		s.handle(b, src)
	})
}
