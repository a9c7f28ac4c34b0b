package services

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/cloudbox/cloudbox/internal/plainhttp"
	"github.com/cloudbox/cloudbox/internal/xeddsa"
)

// Defaults of [Config].
const (
	// DefaultGossipPort is memberlist's port (UDP and TCP).
	DefaultGossipPort = 7946
	// DefaultPullPort is where the default Fetch expects other boxes to
	// serve [Catalog.Handler] on their overlay address.
	DefaultPullPort = 7947
	// DefaultLease is how long a signed catalog stays valid.
	DefaultLease = 15 * time.Minute
	// DefaultHealthInterval is how often the owner checks its services.
	DefaultHealthInterval = 10 * time.Second
)

// CatalogPath is the HTTP path [Catalog.Handler] serves: the box's own
// signed catalog, or with ?node=ID the copy it holds of that member's.
const CatalogPath = "/catalog/v1"

// Tuning that is not configuration.
const (
	pullWorkers     = 4
	pullBurst       = 4   // pulls of one owner in a burst...
	pullRate        = 0.5 // ...then this many per second
	pullTimeout     = 10 * time.Second
	maxPullBackoff  = 30 * time.Second
	maintainEvery   = time.Second
	rejoinEvery     = 10 * time.Second
	joinFanout      = 3
	maxRefused      = 256             // strangers' names remembered for readmission...
	refusedMemory   = 2 * time.Minute // ...for this long (rosters sync every few seconds)
	announceTimeout = 2 * time.Second
	leaveTimeout    = 3 * time.Second
	checkParallel   = 8
)

// Member is one verified member of the community, as the roster knows it.
type Member struct {
	// NodeID is the member's stable ID; it is also its memberlist node
	// name.
	NodeID string
	// Name is the box's human name.
	Name string
	// NodeKey is the member's X25519 node key, which signs its catalog.
	NodeKey [32]byte
	// IPv4 and IPv6 are the member's overlay addresses.
	IPv4, IPv6 netip.Addr
	// Gossip is where the member's memberlist listens. The zero value
	// means [IPv6]:Config.GossipPort, the case on boxes; tests on loopback
	// set it. Gossip about a member from any other address is refused.
	Gossip netip.AddrPort
}

// Config configures a [Catalog]. Only PrivateKey, Self and Members are
// required; every other zero value works.
type Config struct {
	// Logger receives the catalog's and memberlist's logs. Nil discards.
	Logger *slog.Logger
	// PrivateKey is this box's X25519 node key; it signs the catalog and
	// must match Self.NodeKey.
	PrivateKey [32]byte
	// Self is this box as the roster knows it.
	Self Member
	// Members returns the current verified community members, self
	// included. It must be safe for concurrent use; it is called at most
	// about once a second. Gossip from or about anyone else is refused.
	Members func() []Member
	// BindAddr is where memberlist listens (UDP and TCP). The zero value
	// means Self.IPv6, the overlay address, so gossip only flows inside
	// the encrypted overlay. Ignored when Transport is set.
	BindAddr netip.Addr
	// GossipPort is memberlist's port; 0 means DefaultGossipPort.
	GossipPort uint16
	// Transport replaces memberlist's UDP/TCP transport (tests, and an
	// in-memory network in catalogtest). Nil means a
	// memberlist.NetTransport on BindAddr:GossipPort. The catalog shuts
	// it down when Run returns.
	Transport memberlist.Transport
	// Fetch pulls a signed catalog document: from is the member asked,
	// owner the node ID whose catalog is wanted (from.NodeID for its own).
	// It must return at most MaxDocSize+1 bytes and honour ctx. Nil means
	// HTTP GET http://[from.IPv6]:PullPort/catalog/v1 (?node=owner when
	// owner is not from).
	Fetch func(ctx context.Context, from Member, owner string) ([]byte, error)
	// PullPort is the port of the default Fetch; 0 means DefaultPullPort.
	PullPort uint16
	// StateDir holds services.json, the services users published, written
	// atomically. "" keeps them in memory only.
	StateDir string
	// Builtin returns the services of cloudbox itself (panel, DNS...). They
	// are always published and never persisted. Nil means none. It is
	// called at Run start and every HealthInterval; invalid ones are
	// logged and left out.
	Builtin func() []Service
	// Check tells whether a TCP service answers at addr. Nil means a TCP
	// connection attempt. ctx carries a timeout.
	Check func(ctx context.Context, addr netip.AddrPort) error
	// Lease is how long this box's signed catalog stays valid at the
	// receivers; the box re-signs it when two thirds have passed. 0 means
	// DefaultLease; at least a minute.
	Lease time.Duration
	// HealthInterval is the period of health checks of this box's TCP
	// services; 0 means DefaultHealthInterval.
	HealthInterval time.Duration
	// Now is the clock of documents and leases; nil means time.Now.
	Now func() time.Time
}

