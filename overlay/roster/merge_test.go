package roster

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/overlay/membership"
	"github.com/google/go-cmp/cmp"
)

// mergeFixture holds the chains the merge table tests combine. The roster
// under test belongs to "self", an ordinary member, and runs at now.
type mergeFixture struct {
	*fixture
	now        time.Time
	self       *membership.Membership
	keyB, keyC [32]byte
	b          *membership.Membership // b, issued with invB at t0
	bShort     *membership.Membership // b again from invB, ending earlier
	bRenewed   *membership.Membership // b renewed by the root key
	mc         *membership.Membership // c
	reused     *membership.Membership // invB redeemed by another node key
	tampered   *membership.Membership // b with a name it was not signed with
	foreign    *membership.Membership // a member of another community
	expired    *membership.Membership
}

func newMergeFixture(t *testing.T) *mergeFixture {
	f := &mergeFixture{fixture: newFixture(t), now: t0.Add(time.Minute)}
	f.keyB, f.keyC = nodeKey(t, 0xb), nodeKey(t, 0xc)
	f.self = f.member("self", nodeKey(t, 0x5), t0, 0)
	invB := f.invite("b", t0.Add(7*24*time.Hour))
	f.b = f.issue(invB, f.keyB, t0, 0)
	f.bShort = f.issue(invB, f.keyB, t0, 30*24*time.Hour)
	f.bRenewed = f.renew(f.b, t0, 2*membership.DefaultValidity)
	f.mc = f.member("c", f.keyC, t0, 0)
	f.reused = f.issue(invB, nodeKey(t, 0xd), t0, 0)
	f.tampered = f.issue(invB, f.keyB, t0, 0)
	f.tampered.Certificate.Name = "mallory"
	f.foreign = otherFixture(t).member("foreign", nodeKey(t, 0xf), t0, 0)
	f.expired = f.member("expired", nodeKey(t, 0xe), t0.Add(-3*time.Hour), time.Hour)
	return f
}

func rec(m *membership.Membership, updated time.Time, eps ...netip.AddrPort) Record {
	return Record{Membership: m, Endpoints: eps, Updated: updated}
}

// snap returns a snapshot of f's community with records, sorted by key.
func (f *mergeFixture) snap(recs ...Record) *Snapshot {
	s := &Snapshot{Community: f.c.ID(), Records: recs}
	for i := range s.Records {
		for j := i + 1; j < len(s.Records); j++ {
			if compareKeys(s.Records[j].Membership.Certificate.NodeKey, s.Records[i].Membership.Certificate.NodeKey) < 0 {
				s.Records[i], s.Records[j] = s.Records[j], s.Records[i]
			}
		}
	}
	return s
}

