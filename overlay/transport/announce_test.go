package transport

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// announceFixture is a Bind with one peer, c, that it has no endpoint
// for, on a clock the test moves.
type announceFixture struct {
	bind  *Bind
	inner *fakeInner
	self  Key
	c     Key
	now   time.Time
}

func newAnnounceFixture(t *testing.T) *announceFixture {
	f := &announceFixture{inner: newFakeInner(true), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	priv, self := testKey(t)
	f.self = self
	_, f.c = testKey(t)
	var err error
	f.bind, err = New(Config{PrivateKey: priv, Inner: f.inner, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	f.bind.SetPeers([]PeerConfig{{Key: f.c, Name: "c"}})
	if _, _, err := f.bind.Open(0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.bind.Close() })
	return f
}

// lanStats returns the LAN counters of s.
func lanStats(s Stats) [6]uint64 {
	return [6]uint64{s.LANAnnouncesOut, s.LANAnnouncesAccepted, s.LANAnnouncesUnknown,
		s.LANAnnouncesUnusable, s.LANAnnouncesMalformed, s.LANAnnouncesRateLimited}
}

func TestHandleAnnounce(t *testing.T) {
	_, stranger := testKey(t)
	lan := netip.MustParseAddr("198.51.100.7")
	tests := []struct {
		name  string
		from  netip.Addr
		pkt   func(f *announceFixture) []byte
		stats [6]uint64 // out, accepted, unknown, unusable, malformed, rate-limited
		ping  netip.AddrPort
	}{
		{"peer", lan, func(f *announceFixture) []byte { return AppendAnnounce(nil, f.c, 51820) },
			[6]uint64{0, 1, 0, 0, 0, 0}, netip.MustParseAddrPort("198.51.100.7:51820")},
		{"peer on another port, v4-mapped source", netip.MustParseAddr("::ffff:198.51.100.7"),
			func(f *announceFixture) []byte { return AppendAnnounce(nil, f.c, 4242) },
			[6]uint64{0, 1, 0, 0, 0, 0}, netip.MustParseAddrPort("198.51.100.7:4242")},
		{"unknown key", lan, func(f *announceFixture) []byte { return AppendAnnounce(nil, stranger, 51820) },
			[6]uint64{0, 0, 1, 0, 0, 0}, netip.AddrPort{}},
		{"own key", lan, func(f *announceFixture) []byte { return AppendAnnounce(nil, f.self, 51820) },
			[6]uint64{}, netip.AddrPort{}},
		{"link-local source", netip.MustParseAddr("fe80::1%eth0"), func(f *announceFixture) []byte { return AppendAnnounce(nil, f.c, 51820) },
			[6]uint64{0, 0, 0, 1, 0, 0}, netip.AddrPort{}},
		{"port zero", lan, func(f *announceFixture) []byte { return AppendAnnounce(nil, f.c, 0) },
			[6]uint64{0, 0, 0, 0, 1, 0}, netip.AddrPort{}},
		{"truncated", lan, func(f *announceFixture) []byte { return AppendAnnounce(nil, f.c, 51820)[:AnnounceLen-1] },
			[6]uint64{0, 0, 0, 0, 1, 0}, netip.AddrPort{}},
		{"disco type", lan, func(f *announceFixture) []byte {
			p := AppendAnnounce(nil, f.c, 51820)
			p[1] = TypeDisco
			return p
		}, [6]uint64{0, 0, 0, 0, 1, 0}, netip.AddrPort{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAnnounceFixture(t)
			f.bind.HandleAnnounce(tt.from, tt.pkt(f))
			if diff := cmp.Diff(tt.stats, lanStats(f.bind.Stats())); diff != "" {
				t.Errorf("LAN stats (-want +got):\n%s", diff)
			}
			sent := f.inner.take()
			if !tt.ping.IsValid() {
				if len(sent) != 0 {
					t.Fatalf("sent %d packets, want none", len(sent))
				}
				return
			}
			if len(sent) != 1 || sent[0].to != tt.ping || classify(sent[0].pkt) != kindDisco || headerKey(sent[0].pkt) != f.self {
				t.Fatalf("sent %+v, want one disco ping to %v", sent, tt.ping)
			}
			// The candidate is pinged, not trusted: no confirmed path yet.
			if st := f.bind.Status(); len(st) != 1 || st[0].Confirmed {
				t.Errorf("status %+v, want c unconfirmed", st)
			}
			// The same announce at once does not ping again.
			f.bind.HandleAnnounce(tt.from, tt.pkt(f))
			if sent := f.inner.take(); len(sent) != 0 {
				t.Errorf("repeated announce sent %d packets, want none", len(sent))
			}
		})
	}
}

func TestHandleAnnounceRateLimit(t *testing.T) {
	f := newAnnounceFixture(t)
	_, stranger := testKey(t)
	pkt := AppendAnnounce(nil, stranger, 51820)
	from := netip.MustParseAddr("198.51.100.7")
	for range 2 * announceBurst {
		f.bind.HandleAnnounce(from, pkt)
	}
	f.now = f.now.Add(time.Second)
	for range 2 * announceBurst {
		f.bind.HandleAnnounce(from, pkt)
	}
	s := f.bind.Stats()
	want := [6]uint64{0, 0, announceBurst + announceRate, 0, 0, 3*announceBurst - announceRate}
	if diff := cmp.Diff(want, lanStats(s)); diff != "" {
		t.Errorf("LAN stats (-want +got):\n%s", diff)
	}
}

func FuzzParseAnnounce(f *testing.F) {
	var k Key
	k[0], k[31] = 1, 2
	f.Add(AppendAnnounce(nil, k, 51820))
	f.Add(AppendAnnounce(nil, Key{}, 51820))
	f.Add(AppendAnnounce(nil, k, 0))
	f.Add([]byte{Magic, TypeAnnounce})
	f.Add(append(AppendAnnounce(nil, k, 1), 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, port, err := ParseAnnounce(b)
		if err != nil {
			return
		}
		if k.IsZero() || port == 0 {
			t.Fatalf("parsed zero key or port from %x", b)
		}
		if again := AppendAnnounce(nil, k, port); !bytes.Equal(again, b) {
			t.Fatalf("round trip of %x gave %x", b, again)
		}
	})
}