// Catalog publishes this box's services and holds everyone else's. Create
// it with [New] and start it with [Run]; every method is safe for
// concurrent use, before, during and after Run.
type Catalog struct {
	// Immutable after New.
	cfg       Config
	log       *slog.Logger
	signer    *xeddsa.Signer
	epoch     uint64
	statePath string
	roster    *rosterCache
	announce  chan struct{}        // capacity 1: the own summary changed
	pullq     chan string          // node IDs that may need a pull
	client    plainhttp.HTTPClient // of the default Fetch; idle connections closed when Run returns
	running   atomic.Bool

	mu      sync.Mutex // guards the following; never held while calling memberlist
	ml      *memberlist.Memberlist
	user    map[string]localService
	builtin []localService
	health  map[string]bool // by Service.key; absent = healthy
	own     ownDoc
	peers   map[string]*peer
	refused map[string]time.Time // names whose gossip was refused as strangers, when
	changed chan struct{}
	stats   stats
}

// localService is a service of this box with its last change.
type localService struct {
	Service
	Updated time.Time
}

// ownDoc is this box's current signed catalog.
type ownDoc struct {
	payload docPayload
	raw     []byte
	meta    meta
}

// remoteDoc is an accepted document of another member.
type remoteDoc struct {
	raw     []byte
	meta    meta
	payload *docPayload
}

// peer is what the catalog knows about another member.
type peer struct {
	id       string
	alive    bool // in memberlist's view: alive or suspect
	hasMeta  bool
	meta     meta
	doc      *remoteDoc
	failures int // memberlist declared it dead or it left, times

	queued, pulling bool
	tokens          float64
	refilled        time.Time
	retryAt         time.Time
	pullErrors      int
}