func TestMerge(t *testing.T) {
	f := newMergeFixture(t)
	list1 := f.revoke(nil, t0, membership.RevokeNodeKeyEntry(f.keyC, "stolen"))
	list2 := f.revoke(list1, t0, membership.RevokeNodeKeyEntry(nodeKey(t, 0x77), ""))
	forged := otherFixture(t).revoke(nil, t0, membership.RevokeNodeKeyEntry(f.keyB, ""))
	forged.CommunityID = f.c.ID() // claims our community, signed by another key
	state := func(m *membership.Membership, eps ...netip.AddrPort) memberState {
		return memberState{m.Certificate.Name, m.Certificate.NotAfter, m.Delegation != nil, eps}
	}
	tests := []struct {
		name        string
		maxMembers  int
		before      []*Snapshot // applied first, must succeed
		apply       *Snapshot
		wantErr     error // of Apply(apply)
		want        []memberState
		wantRefused map[Reason]uint64 // counted by the apply step only
	}{{
		name:  "new member",
		apply: f.snap(rec(f.b, t0, ep1)),
		want:  []memberState{state(f.b, ep1)},
	}, {
		name:   "newer certificate wins",
		before: []*Snapshot{f.snap(rec(f.b, t0, ep1))},
		apply:  f.snap(rec(f.bRenewed, t0)),
		want:   []memberState{state(f.bRenewed, ep1)},
	}, {
		name:   "older certificate ignored",
		before: []*Snapshot{f.snap(rec(f.b, t0, ep1))},
		apply:  f.snap(rec(f.bShort, t0)),
		want:   []memberState{state(f.b, ep1)},
	}, {
		name:   "delegated chain after renewal ignored",
		before: []*Snapshot{f.snap(rec(f.bRenewed, t0, ep1))},
		apply:  f.snap(rec(f.b, t0)),
		want:   []memberState{state(f.bRenewed, ep1)},
	}, {
		name:        "tampered chain refused",
		apply:       f.snap(rec(f.tampered, t0, ep1)),
		wantRefused: map[Reason]uint64{ReasonInvalid: 1},
	}, {
		name:        "other community's member refused",
		apply:       f.snap(rec(f.foreign, t0, ep1)),
		wantRefused: map[Reason]uint64{ReasonWrongCommunity: 1},
	}, {
		name:        "expired certificate refused",
		apply:       f.snap(rec(f.expired, t0, ep1)),
		wantRefused: map[Reason]uint64{ReasonExpired: 1},
	}, {
		name:    "snapshot of another community refused",
		apply:   &Snapshot{Community: otherFixture(t).c.ID(), Records: []Record{rec(f.b, t0)}},
		wantErr: membership.ErrWrongCommunity,
	}, {
		name:   "revoked member dropped when a newer list arrives",
		before: []*Snapshot{f.snap(rec(f.b, t0, ep1), rec(f.mc, t0, ep2))},
		apply:  &Snapshot{Community: f.c.ID(), Revocations: list1},
		want:   []memberState{state(f.b, ep1)},
	}, {
		name:        "revoked member refused",
		before:      []*Snapshot{{Community: f.c.ID(), Revocations: list1}},
		apply:       f.snap(rec(f.b, t0, ep1), rec(f.mc, t0, ep2)),
		want:        []memberState{state(f.b, ep1)},
		wantRefused: map[Reason]uint64{ReasonRevoked: 1},
	}, {
		name: "older revocation list ignored",
		before: []*Snapshot{
			{Community: f.c.ID(), Revocations: list2},
			// list2 revokes c too: b only.
		},
		apply: &Snapshot{Community: f.c.ID(), Revocations: list1, Records: []Record{rec(f.b, t0, ep1)}},
		want:  []memberState{state(f.b, ep1)},
	}, {
		name:    "forged revocation list refuses the snapshot",
		before:  []*Snapshot{f.snap(rec(f.b, t0, ep1))},
		apply:   &Snapshot{Community: f.c.ID(), Revocations: forged},
		wantErr: membership.ErrBadSignature,
		want:    []memberState{state(f.b, ep1)},
	}, {
		name:        "invitation reused by another node key refused",
		before:      []*Snapshot{f.snap(rec(f.b, t0, ep1))},
		apply:       f.snap(rec(f.reused, t0, ep2)),
		want:        []memberState{state(f.b, ep1)},
		wantRefused: map[Reason]uint64{ReasonInviteUsed: 1},
	}, {
		name:        "redemption record blocks reuse",
		apply:       &Snapshot{Community: f.c.ID(), Redemptions: []*membership.Membership{f.b}, Records: []Record{rec(f.reused, t0, ep2)}},
		wantRefused: map[Reason]uint64{ReasonInviteUsed: 1},
	}, {
		name:   "newer endpoints win",
		before: []*Snapshot{f.snap(rec(f.b, t0, ep1))},
		apply:  f.snap(rec(f.b, t0.Add(time.Second), ep2, ep3)),
		want:   []memberState{state(f.b, ep2, ep3)},
	}, {
		name:   "older endpoints ignored",
		before: []*Snapshot{f.snap(rec(f.b, t0.Add(time.Second), ep2))},
		apply:  f.snap(rec(f.b, t0, ep1)),
		want:   []memberState{state(f.b, ep2)},
	}, {
		name:   "endpoints from an older chain still count",
		before: []*Snapshot{f.snap(rec(f.bRenewed, t0, ep1))},
		apply:  f.snap(rec(f.b, t0.Add(time.Second), ep2)),
		want:   []memberState{state(f.bRenewed, ep2)},
	}, {
		name:        "endpoints from the future ignored",
		apply:       f.snap(rec(f.b, f.now.Add(time.Hour), ep1)),
		want:        []memberState{state(f.b)},
		wantRefused: map[Reason]uint64{ReasonFuture: 1},
	}, {
		name:        "own endpoints never taken from others",
		apply:       f.snap(rec(f.self, t0.Add(time.Second), ep3)),
		want:        nil,
		wantRefused: map[Reason]uint64{},
	}, {
		name:        "member limit",
		maxMembers:  2,
		before:      []*Snapshot{f.snap(rec(f.b, t0, ep1))},
		apply:       f.snap(rec(f.mc, t0, ep2)),
		want:        []memberState{state(f.b, ep1)},
		wantRefused: map[Reason]uint64{ReasonFull: 1},
	}, {
		name:        "too many endpoints refused",
		apply:       f.snap(Record{Membership: f.b, Updated: t0, Endpoints: manyEndpoints(MaxEndpoints + 1)}),
		wantRefused: map[Reason]uint64{ReasonMalformed: 1},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.newRoster(t, Config{
				Self:          f.self,
				Now:           func() time.Time { return f.now },
				MaxMembers:    tt.maxMembers,
				SelfEndpoints: func() []netip.AddrPort { return []netip.AddrPort{ep1} },
			})
			for i, s := range tt.before {
				if err := r.Apply(s); err != nil {
					t.Fatalf("Apply(before[%d]) = %v", i, err)
				}
			}
			before := r.Stats().RecordsRefused
			err := r.Apply(tt.apply)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Apply = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, others(r), cmpOpts); diff != "" {
				t.Errorf("members (-want +got):\n%s", diff)
			}
			got := r.Stats().RecordsRefused
			for k, v := range before {
				got[k] -= v
				if got[k] == 0 {
					delete(got, k)
				}
			}
			want := tt.wantRefused
			if want == nil {
				want = map[Reason]uint64{}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("records refused (-want +got):\n%s", diff)
			}
			for _, m := range r.Members() {
				if m.Self && !cmp.Equal(m.Endpoints, []netip.AddrPort{ep1}, cmpOpts) {
					t.Errorf("own endpoints = %v, want [%v]", m.Endpoints, ep1)
				}
			}
		})
	}
}

