package roster

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
	"github.com/cloudbox/cloudbox/overlay/membership"
)

// RosterFile is the file in the membership store's directory that keeps
// the records of the other members between restarts: a snapshot encoding
// without revocation list and redemptions (those have their own files).
const RosterFile = "roster.bin"

// Defaults of the Config fields.
const (
	DefaultInterval    = 10 * time.Second
	DefaultFanout      = 3
	DefaultEndpointTTL = 24 * time.Hour
	DefaultJoinEvery   = 6 * time.Second
	DefaultJoinBurst   = 5
)

// Config configures a Roster. Only Community and Self are required; every
// other zero value works.
type Config struct {
	// Community is the community this box belongs to, the only trust
	// anchor: every chain, revocation list and redemption record is
	// verified against it.
	Community membership.Community

	// Self is this box's membership chain (required). It must verify at
	// New against Community and the stored revocation list. The roster
	// replaces it when a renewed chain for this box's node key arrives
	// (see Roster.Self).
	Self *membership.Membership

	// SelfEndpoints returns this box's underlay endpoints; it is called,
	// without locks held, whenever the roster builds this box's own record
	// (every snapshot it serves) and must be safe for concurrent use. The
	// first MaxEndpoints valid ones are used. Nil means none: other boxes
	// then learn this box's endpoints from disco only.
	SelfEndpoints func() []netip.AddrPort

	// RelayOK is put in this box's own record: it offers to relay traffic
	// between members. False means it does not.
	RelayOK bool

	// RootKey is the community root key on boxes that hold it (nil on
	// ordinary members). With it the roster renews certificates that
	// membership.NeedsRenewal, and Revoke works.
	RootKey ed25519.PrivateKey

	// RenewValidity is the lifetime of renewed certificates. Zero means
	// membership.DefaultValidity.
	RenewValidity time.Duration

	// Store keeps the revocation list, the redemptions, this box's renewed
	// membership and the roster (RosterFile) across restarts; New loads
	// them from it. Nil means nothing is loaded or persisted.
	Store *membership.Store

	// Logger receives events. Nil means they are discarded.
	Logger *slog.Logger

	// Now returns the current time. Nil means time.Now.
	Now func() time.Time

	// Interval is the mean time between anti-entropy rounds of Run, each
	// jittered by ±25 %. Zero means DefaultInterval.
	Interval time.Duration

	// Fanout is how many random members each round fetches a snapshot
	// from, concurrently. Zero means DefaultFanout.
	Fanout int

	// FetchTimeout bounds one fetch. Zero means Interval.
	FetchTimeout time.Duration

	// EndpointTTL is how long a member's endpoints are used after they
	// last changed by this box's clock (a newer Updated arrived, or the
	// roster was loaded). The member's record stays, without endpoints,
	// until its certificate ends or it is revoked. Zero means
	// DefaultEndpointTTL.
	EndpointTTL time.Duration

	// MaxMembers bounds the roster, this box included. Zero means
	// MaxMembers, which is also the largest value allowed.
	MaxMembers int

	// JoinEvery and JoinBurst rate-limit the join handler per source (an
	// IPv4 address or an IPv6 /64): a token bucket of JoinBurst tokens that
	// gains one every JoinEvery. Zero means DefaultJoinEvery and
	// DefaultJoinBurst.
	JoinEvery time.Duration
	JoinBurst int
}

// Peer is a member as the overlay engine needs it; the daemon converts it
// to overlay.Peer (this package does not import the engine).
type Peer struct {
	// NodeKey is the member's X25519 public key, its WireGuard key.
	NodeKey [32]byte
	// Name is the member's name from its certificate.
	Name string
	// IPv4 is the member's overlay IPv4 address from its certificate.
	IPv4 netip.Addr
	// IPv6 is the member's overlay IPv6 address, Community.NodeIPv6.
	IPv6 netip.Addr
	// Endpoints are the member's underlay endpoints, empty when it never
	// reported any or they aged out (see Config.EndpointTTL).
	Endpoints []netip.AddrPort
}