// New checks cfg, loads the persisted user services and returns a catalog
// that does nothing on the network until Run.
func New(cfg Config) (*Catalog, error) {
	if cfg.Members == nil {
		return nil, errors.New("catalog config: Members is required")
	}
	if cfg.Self.NodeID == "" {
		return nil, errors.New("catalog config: Self.NodeID is required")
	}
	signer, err := xeddsa.NewSigner(cfg.PrivateKey[:])
	if err != nil {
		return nil, fmt.Errorf("catalog config: private key: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.GossipPort == 0 {
		cfg.GossipPort = DefaultGossipPort
	}
	if cfg.PullPort == 0 {
		cfg.PullPort = DefaultPullPort
	}
	if cfg.Lease == 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.Lease < time.Minute {
		return nil, fmt.Errorf("catalog config: lease %v is shorter than a minute", cfg.Lease)
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = DefaultHealthInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Check == nil {
		cfg.Check = dialCheck
	}
	var eb [8]byte
	if _, err := crand.Read(eb[:]); err != nil {
		return nil, fmt.Errorf("catalog epoch: %w", err)
	}
	c := &Catalog{
		cfg:      cfg,
		log:      cfg.Logger,
		signer:   signer,
		epoch:    binary.BigEndian.Uint64(eb[:]),
		roster:   &rosterCache{members: cfg.Members},
		announce: make(chan struct{}, 1),
		pullq:    make(chan string, 1024),
		user:     make(map[string]localService),
		health:   make(map[string]bool),
		peers:    make(map[string]*peer),
		refused:  make(map[string]time.Time),
		changed:  make(chan struct{}),
		client:   plainhttp.NewClient(plainhttp.ClientConfig{MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute}),
		stats:    stats{rejected: make(map[rejectReason]uint64)},
	}
	if cfg.Fetch == nil {
		c.cfg.Fetch = c.httpFetch
	}
	if cfg.StateDir != "" {
		if err := c.load(); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.resignLocked(); err != nil {
		return nil, err
	}
	return c, nil
}

// Run joins the community's gossip through the members' addresses, keeps
// the catalog in sync, health-checks this box's services and renews its
// lease, until ctx is done. Then it leaves the gossip gracefully (the other
// boxes drop this box's entries at once) and returns after all its
// goroutines have exited. Run may be called once; it returns an error only
// when gossip cannot start.
func (c *Catalog) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	c.refreshBuiltin()
	mc, err := c.memberlistConfig()
	if err != nil {
		return err
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("starting gossip: %w", err)
	}
	c.mu.Lock()
	c.ml = ml
	c.mu.Unlock()
	c.log.Info("catalog started", "node", c.cfg.Self.NodeID, "gossip", ml.LocalNode().Address())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range pullWorkers {
		wg.Go(func() { c.pullLoop(ctx) })
	}
	wg.Go(func() { c.announceLoop(ctx, ml) })
	wg.Go(func() { c.healthLoop(ctx) })
	wg.Go(func() { c.maintainLoop(ctx, ml) })
	<-ctx.Done()
	wg.Wait()

	if err := ml.Leave(leaveTimeout); err != nil {
		c.log.Warn("catalog leave", "err", err)
	}
	err = ml.Shutdown()
	c.client.CloseIdleConnections()
	c.mu.Lock()
	c.ml = nil
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("stopping gossip: %w", err)
	}
	c.log.Info("catalog stopped")
	return nil
}

// Publish adds or replaces (same Type and Instance) a user service of this
// box, persists it and announces the new catalog version. Errors say what
// to change: [ErrInvalidService], [ErrBuiltin], [ErrTooManyServices],
// [ErrDocumentTooLarge], or a failure to save.
func (c *Catalog) Publish(s Service) error {
	if err := s.Validate(); err != nil {
		return err
	}
	s.TXT = cloneTXT(s.TXT)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.builtin {
		if b.key() == s.key() {
			return fmt.Errorf("%w: %q of type %s is published by cloudbox itself: choose another name", ErrBuiltin, s.Instance, s.Type)
		}
	}
	k := s.key()
	old, replaced := c.user[k]
	if !replaced && len(c.user)+len(c.builtin) >= MaxEntries {
		return fmt.Errorf("%w: a box publishes at most %d services: remove one first", ErrTooManyServices, MaxEntries)
	}
	c.user[k] = localService{Service: s, Updated: c.cfg.Now()}
	oldHealth, hadHealth := c.health[k]
	delete(c.health, k)
	undo := func() {
		if replaced {
			c.user[k] = old
		} else {
			delete(c.user, k)
		}
		if hadHealth {
			c.health[k] = oldHealth
		}
	}
	if err := c.resignLocked(); err != nil {
		undo()
		return err
	}
	if err := c.saveLocked(); err != nil {
		undo()
		return errors.Join(err, c.resignLocked())
	}
	c.afterOwnChangeLocked()
	return nil
}

// Unpublish removes a user service of this box: [ErrNotFound] when there is
// none, [ErrBuiltin] for a service of cloudbox itself.
func (c *Catalog) Unpublish(typ, instance string) error {
	k := (&Service{Type: typ, Instance: instance}).key()
	c.mu.Lock()
	defer c.mu.Unlock()
	old, ok := c.user[k]
	if !ok {
		for _, b := range c.builtin {
			if b.key() == k {
				return fmt.Errorf("%w: %q cannot be removed", ErrBuiltin, instance)
			}
		}
		return fmt.Errorf("%w: this box publishes no %q of type %s", ErrNotFound, instance, typ)
	}
	delete(c.user, k)
	if err := c.saveLocked(); err != nil {
		c.user[k] = old
		return err
	}
	delete(c.health, k)
	if err := c.resignLocked(); err != nil {
		return err
	}
	c.afterOwnChangeLocked()
	return nil
}

// Services returns the records that match f, this box's included, sorted
// by type, instance, owner name and owner ID. Entries of members that are
// dead, gone from the roster or whose lease expired are not included.
func (c *Catalog) Services(f Filter) []Record {
	now := c.cfg.Now()
	roster := c.roster.all()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Record
	add := func(m Member, p *docPayload) {
		for i := range p.Services {
			e := &p.Services[i]
			r := Record{
				Service: e.service(), OwnerID: m.NodeID, OwnerName: m.Name,
				OwnerIPv4: m.IPv4, OwnerIPv6: m.IPv6,
				Healthy: e.Healthy, Builtin: e.Builtin, Updated: e.Updated, Expires: p.Expires,
			}
			r.TXT = cloneTXT(r.TXT)
			if f.match(&r) {
				out = append(out, r)
			}
		}
	}
	add(c.cfg.Self, &c.own.payload)
	for id, p := range c.peers {
		m, ok := roster[id]
		if !ok || !p.alive || p.doc == nil || !now.Before(p.doc.payload.Expires) {
			continue
		}
		add(m, p.doc.payload)
	}
	order := func(a, b Record) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Instance, b.Instance),
			cmp.Compare(a.OwnerName, b.OwnerName), cmp.Compare(a.OwnerID, b.OwnerID))
	}
	sort.Slice(out, func(i, j int) bool { return order(out[i], out[j]) < 0 })
	return out
}