func manyEndpoints(n int) []netip.AddrPort {
	out := make([]netip.AddrPort, n)
	for i := range out {
		out[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), 51820)
	}
	return out
}

func TestMergeSizeBudget(t *testing.T) {
	f := newMergeFixture(t)
	r := f.newRoster(t, Config{Self: f.self, Now: func() time.Time { return f.now }})
	r.mu.Lock()
	r.size = recordBudget - 10 // as if thousands of members with long names
	r.mu.Unlock()
	if err := r.Apply(f.snap(rec(f.b, t0, ep1))); err != nil {
		t.Fatal(err)
	}
	if got := r.Stats().RecordsRefused[ReasonFull]; got != 1 {
		t.Errorf("records refused as full = %d, want 1", got)
	}
	if got := len(r.Peers()); got != 0 {
		t.Errorf("%d peers, want 0", got)
	}
}

func TestOwnRenewalAdopted(t *testing.T) {
	f := newMergeFixture(t)
	st := mustStore(t)
	r := f.newRoster(t, Config{Self: f.self, Store: st, Now: func() time.Time { return f.now }})
	renewed := f.renew(f.self, t0, 2*membership.DefaultValidity)
	older := f.issue(f.invite("self-old", t0.Add(time.Hour)), f.self.Certificate.NodeKey, t0, time.Hour)
	for _, tt := range []struct {
		name string
		m    *membership.Membership
		want *membership.Membership
	}{
		{"renewed adopted", renewed, renewed},
		{"older ignored", f.self, renewed},
		{"other chain for own key ignored", older, renewed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := r.Apply(f.snap(rec(tt.m, t0))); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(mustMarshal(t, tt.want), mustMarshal(t, r.Self())); diff != "" {
				t.Errorf("Self (-want +got):\n%s", diff)
			}
			stored, err := st.LoadMembership()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(mustMarshal(t, tt.want), mustMarshal(t, stored)); diff != "" {
				t.Errorf("stored membership (-want +got):\n%s", diff)
			}
		})
	}
	if got := r.Stats().OwnRenewals; got != 1 {
		t.Errorf("OwnRenewals = %d, want 1", got)
	}
}

