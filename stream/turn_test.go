package stream

import (
	"net"
	"testing"
	"time"

	"github.com/pion/turn/v5"
	"github.com/pion/webrtc/v4"
)

// TestTURN: a publisher that may use only relays reaches the box through
// its built-in TURN server; a viewer gets the stream.
func TestTURN(t *testing.T) {
	ts := newTestServer(t, Config{TURNAddr: "127.0.0.1:0", TURNRelayIP: net.IPv4(127, 0, 0, 1)})
	ice, ok := ts.TURNCredential("127.0.0.1", "tester")
	if !ok {
		t.Fatal("no TURN server")
	}
	o := loopback
	o.RelayOnly = true
	o.ICEServers = []webrtc.ICEServer{{URLs: ice.URLs, Username: ice.Username, Credential: ice.Credential}}
	publish(t, ts, "relayed", o)
	v := play(t, ts, "relayed")
	growing(t, v, 10*time.Second)
}

func TestTURNAuth(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ts := &turnServer{secret: []byte("secret"), now: func() time.Time { return now }}
	user, pass := ts.credential("ana")
	if _, key, ok := ts.auth(&turn.RequestAttributes{Username: user}); !ok || string(key) != string(turn.GenerateAuthKey(user, turnRealm, pass)) {
		t.Errorf("fresh credential refused or wrong key")
	}
	now = now.Add(TURNCredentialTTL + time.Second)
	if _, _, ok := ts.auth(&turn.RequestAttributes{Username: user}); ok {
		t.Error("expired credential accepted")
	}
	for _, bad := range []string{"", "ana", "x:ana", "99999999999999999999:ana"} {
		if _, _, ok := ts.auth(&turn.RequestAttributes{Username: bad}); ok {
			t.Errorf("user name %q accepted", bad)
		}
	}
}