// Changed returns a channel that is closed at the next change of what
// Services returns (a publish here or elsewhere, a health flip, a box gone,
// a lease expired). Call it again after each wake-up, before reading
// Services, so no change is missed.
func (c *Catalog) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// Peer is the catalog's view of another member, for the panel and tests.
type Peer struct {
	NodeID string
	// Alive is memberlist's view: alive or suspect (not dead, not left).
	Alive bool
	// Version is the catalog version held (0: none).
	Version uint64
	// Entries is the number of services held.
	Entries int
	// Failures counts how often the member was declared dead or left.
	Failures int
}

// Peers returns the members this box has heard of in gossip, sorted by ID.
func (c *Catalog) Peers() []Peer {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Peer, 0, len(c.peers))
	for _, p := range c.peers {
		q := Peer{NodeID: p.id, Alive: p.alive, Failures: p.failures}
		if p.doc != nil {
			q.Version = p.doc.meta.Version
			q.Entries = len(p.doc.payload.Services)
		}
		out = append(out, q)
	}
	order := func(a, b Peer) int { return cmp.Compare(a.NodeID, b.NodeID) }
	sort.Slice(out, func(i, j int) bool { return order(out[i], out[j]) < 0 })
	return out
}

// Handler serves CatalogPath: GET answers this box's signed catalog, and
// with ?node=ID the signed copy it holds of that member's catalog (404
// when it holds none). Receivers verify what they get, so the handler
// needs no authentication.
func (c *Catalog) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != CatalogPath {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		node := r.URL.Query().Get("node")
		c.mu.Lock()
		var doc []byte
		if node == "" || node == c.cfg.Self.NodeID {
			doc = c.own.raw
		} else if p := c.peers[node]; p != nil && p.doc != nil {
			doc = p.doc.raw
		}
		c.stats.served++
		c.mu.Unlock()
		if doc == nil {
			http.Error(w, "no catalog of that member here", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.cloudbox.catalog")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(doc)
	})
}

// httpFetch is the default Config.Fetch.
func (c *Catalog) httpFetch(ctx context.Context, from Member, owner string) ([]byte, error) {
	addr := from.IPv6
	if !addr.IsValid() {
		addr = from.IPv4
	}
	if !addr.IsValid() {
		return nil, fmt.Errorf("member %s has no overlay address", from.NodeID)
	}
	url := "http://" + netip.AddrPortFrom(addr, c.cfg.PullPort).String() + CatalogPath
	if owner != from.NodeID {
		url += "?node=" + owner
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("pulling catalog: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("pulling catalog from %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxDocSize+1))
	if err != nil {
		return nil, fmt.Errorf("pulling catalog from %s: %w", url, err)
	}
	return b, nil
}

// dialCheck is the default Config.Check.
func dialCheck(ctx context.Context, addr netip.AddrPort) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return err
	}
	return conn.Close()
}

