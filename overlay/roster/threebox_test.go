package roster

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/overlay/membership"
	"github.com/google/go-cmp/cmp"
)

// box is one member in the three-box test, served on loopback.
type box struct {
	name  string
	key   [32]byte
	r     *Roster
	store *membership.Store
	url   string
}

// TestThreeBoxes: the founder A (root key), B joined through A, and C
// joined through B, not through the founder:
//
//	C --join--> B --join--> A (root)
//	      anti-entropy: GET /overlay/v1/snapshot between all
//
// A learns of C by anti-entropy; a revocation made on A reaches B; a
// certificate close to its end is renewed on A and adopted by its owner.
// Rounds are driven one by one on a shared fake clock.
func TestThreeBoxes(t *testing.T) {
	f := newFixture(t)
	clk := newClock(t0)
	boxes := map[[32]byte]*box{}
	newBox := func(name string, key [32]byte, self *membership.Membership, root bool) *box {
		b := &box{name: name, key: key, store: mustStore(t)}
		cfg := Config{
			Self:  self,
			Store: b.store,
			Now:   clk.Now,
			SelfEndpoints: func() []netip.AddrPort {
				return []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(key[0])+1)}
			},
		}
		if root {
			cfg.RootKey = f.root
		}
		b.r = f.newRoster(t, cfg)
		srv := httptest.NewServer(b.r.Handler())
		t.Cleanup(srv.Close)
		b.url = srv.URL
		boxes[key] = b
		return b
	}
	// fetch is the daemon's fetch, with loopback URLs for overlay addresses.
	fetch := func(ctx context.Context, p Peer) (*Snapshot, error) {
		b := boxes[p.NodeKey]
		if b == nil {
			return nil, fmt.Errorf("no box for %s", p.Name)
		}
		return Fetch(ctx, http.DefaultClient, b.url)
	}
	rounds := func(n int, bs ...*box) {
		for range n {
			for _, b := range bs {
				b.r.round(t.Context(), fetch)
			}
		}
	}
	knows := func(b *box, want ...*box) {
		t.Helper()
		var wantKeys [][32]byte
		for _, w := range want {
			wantKeys = append(wantKeys, w.key)
		}
		slices.SortFunc(wantKeys, compareKeys)
		if diff := cmp.Diff(wantKeys, keysOf(b.r)); diff != "" {
			t.Errorf("%s knows (-want +got):\n%s", b.name, diff)
		}
	}

	keyA, keyB, keyC := nodeKey(t, 0xa), nodeKey(t, 0xb), nodeKey(t, 0xc)
	a := newBox("A", keyA, f.founder(keyA, t0), true)

	// B joins through A with a certificate valid for 30 days.
	chainB := f.issue(f.invite("b", t0.Add(time.Hour)), keyB, t0, 30*24*time.Hour)
	snapB, err := Join(t.Context(), http.DefaultClient, []string{a.url}, chainB, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := newBox("B", keyB, chainB, false)
	if err := b.r.Apply(snapB); err != nil {
		t.Fatal(err)
	}
	knows(b, a, b)

	// C joins through B, which verifies and redeems C's invitation.
	invC := f.invite("c", t0.Add(time.Hour))
	chainC := f.issue(invC, keyC, t0, 0)
	snapC, err := Join(t.Context(), http.DefaultClient, []string{b.url}, chainC, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := newBox("C", keyC, chainC, false)
	if err := c.r.Apply(snapC); err != nil {
		t.Fatal(err)
	}
	knows(c, a, b, c)
	knows(a, a, b) // not yet

	clk.Advance(time.Minute)
	rounds(2, a, b, c)
	for _, x := range []*box{a, b, c} {
		knows(x, a, b, c)
		if len(x.r.Peers()) != 2 {
			t.Errorf("%s has %d peers, want 2", x.name, len(x.r.Peers()))
		}
	}
	if k, ok := a.r.redemptions.Lookup(invC.Delegation().InviteID); !ok || k != keyC {
		t.Errorf("A's redemption of C's invitation = %x, %v; want C's key", k, ok)
	}
	// Endpoints spread too: A knows C's, which C reported to B only.
	for _, p := range a.r.Peers() {
		if len(p.Endpoints) != 1 {
			t.Errorf("A knows endpoints %v of %s, want one", p.Endpoints, p.Name)
		}
	}

	// A revokes C: A drops C at once, B after fetching from A.
	if err := a.r.Revoke(membership.RevokeNodeKeyEntry(keyC, "stolen")); err != nil {
		t.Fatal(err)
	}
	knows(a, a, b)
	rounds(1, b)
	knows(b, a, b)
	if l, err := b.store.LoadRevocations(); err != nil || l == nil || l.Sequence != 1 {
		t.Errorf("B's stored revocation list = %v, %v; want sequence 1", l, err)
	}
	// C learns it is revoked but keeps itself.
	rounds(1, c)
	knows(c, a, b, c)

	// 21 of B's 30 days later its certificate needs renewal: A renews it,
	// B adopts the renewed chain from A's snapshot and saves it.
	clk.Advance(21 * 24 * time.Hour)
	if !membership.NeedsRenewal(&chainB.Certificate, clk.Now()) {
		t.Fatal("B's certificate does not need renewal yet; the test is wrong")
	}
	rounds(1, a, b)
	got := b.r.Self()
	if got.Delegation != nil || !got.Certificate.NotAfter.Equal(clk.Now().Add(membership.DefaultValidity).Truncate(time.Second)) {
		t.Errorf("B's membership: delegation %v, not after %v; want renewed by the root key until %v",
			got.Delegation != nil, got.Certificate.NotAfter, clk.Now().Add(membership.DefaultValidity))
	}
	stored, err := b.store.LoadMembership()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(mustMarshal(t, got), mustMarshal(t, stored)); diff != "" {
		t.Errorf("B's stored membership (-want +got):\n%s", diff)
	}
	if sa, sb := a.r.Stats(), b.r.Stats(); sa.Renewals != 1 || sb.OwnRenewals != 1 {
		t.Errorf("A renewed %d, B adopted %d; want 1 and 1", sa.Renewals, sb.OwnRenewals)
	}
	// Endpoints not heard of for 21 days aged out, members stayed.
	knows(b, a, b)

	// Restarted from its store, B still knows A and holds the renewed chain.
	b2, err := New(Config{Community: f.c, Self: stored, Store: b.store, Now: clk.Now, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	knows(&box{name: "B restarted", r: b2}, a, b)
	if b2.revocations == nil || b2.revocations.Sequence != 1 {
		t.Errorf("restarted B has revocation list %v, want sequence 1", b2.revocations)
	}
}