// MemberInfo describes a member for the API and the panel.
type MemberInfo struct {
	Name    string
	NodeID  string
	NodeKey [32]byte
	IPv4    netip.Addr
	IPv6    netip.Addr
	Groups  []string
	// NotAfter is when the member's certificate ends.
	NotAfter time.Time
	// Invited is true while the certificate is the one the member issued
	// with its invitation, false once the root key renewed it.
	Invited bool
	// Endpoints, Updated and RelayOK are from the member's latest record;
	// for this box they are current.
	Endpoints []netip.AddrPort
	Updated   time.Time
	RelayOK   bool
	// Self marks this box.
	Self bool
}

// Roster is the set of verified members of a community with their
// underlay endpoints, kept in sync between members without a central
// server (see the package comment). It is safe for concurrent use.
type Roster struct {
	// Immutable after New.
	cfg      Config
	c        membership.Community
	id       membership.CommunityID
	selfKey  [32]byte
	log      *slog.Logger
	limiter  *limiter
	changed  chan struct{}
	stats    counters
	running  atomic.Bool
	maxMembs int

	// saveMu serializes writes to the store, so that the state written
	// last is the newest.
	saveMu sync.Mutex

	// mu guards the following.
	mu          sync.Mutex
	self        *membership.Membership
	records     map[[32]byte]*entry // every member, this box included
	size        int                 // sum of entry.size, at most recordBudget
	revocations *membership.RevocationList
	revRaw      []byte // encoding of revocations
	redemptions *membership.Redemptions
	dirty       dirty // what persist still has to write
}

// entry is a member's record. Its fields are replaced, never modified in
// place, so slices can be handed out after copying the entry under mu.
type entry struct {
	m       *membership.Membership // verified; private, never modified
	chain   []byte                 // encoding of m
	eps     []netip.AddrPort
	updated time.Time // reported by the member
	seen    time.Time // our clock when eps last changed or was loaded
	relay   bool
}

func (e *entry) size() int { return len(e.chain) + recordOverhead }

// endpoints returns e's endpoints unless they aged out at now.
func (e *entry) endpoints(now time.Time, ttl time.Duration) []netip.AddrPort {
	if now.Sub(e.seen) > ttl {
		return nil
	}
	return e.eps
}

// dirty says which items persist has to write.
type dirty uint8

const (
	dirtyRoster dirty = 1 << iota
	dirtyRevocations
	dirtyRedemptions
	dirtySelf
)