// resignLocked signs the current set of own services as a new version.
func (c *Catalog) resignLocked() error {
	now := c.cfg.Now()
	p := docPayload{
		V: docFormat, Owner: c.cfg.Self.NodeID, Epoch: c.epoch,
		Version: max(c.own.meta.Version+1, uint64(max(now.UnixMilli(), 0))),
		Issued:  now.UTC().Truncate(time.Millisecond), Expires: now.Add(c.cfg.Lease).UTC().Truncate(time.Millisecond),
		Services: []docEntry{},
	}
	user := make([]localService, 0, len(c.user))
	for _, s := range c.user {
		user = append(user, s)
	}
	order := func(a, b localService) int { return cmp.Compare(a.key(), b.key()) }
	sort.Slice(user, func(i, j int) bool { return order(user[i], user[j]) < 0 })
	for i, s := range append(slices.Clone(c.builtin), user...) {
		if i >= MaxEntries {
			c.log.Warn("catalog entries left out", "count", len(c.builtin)+len(user)-MaxEntries)
			break
		}
		healthy, checked := c.health[s.key()]
		p.Services = append(p.Services, docEntry{
			Instance: s.Instance, Type: s.Type, Port: s.Port, TXT: s.TXT, Description: s.Description,
			Addr: s.Addr, Healthy: healthy || !checked, Builtin: i < len(c.builtin), Updated: s.Updated.UTC(),
		})
	}
	raw, err := signDocument(c.signer, crand.Reader, &p)
	if err != nil {
		return err
	}
	c.own = ownDoc{payload: p, raw: raw, meta: meta{Epoch: p.Epoch, Version: p.Version, Entries: uint16(len(p.Services)), Hash: docHash(raw)}}
	return nil
}

// afterOwnChangeLocked signals readers and the announcer.
func (c *Catalog) afterOwnChangeLocked() {
	c.changedLocked()
	select {
	case c.announce <- struct{}{}:
	default:
	}
}

func (c *Catalog) changedLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// refreshBuiltin asks Config.Builtin for the built-in services and
// re-signs if they changed.
func (c *Catalog) refreshBuiltin() {
	if c.cfg.Builtin == nil {
		return
	}
	now := c.cfg.Now()
	var list []localService
	seen := make(map[string]bool)
	for _, s := range c.cfg.Builtin() {
		if err := s.Validate(); err != nil {
			c.log.Warn("builtin service left out", "instance", s.Instance, "type", s.Type, "err", err)
			continue
		}
		if seen[s.key()] {
			continue
		}
		seen[s.key()] = true
		s.TXT = cloneTXT(s.TXT)
		list = append(list, localService{Service: s, Updated: now})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	same := len(list) == len(c.builtin)
	for i := 0; same && i < len(list); i++ {
		same = sameService(&list[i].Service, &c.builtin[i].Service)
		list[i].Updated = c.builtin[i].Updated
	}
	if same {
		return
	}
	for k := range c.user { // a builtin takes over a user service of the same name
		if seen[k] {
			delete(c.user, k)
		}
	}
	old := c.builtin
	c.builtin = list
	if err := c.resignLocked(); err != nil {
		c.log.Error("builtin services not published", "err", err)
		c.builtin = old
		return
	}
	c.afterOwnChangeLocked()
}

func sameService(a, b *Service) bool {
	if a.Instance != b.Instance || a.Type != b.Type || a.Port != b.Port || a.Description != b.Description ||
		a.Addr != b.Addr || len(a.TXT) != len(b.TXT) {
		return false
	}
	for k, v := range a.TXT {
		if w, ok := b.TXT[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func cloneTXT(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// rosterCache indexes Config.Members, refreshed at most once a second.
type rosterCache struct {
	members func() []Member

	mu   sync.Mutex
	byID map[string]Member
	at   time.Time
}

func (r *rosterCache) all() map[string]Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID == nil || time.Since(r.at) >= time.Second {
		list := r.members()
		m := make(map[string]Member, len(list))
		for _, x := range list {
			m[x.NodeID] = x
		}
		r.byID, r.at = m, time.Now()
	}
	return r.byID // never modified after being stored
}

func (r *rosterCache) get(id string) (Member, bool) {
	m, ok := r.all()[id]
	return m, ok
}

// randomSubset returns up to n random elements of s.
func randomSubset[T any](s []T, n int) []T {
	s = slices.Clone(s)
	rand.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	return s[:min(n, len(s))]
}
