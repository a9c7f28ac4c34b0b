package roster

import (
	"crypto/ed25519"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/overlay/membership"
)

func TestNewErrors(t *testing.T) {
	f := newFixture(t)
	self := f.member("self", nodeKey(t, 1), t0, 0)
	_, otherRoot, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	revokedStore := mustStore(t)
	if err := revokedStore.SaveRevocations(f.revoke(nil, t0, membership.RevokeNodeKeyEntry(nodeKey(t, 1), ""))); err != nil {
		t.Fatal(err)
	}
	forgedStore := mustStore(t)
	forged := otherFixture(t).revoke(nil, t0)
	if err := forgedStore.SaveRevocations(forged); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want error
	}{
		{"no self", Config{Community: f.c}, nil},
		{"invalid community", Config{Self: self}, nil},
		{"root key of another community", Config{Community: f.c, Self: self, RootKey: otherRoot}, membership.ErrWrongCommunity},
		{"expired self", Config{Community: f.c, Self: self, Now: func() time.Time { return t0.Add(2 * membership.DefaultValidity) }}, membership.ErrExpired},
		{"self of another community", Config{Community: f.c, Self: otherFixture(t).member("x", nodeKey(t, 2), t0, 0)}, membership.ErrWrongCommunity},
		{"revoked self", Config{Community: f.c, Self: self, Store: revokedStore}, membership.ErrRevoked},
		{"stored list of another community", Config{Community: f.c, Self: self, Store: forgedStore}, membership.ErrWrongCommunity},
		{"too many members", Config{Community: f.c, Self: self, MaxMembers: MaxMembers + 1}, nil},
		{"negative interval", Config{Community: f.c, Self: self, Interval: -time.Second}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cfg.Now == nil {
				tt.cfg.Now = func() time.Time { return t0 }
			}
			r, err := New(tt.cfg)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("New = %v, %v; want error %v", r, err, tt.want)
			}
		})
	}
}

func TestPersistence(t *testing.T) {
	f := newFixture(t)
	st := mustStore(t)
	self := f.member("self", nodeKey(t, 1), t0, 0)
	keyB, keyC := nodeKey(t, 0xb), nodeKey(t, 0xc)
	b, c := f.member("b", keyB, t0, 0), f.member("c", keyC, t0, 0)
	r := f.newRoster(t, Config{Self: self, Store: st})
	s := &Snapshot{
		Community:   f.c.ID(),
		Records:     []Record{{Membership: b, Endpoints: []netip.AddrPort{ep1}, Updated: t0}},
		Revocations: f.revoke(nil, t0, membership.RevokeNodeKeyEntry(keyC, "")),
		Redemptions: []*membership.Membership{c},
	}
	if err := r.Apply(s); err != nil {
		t.Fatal(err)
	}

	r2 := f.newRoster(t, Config{Self: self, Store: st})
	if p := r2.Peers(); len(p) != 1 || p[0].NodeKey != keyB || len(p[0].Endpoints) != 1 {
		t.Errorf("reloaded peers = %v, want B with its endpoint", p)
	}
	if r2.revocations == nil || r2.revocations.Sequence != 1 {
		t.Errorf("reloaded revocation list %v, want sequence 1", r2.revocations)
	}
	if k, ok := r2.redemptions.Lookup(c.Delegation.InviteID); !ok || k != keyC {
		t.Errorf("reloaded redemption of C's invitation = %x, %v", k, ok)
	}

	// A roster file that does not parse is ignored, not fatal, and left
	// alone until the roster changes.
	path := filepath.Join(st.Dir(), RosterFile)
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	r3 := f.newRoster(t, Config{Self: self, Store: st})
	if p := r3.Peers(); len(p) != 0 {
		t.Errorf("peers from a garbage roster file: %v", p)
	}
	if got, _ := os.ReadFile(path); string(got) != "garbage" {
		t.Errorf("roster file replaced before any change")
	}
	// Saving works again with the next change.
	if err := r3.Apply(s); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) == "garbage" {
		t.Errorf("roster file not rewritten after a change: %v", err)
	}
}

func TestPersistErrorsCounted(t *testing.T) {
	f := newFixture(t)
	st := mustStore(t)
	r := f.newRoster(t, Config{Self: f.member("self", nodeKey(t, 1), t0, 0), Store: st})
	// A directory where the roster file goes makes its rename fail.
	if err := os.Mkdir(filepath.Join(st.Dir(), RosterFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(&Snapshot{Community: f.c.ID(), Records: []Record{{Membership: f.member("b", nodeKey(t, 2), t0, 0)}}}); err != nil {
		t.Fatal(err)
	}
	if got := r.Stats().PersistErrors; got != 1 {
		t.Errorf("PersistErrors = %d, want 1", got)
	}
	if len(r.Peers()) != 1 {
		t.Error("the record is lost when it cannot be saved")
	}
}

func TestRevokeNeedsRootKey(t *testing.T) {
	f := newFixture(t)
	r := f.newRoster(t, Config{Self: f.member("self", nodeKey(t, 1), t0, 0)})
	if err := r.Revoke(membership.RevokeNodeKeyEntry(nodeKey(t, 2), "")); !errors.Is(err, ErrNoRootKey) {
		t.Errorf("Revoke = %v, want ErrNoRootKey", err)
	}
}

func TestLimiter(t *testing.T) {
	l := newLimiter(10*time.Second, 2)
	a := netip.MustParseAddr("192.0.2.1")
	a6, a6same, a6other := netip.MustParseAddr("2001:db8:0:1::1"), netip.MustParseAddr("2001:db8:0:1::2"), netip.MustParseAddr("2001:db8:0:2::1")
	steps := []struct {
		at        time.Duration
		src       netip.Addr
		ok        bool
		wantRetry time.Duration
	}{
		{0, a, true, 0},
		{0, a, true, 0},
		{0, a, false, 10 * time.Second},
		{5 * time.Second, a, false, 5 * time.Second},
		{10 * time.Second, a, true, 0},
		{10 * time.Second, netip.MustParseAddr("::ffff:192.0.2.1"), false, 10 * time.Second}, // the same, mapped
		{10 * time.Second, a6, true, 0},
		{10 * time.Second, a6same, true, 0},
		{10 * time.Second, a6, false, 10 * time.Second}, // same /64
		{10 * time.Second, a6other, true, 0},
	}
	for i, s := range steps {
		ok, retry := l.allow(s.src, t0.Add(s.at))
		if ok != s.ok || retry != s.wantRetry {
			t.Errorf("step %d (%v at %v): allow = %v, %v; want %v, %v", i, s.src, s.at, ok, retry, s.ok, s.wantRetry)
		}
	}
	// Full: the source seen longest ago is forgotten, so its next request
	// starts with a full bucket.
	for i := range maxLimited {
		l.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), t0.Add(time.Minute))
	}
	if len(l.buckets) > maxLimited {
		t.Errorf("limiter tracks %d sources, at most %d allowed", len(l.buckets), maxLimited)
	}
}