// New returns a roster with this box as its only member, plus whatever
// Config.Store holds: the revocation list, the redemptions and the roster
// of the last run, each record verified again. A roster file that does not
// parse is logged and ignored (it is rebuilt from the other members); a
// revocation list that does not verify or an own membership that is not
// valid is an error.
func New(cfg Config) (*Roster, error) {
	if err := cfg.Community.Validate(); err != nil {
		return nil, fmt.Errorf("creating roster: community: %w", err)
	}
	if cfg.Self == nil {
		return nil, errors.New("creating roster: no membership of this box (Config.Self)")
	}
	if cfg.RootKey != nil {
		if pub, ok := cfg.RootKey.Public().(ed25519.PublicKey); len(cfg.RootKey) != ed25519.PrivateKeySize || !ok || !pub.Equal(cfg.Community.RootKey) {
			return nil, fmt.Errorf("creating roster: root key: %w", membership.ErrWrongCommunity)
		}
	}
	switch {
	case cfg.MaxMembers < 0 || cfg.MaxMembers > MaxMembers:
		return nil, fmt.Errorf("creating roster: MaxMembers %d: want 0 to %d", cfg.MaxMembers, MaxMembers)
	case cfg.Interval < 0, cfg.FetchTimeout < 0, cfg.EndpointTTL < 0, cfg.JoinEvery < 0, cfg.RenewValidity < 0:
		return nil, errors.New("creating roster: negative duration in Config")
	case cfg.Fanout < 0, cfg.JoinBurst < 0:
		return nil, errors.New("creating roster: negative count in Config")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Interval = cmpOr(cfg.Interval, DefaultInterval)
	cfg.Fanout = cmpOr(cfg.Fanout, DefaultFanout)
	cfg.FetchTimeout = cmpOr(cfg.FetchTimeout, cfg.Interval)
	cfg.EndpointTTL = cmpOr(cfg.EndpointTTL, DefaultEndpointTTL)
	cfg.JoinEvery = cmpOr(cfg.JoinEvery, DefaultJoinEvery)
	cfg.JoinBurst = cmpOr(cfg.JoinBurst, DefaultJoinBurst)
	cfg.MaxMembers = cmpOr(cfg.MaxMembers, MaxMembers)

	self, selfRaw, err := copyMembership(cfg.Self)
	if err != nil {
		return nil, fmt.Errorf("creating roster: own membership: %w", err)
	}
	r := &Roster{
		cfg:         cfg,
		c:           cfg.Community,
		id:          cfg.Community.ID(),
		selfKey:     self.Certificate.NodeKey,
		log:         cfg.Logger,
		limiter:     newLimiter(cfg.JoinEvery, cfg.JoinBurst),
		changed:     make(chan struct{}, 1),
		maxMembs:    cfg.MaxMembers,
		self:        self,
		records:     make(map[[32]byte]*entry),
		redemptions: new(membership.Redemptions),
	}
	r.stats.init()
	now := r.now()
	if err := r.load(now); err != nil {
		return nil, fmt.Errorf("creating roster: %w", err)
	}
	if err := membership.VerifyMembership(r.c, self, now, r.revocations); err != nil {
		return nil, fmt.Errorf("creating roster: this box's membership: %w", err)
	}
	if self.Delegation != nil {
		if _, err := r.redemptions.Merge(r.c, self); err != nil {
			return nil, fmt.Errorf("creating roster: this box's membership: %w", err)
		}
	}
	r.records[r.selfKey] = &entry{m: self, chain: selfRaw, seen: now}
	r.size += r.records[r.selfKey].size()
	if cfg.Store != nil {
		if b, err := os.ReadFile(filepath.Join(cfg.Store.Dir(), RosterFile)); err == nil {
			r.loadRoster(b, now)
		} else if !errors.Is(err, fs.ErrNotExist) {
			r.log.Error("roster file unreadable, starting without it", "err", err)
		}
	}
	r.dirty = 0 // what was loaded is on disk already
	return r, nil
}

// load reads the revocation list and the redemptions from the store.
func (r *Roster) load(now time.Time) error {
	st := r.cfg.Store
	if st == nil {
		return nil
	}
	l, err := st.LoadRevocations()
	if err != nil {
		return err
	}
	if l != nil {
		if err := l.Verify(r.c); err != nil {
			return fmt.Errorf("stored revocation list: %w", err)
		}
		raw, err := l.MarshalBinary()
		if err != nil {
			return fmt.Errorf("stored revocation list: %w", err)
		}
		r.revocations, r.revRaw = l, raw
	}
	red, err := st.LoadRedemptions()
	if err != nil {
		return err
	}
	red.Prune(now)
	r.redemptions = red
	return nil
}

// loadRoster merges the records of a roster file.
func (r *Roster) loadRoster(b []byte, now time.Time) {
	s, err := DecodeSnapshot(b)
	if err == nil && s.Community != r.id {
		err = fmt.Errorf("roster of community %s: %w", s.Community, membership.ErrWrongCommunity)
	}
	if err != nil {
		r.log.Error("roster file unusable, starting without it", "path", filepath.Join(r.cfg.Store.Dir(), RosterFile), "err", err)
		return
	}
	ins := r.prepare(s.Records, now)
	r.mu.Lock()
	var res result
	for i := range ins {
		if err := r.mergeLocked(&ins[i], now, &res); err != nil {
			r.log.Debug("stored record dropped", "node", membership.NodeID(ins[i].key), "err", err)
		}
	}
	r.mu.Unlock()
	r.log.Info("roster loaded", "members", len(ins))
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func (r *Roster) now() time.Time { return r.cfg.Now() }

// copyMembership returns a private copy of m and its encoding.
func copyMembership(m *membership.Membership) (*membership.Membership, []byte, error) {
	if m == nil {
		return nil, nil, fmt.Errorf("%w: no membership", ErrMalformed)
	}
	raw, err := m.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	n := new(membership.Membership)
	if err := n.UnmarshalBinary(raw); err != nil {
		return nil, nil, err
	}
	return n, raw, nil
}

// Self returns a copy of this box's current membership: Config.Self, or a
// renewed chain that arrived later.
func (r *Roster) Self() *membership.Membership {
	r.mu.Lock()
	m := r.self
	r.mu.Unlock()
	c, _, _ := copyMembership(m) // m is valid: it was verified
	return c
}

// Community returns the community of the roster.
func (r *Roster) Community() membership.Community { return r.c }

// Changed returns a channel that receives a value after the result of Peers
// or Members may have changed. It has a buffer of one and sends never
// block, so several changes may arrive as one value: read Peers after each.
// It is meant for one reader, the daemon that updates the overlay engine.
func (r *Roster) Changed() <-chan struct{} { return r.changed }

func (r *Roster) notify() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// Peers returns every member except this box, ordered by node key, with
// the addresses from its certificate and its endpoints.
func (r *Roster) Peers() []Peer {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Peer, 0, len(r.records))
	for _, key := range slices.SortedFunc(maps.Keys(r.records), compareKeys) {
		if key == r.selfKey {
			continue
		}
		e := r.records[key]
		out = append(out, Peer{
			NodeKey:   key,
			Name:      e.m.Certificate.Name,
			IPv4:      e.m.Certificate.IPv4,
			IPv6:      r.c.NodeIPv6(key),
			Endpoints: slices.Clone(e.endpoints(now, r.cfg.EndpointTTL)),
		})
	}
	return out
}

// Members returns every member, this box included, ordered by name and
// then node ID.
func (r *Roster) Members() []MemberInfo {
	selfEps := r.selfEndpoints()
	now := r.now()
	r.mu.Lock()
	out := make([]MemberInfo, 0, len(r.records))
	for key, e := range r.records {
		cert := &e.m.Certificate
		mi := MemberInfo{
			Name:      cert.Name,
			NodeID:    membership.NodeID(key),
			NodeKey:   key,
			IPv4:      cert.IPv4,
			IPv6:      r.c.NodeIPv6(key),
			Groups:    slices.Clone(cert.Groups),
			NotAfter:  cert.NotAfter,
			Invited:   e.m.Delegation != nil,
			Endpoints: slices.Clone(e.endpoints(now, r.cfg.EndpointTTL)),
			Updated:   e.updated,
			RelayOK:   e.relay,
		}
		if key == r.selfKey {
			mi.Self, mi.Endpoints, mi.Updated, mi.RelayOK = true, selfEps, now, r.cfg.RelayOK
		}
		out = append(out, mi)
	}
	r.mu.Unlock()
	order := func(a, b MemberInfo) int {
		if a.Name != b.Name {
			return compareStrings(a.Name, b.Name)
		}
		return compareStrings(a.NodeID, b.NodeID)
	}
	sort.Slice(out, func(i, j int) bool { return order(out[i], out[j]) < 0 })
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (r *Roster) selfEndpoints() []netip.AddrPort {
	if r.cfg.SelfEndpoints == nil {
		return nil
	}
	return cleanEndpoints(r.cfg.SelfEndpoints())
}

// Snapshot returns the snapshot this box serves: every record (its own with
// its current endpoints and Updated now), the revocation list and the
// redemption records that no record carries.
func (r *Roster) Snapshot() (*Snapshot, error) {
	b, err := r.encodeSnapshot()
	if err != nil {
		return nil, err
	}
	return DecodeSnapshot(b)
}

// encodeSnapshot returns the encoding of the snapshot this box serves.
func (r *Roster) encodeSnapshot() ([]byte, error) {
	selfEps := r.selfEndpoints()
	now := r.now()
	r.mu.Lock()
	recs, size := r.wireRecordsLocked(now, selfEps, true)
	rev := r.revRaw
	r.mu.Unlock()

	// Redemption records a record carries go without saying; the others
	// fill what the records leave of MaxSnapshotSize.
	carried := make(map[[16]byte][32]byte)
	for _, rec := range recs {
		if rec.invited {
			carried[rec.invite] = rec.key
		}
	}
	size += 64 + len(rev)
	var reds [][]byte
	omitted := 0
	for _, m := range r.redemptions.Records() {
		if carried[m.Delegation.InviteID] == m.Certificate.NodeKey {
			continue
		}
		b, err := m.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("encoding redemption of node %s: %w", m.NodeID(), err)
		}
		if size+2+len(b) > MaxSnapshotSize {
			omitted++
			continue
		}
		size += 2 + len(b)
		reds = append(reds, b)
	}
	if omitted > 0 {
		r.stats.add(&r.stats.redemptionsOmitted, uint64(omitted))
	}
	return encodeSnapshot(r.id, recs, rev, reds)
}

// wireRecordsLocked returns the records in node key order, and the size of
// their encoding plus the snapshot header. For a served snapshot, this
// box's record carries selfEps and Updated now, and aged-out endpoints are
// left out; for the roster file, this box is left out.
func (r *Roster) wireRecordsLocked(now time.Time, selfEps []netip.AddrPort, serve bool) ([]wireRecord, int) {
	recs := make([]wireRecord, 0, len(r.records))
	size := 16
	for key, e := range r.records {
		w := wireRecord{key: key, chain: e.chain, eps: e.eps, updated: e.updated, relay: e.relay}
		if dl := e.m.Delegation; dl != nil {
			w.invited, w.invite = true, dl.InviteID
		}
		switch {
		case key == r.selfKey && !serve:
			continue
		case key == r.selfKey:
			w.eps, w.updated, w.relay = selfEps, now, r.cfg.RelayOK
		case serve:
			w.eps = e.endpoints(now, r.cfg.EndpointTTL)
		}
		size += 12 + len(w.chain) + len(w.eps)*maxEndpointSize
		recs = append(recs, w)
	}
	order := func(a, b wireRecord) int { return compareKeys(a.key, b.key) }
	sort.Slice(recs, func(i, j int) bool { return order(recs[i], recs[j]) < 0 })
	return recs, size
}

// result collects what a change touched.
type result struct {
	peers       bool // Peers or Members changed
	roster      bool // the roster file is out of date
	revocations bool
	redemptions bool
	self        bool // this box's membership was replaced
}

// finish notifies the reader of Changed and persists what res touched.
func (r *Roster) finish(res result) error {
	if res.peers || res.self {
		r.notify()
	}
	var d dirty
	if res.roster {
		d |= dirtyRoster
	}
	if res.revocations {
		d |= dirtyRevocations
	}
	if res.redemptions {
		d |= dirtyRedemptions
	}
	if res.self {
		d |= dirtySelf
	}
	if d == 0 {
		return nil
	}
	return r.persist(d)
}

// persist writes the items d names, and those an earlier persist failed to
// write, to the store.
func (r *Roster) persist(d dirty) error {
	st := r.cfg.Store
	if st == nil {
		return nil
	}
	r.saveMu.Lock()
	defer r.saveMu.Unlock()
	r.mu.Lock()
	d |= r.dirty
	r.dirty = 0
	var rosterBytes []byte
	var rosterErr error
	if d&dirtyRoster != 0 {
		recs, _ := r.wireRecordsLocked(time.Time{}, nil, false)
		rosterBytes, rosterErr = encodeSnapshot(r.id, recs, nil, nil)
	}
	self, rev := r.self, r.revocations
	r.mu.Unlock()

	var errs []error
	var failed dirty
	try := func(bit dirty, err error) {
		if err != nil {
			errs = append(errs, err)
			failed |= bit
		}
	}
	if d&dirtyRoster != 0 {
		if rosterErr == nil {
			rosterErr = atomicfile.Write(filepath.Join(st.Dir(), RosterFile), rosterBytes, 0o600)
		}
		try(dirtyRoster, rosterErr)
	}
	if d&dirtyRevocations != 0 && rev != nil {
		try(dirtyRevocations, st.SaveRevocations(rev))
	}
	if d&dirtyRedemptions != 0 {
		try(dirtyRedemptions, st.SaveRedemptions(r.redemptions))
	}
	if d&dirtySelf != 0 {
		try(dirtySelf, st.SaveMembership(self))
	}
	if len(errs) == 0 {
		return nil
	}
	r.mu.Lock()
	r.dirty |= failed
	r.mu.Unlock()
	r.stats.add(&r.stats.persistErrors, 1)
	err := fmt.Errorf("saving roster state: %w", errors.Join(errs...))
	r.log.Error("saving roster state failed", "err", err)
	return err
}