func TestChanged(t *testing.T) {
	f := newMergeFixture(t)
	clk := newClock(f.now)
	r := f.newRoster(t, Config{Self: f.self, Now: clk.Now})
	changed := func() bool {
		select {
		case <-r.Changed():
			return true
		default:
			return false
		}
	}
	steps := []struct {
		name    string
		do      func()
		want    bool
		wantEps []netip.AddrPort
	}{
		{"new member", func() { r.Apply(f.snap(rec(f.b, t0, ep1))) }, true, []netip.AddrPort{ep1}},
		{"same again", func() { r.Apply(f.snap(rec(f.b, t0, ep1))) }, false, []netip.AddrPort{ep1}},
		{"newer update, same endpoints", func() { r.Apply(f.snap(rec(f.b, t0.Add(time.Second), ep1))) }, false, []netip.AddrPort{ep1}},
		{"new endpoints", func() { r.Apply(f.snap(rec(f.b, t0.Add(2*time.Second), ep2))) }, true, []netip.AddrPort{ep2}},
		{"endpoints age out", func() { clk.Advance(DefaultEndpointTTL + time.Second); r.maintain(clk.Now()) }, true, nil},
		{"member heard of again", func() { r.Apply(f.snap(rec(f.b, clk.Now(), ep2))) }, true, []netip.AddrPort{ep2}},
		{"revoked", func() {
			if err := r.Apply(&Snapshot{Community: f.c.ID(), Revocations: f.revoke(nil, t0, membership.RevokeNodeKeyEntry(f.keyB, ""))}); err != nil {
				t.Fatal(err)
			}
		}, true, nil},
	}
	for _, s := range steps {
		s.do()
		if got := changed(); got != s.want {
			t.Errorf("%s: changed = %v, want %v", s.name, got, s.want)
		}
		var eps []netip.AddrPort
		if p := r.Peers(); len(p) > 0 {
			eps = p[0].Endpoints
		}
		if diff := cmp.Diff(s.wantEps, eps, cmpOpts); diff != "" {
			t.Errorf("%s: endpoints (-want +got):\n%s", s.name, diff)
		}
	}
}

func TestPeers(t *testing.T) {
	f := newMergeFixture(t)
	r := f.newRoster(t, Config{Self: f.self, Now: func() time.Time { return f.now }})
	if err := r.Apply(f.snap(rec(f.b, t0, ep1, ep2))); err != nil {
		t.Fatal(err)
	}
	want := []Peer{{
		NodeKey:   f.keyB,
		Name:      "b",
		IPv4:      f.b.Certificate.IPv4,
		IPv6:      f.c.NodeIPv6(f.keyB),
		Endpoints: []netip.AddrPort{ep1, ep2},
	}}
	if diff := cmp.Diff(want, r.Peers(), cmpOpts); diff != "" {
		t.Errorf("Peers (-want +got):\n%s", diff)
	}
}
