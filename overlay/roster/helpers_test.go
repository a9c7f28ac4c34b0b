package roster

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/overlay/membership"
	"github.com/google/go-cmp/cmp"
)

var (
	t0         = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	testPrefix = netip.MustParsePrefix("100.64.0.0/24")

	ep1 = netip.MustParseAddrPort("192.0.2.1:51820")
	ep2 = netip.MustParseAddrPort("[2001:db8::2]:51820")
	ep3 = netip.MustParseAddrPort("198.51.100.3:4242")
)

// cmpOpts compares the netip types, whose fields are unexported.
var cmpOpts = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
}

// clock is a fake clock for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// detRand returns a deterministic random stream.
func detRand(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

// nodeKey returns the X25519 public key of a private key filled with b.
func nodeKey(t testing.TB, b byte) [32]byte {
	t.Helper()
	k, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return [32]byte(k.PublicKey().Bytes())
}

// fixture is a community and its root key.
type fixture struct {
	t    testing.TB
	c    membership.Community
	root ed25519.PrivateKey
	host byte // last IPv4 host handed out
	rand io.Reader
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	r := detRand(1)
	c, root, err := membership.NewCommunity("Test Community", testPrefix, r)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, c: c, root: root, rand: r}
}

// otherFixture is another community with the same prefix.
func otherFixture(t testing.TB) *fixture {
	t.Helper()
	r := detRand(99)
	c, root, err := membership.NewCommunity("Other", testPrefix, r)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, c: c, root: root, rand: r}
}

// invite makes an invitation for name with the next free address.
func (f *fixture) invite(name string, expires time.Time) *membership.Invitation {
	f.t.Helper()
	f.host++
	inv, err := membership.NewInvitation(f.root, f.c, membership.InviteOptions{
		Name:    name,
		IPv4:    netip.AddrFrom4([4]byte{100, 64, 0, f.host}),
		Expires: expires,
	}, f.rand)
	if err != nil {
		f.t.Fatal(err)
	}
	return inv
}

// issue redeems inv for key at now.
func (f *fixture) issue(inv *membership.Invitation, key [32]byte, now time.Time, validity time.Duration) *membership.Membership {
	f.t.Helper()
	m, err := inv.Issue(key, now, validity, f.rand)
	if err != nil {
		f.t.Fatal(err)
	}
	return m
}

// member returns a chain for a new member issued with a fresh invitation
// at now.
func (f *fixture) member(name string, key [32]byte, now time.Time, validity time.Duration) *membership.Membership {
	f.t.Helper()
	return f.issue(f.invite(name, now.Add(7*24*time.Hour)), key, now, validity)
}

// renew renews m with the root key at now.
func (f *fixture) renew(m *membership.Membership, now time.Time, validity time.Duration) *membership.Membership {
	f.t.Helper()
	n, err := membership.Renew(f.root, f.c, m, nil, now, validity, f.rand)
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

// founder returns a root-signed chain, as the box that created the
// community holds.
func (f *fixture) founder(key [32]byte, now time.Time) *membership.Membership {
	f.t.Helper()
	return f.renew(f.member("founder", key, now, 0), now, 0)
}

// revocations returns the list after prev with add.
func (f *fixture) revoke(prev *membership.RevocationList, now time.Time, add ...membership.Revocation) *membership.RevocationList {
	f.t.Helper()
	l, err := membership.Revoke(f.root, prev, now, add...)
	if err != nil {
		f.t.Fatal(err)
	}
	return l
}

// newRoster returns a roster of f's community with cfg; Community and a
// discarding Logger are filled in, Now too if nil.
func (f *fixture) newRoster(t testing.TB, cfg Config) *Roster {
	t.Helper()
	cfg.Community = f.c
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return t0 }
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// testLogger logs through t at debug level.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func mustStore(t testing.TB) *membership.Store {
	t.Helper()
	st, err := membership.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func mustEncode(t testing.TB, s *Snapshot) []byte {
	t.Helper()
	b, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustMarshal(t testing.TB, m *membership.Membership) []byte {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// memberState is what the merge tests compare about a member.
type memberState struct {
	Name      string
	NotAfter  time.Time
	Invited   bool
	Endpoints []netip.AddrPort
}

// others returns the state of every member except the roster's own box.
func others(r *Roster) []memberState {
	var out []memberState
	for _, m := range r.Members() {
		if !m.Self {
			out = append(out, memberState{m.Name, m.NotAfter, m.Invited, m.Endpoints})
		}
	}
	return out
}

// keysOf returns the node keys of r's members, ordered.
func keysOf(r *Roster) [][32]byte {
	var out [][32]byte
	for _, m := range r.Members() {
		out = append(out, m.NodeKey)
	}
	slices.SortFunc(out, compareKeys)
	return out
}
