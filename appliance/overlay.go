package appliance

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudbox/cloudbox/appliance/state"
	"github.com/cloudbox/cloudbox/dnsproxy"
	"github.com/cloudbox/cloudbox/internal/plainhttp"
	"github.com/cloudbox/cloudbox/overlay"
	"github.com/cloudbox/cloudbox/overlay/membership"
	"github.com/cloudbox/cloudbox/overlay/roster"
	"github.com/cloudbox/cloudbox/services"
	"github.com/cloudbox/cloudbox/services/storage/vault"
)

// Defaults of OverlayConfig.
const (
	// DefaultOverlayPort is the overlay's UDP port and the TCP port of its
	// roster service.
	DefaultOverlayPort = overlay.DefaultListenPort
	// DefaultOverlayInterface is the name of the overlay's TUN interface.
	DefaultOverlayInterface = overlay.DefaultInterfaceName
)

// OverlayDir is the directory, inside the state directory, that holds the
// box's membership (package overlay/membership's Store), the roster and, on
// the founding box, the community's root key. `cloudbox community init` and
// `cloudbox invite` use the same directory.
const OverlayDir = "overlay"

// Join retries: while no bootstrap member answers, Run tries again after a
// pause that doubles from minJoinBackoff up to maxJoinBackoff.
const (
	minJoinBackoff = time.Second
	maxJoinBackoff = 15 * time.Second
)

// rosterShutdownTimeout bounds the graceful stop of the roster service.
const rosterShutdownTimeout = 2 * time.Second

// notMemberHint says how a box becomes a member; the panel and the status
// show it.
const notMemberHint = "run `cloudbox community init --state-dir DIR --name NAME` on this box to found a community, " +
	"or start cloudboxd with --join TOKEN to join one"

// OverlayConfig configures the overlay component of Run: the encrypted mesh
// between the boxes of a community (package overlay), its roster (package
// overlay/roster) and the roster's TCP service. The zero value runs the
// overlay on DefaultOverlayInterface and DefaultOverlayPort when the box is
// a member of a community, and leaves it off otherwise.
type OverlayConfig struct {
	// ListenPort is the overlay's UDP port and, with the same number, the
	// TCP port of the roster service: joins (from anyone) and snapshots
	// (only over the overlay). Invitations name members by this port. Zero
	// means DefaultOverlayPort.
	ListenPort uint16

	// InterfaceName names the TUN interface. Zero means
	// DefaultOverlayInterface.
	InterfaceName string

	// JoinToken is an invitation ("cloudbox-invite:...") that Run redeems
	// when the box is not a member of a community yet; it is ignored,
	// with a log line, when the box is one. A token that does not parse or
	// has expired makes Run fail at once; one that the members refuse
	// (used by another box, revoked, for another community) makes Run
	// fail when they answer. While no bootstrap member answers at all,
	// Run keeps trying and serves the panel meanwhile. Empty means no
	// join.
	JoinToken string

	// Disabled keeps the overlay off even when the box is a member; its
	// component then reports the state "disabled".
	Disabled bool
}

func (c OverlayConfig) withDefaults() OverlayConfig {
	if c.ListenPort == 0 {
		c.ListenPort = DefaultOverlayPort
	}
	if c.InterfaceName == "" {
		c.InterfaceName = DefaultOverlayInterface
	}
	return c
}

// overlayService is the overlay component of the daemon: it joins a
// community if asked to, then runs the engine, the roster, its TCP service
// and the loop that hands the roster's peers to the engine.
type overlayService struct {
	// Immutable after openOverlay.
	cfg   OverlayConfig
	log   *slog.Logger
	now   func() time.Time
	key   [32]byte // node private key
	pub   [32]byte
	store *membership.Store
	// start says whether run has anything to do at once; a box that is
	// not a member waits in run for a join requested through the API.
	start bool
	// joins carries a join requested through the API to run; buffer 1.
	joins chan joinRequest
	// catalog runs the service catalog while the overlay runs.
	catalog *catalogService
	// update serves the update agent's chunks to members; set by Run
	// before the overlay runs. Nil serves none.
	update http.Handler
	// vault serves the storage vault to members over the overlay (see
	// rosterHandler); nil for none. Set before run.
	vault http.Handler
	// community and self are the membership found in the store; zero and
	// nil when joining or not a member.
	community membership.Community
	self      *membership.Membership

	// mu guards the following.
	mu sync.Mutex
	// invite and chain are the pending join: the invitation and the
	// membership this box issued itself with it. Nil when not joining.
	// Set before run starts or by requestJoin, then read by run.
	invite    *membership.Invitation
	chain     *membership.Membership
	phase     string // what the component does, for people
	problem   string // what is wrong and what to do, "" if nothing
	notMember bool   // no usable membership and no join pending
	running   *overlayRun

	// changed is notified when the members or their addresses may have
	// changed, and when the overlay starts or stops.
	changed broadcast
}

// overlayRun is what runs once the box is a member; it is immutable.
type overlayRun struct {
	community membership.Community
	engine    *overlay.Engine
	roster    *roster.Roster
	admin     bool
}

// openOverlay prepares the overlay component from the membership store in
// stateDir: a member runs the overlay, a box with a join token joins first,
// any other box leaves it off. It returns an error for what makes the daemon
// useless to the person who started it: a store that cannot be opened, a
// join token that does not parse or has expired, and a missing TUN device or
// capability when the overlay has to run. A membership that is no longer
// valid is not an error: the component reports it and the daemon serves the
// panel.
func openOverlay(cfg OverlayConfig, stateDir string, node *state.Node, logger *slog.Logger, now func() time.Time) (*overlayService, error) {
	cfg = cfg.withDefaults()
	o := &overlayService{cfg: cfg, log: logger, now: now, joins: make(chan joinRequest, 1)}
	o.catalog = newCatalogService(stateDir, logger, &o.changed)
	copy(o.key[:], node.PrivateKey.Bytes())
	copy(o.pub[:], node.PrivateKey.PublicKey().Bytes())
	if cfg.Disabled {
		o.phase = "disabled"
		return o, nil
	}
	dir := filepath.Join(stateDir, OverlayDir)
	store, err := membership.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("opening overlay state: %w (check that the state directory is writable and not full)", err)
	}
	o.store = store

	m, err := store.LoadMembership()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if cfg.JoinToken == "" {
			o.phase, o.notMember = "not a member: "+notMemberHint, true
			return o, nil
		}
		if err := o.prepareJoin(); err != nil {
			return nil, err
		}
	case err != nil:
		o.notMember = true
		o.fail("not a member", fmt.Sprintf("%v; move the file away and join again with --join TOKEN", err))
		return o, nil
	default:
		c, err := store.LoadCommunity()
		if err != nil {
			o.notMember = true
			o.fail("not a member", fmt.Sprintf("membership without community: %v; move %s away and join again with --join TOKEN", err, dir))
			return o, nil
		}
		if m.Certificate.NodeKey != o.pub {
			o.notMember = true
			o.fail("not a member", fmt.Sprintf("the membership in %s is for node %s, but this box is node %s "+
				"(was %s recreated?); move %s away and join again with --join TOKEN",
				dir, m.NodeID(), node.ID(), state.FileName, dir))
			return o, nil
		}
		if cfg.JoinToken != "" {
			logger.Info("already a member, join token ignored", "community", c.Name, "name", m.Certificate.Name)
		}
		o.community, o.self = c, m
		o.phase = "starting"
	}
	if err := checkTUN(cfg.InterfaceName); err != nil {
		return nil, err
	}
	o.start = true
	return o, nil
}

// prepareJoin parses the join token and issues this box's membership with
// it; the members accept it later, in run.
func (o *overlayService) prepareJoin() error {
	req, err := o.issueJoin(o.cfg.JoinToken)
	if err != nil {
		return err
	}
	o.invite, o.chain = req.invite, req.chain
	o.phase = "joining community " + strconv.Quote(req.invite.Community().Name)
	return nil
}

// joinRequest is a join to run: an invitation and the membership this box
// issued itself with it.
type joinRequest struct {
	invite *membership.Invitation
	chain  *membership.Membership
	// founded, if not nil, is a community this box founded: no join.
	founded *foundedCommunity
}

// issueJoin parses a join token and issues this box's membership with it.
func (o *overlayService) issueJoin(token string) (joinRequest, error) {
	inv, err := membership.ParseInvitation(strings.TrimSpace(token))
	if err != nil {
		return joinRequest{}, fmt.Errorf("join token: %w; copy the whole token that `cloudbox invite` printed, or ask for a new one", err)
	}
	chain, err := inv.Issue(o.pub, o.now(), 0, nil)
	if err != nil {
		return joinRequest{}, fmt.Errorf("join token: %w", err)
	}
	if len(inv.Bootstrap()) == 0 {
		return joinRequest{}, fmt.Errorf("join token for community %q names no member to join through; ask for an invitation with --bootstrap", inv.Community().Name)
	}
	return joinRequest{invite: inv, chain: chain}, nil
}

// requestJoin starts joining the community of token, as --join does at
// start, on a box that is not a member and not joining. It returns once
// the token is checked; the join itself runs in run, and the status tells
// how it goes.
func (o *overlayService) requestJoin(token string) (community string, err error) {
	if o.store == nil {
		return "", errOverlayDisabled
	}
	o.mu.Lock()
	notMember := o.notMember
	o.mu.Unlock()
	if !notMember {
		return "", errAlreadyMember
	}
	req, err := o.issueJoin(token)
	if err != nil {
		return "", err
	}
	if err := checkTUN(o.cfg.InterfaceName); err != nil {
		return "", err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.notMember {
		return "", errAlreadyMember
	}
	select {
	case o.joins <- req:
	default:
		return "", errAlreadyMember
	}
	name := req.invite.Community().Name
	o.invite, o.chain = req.invite, req.chain
	o.notMember = false
	o.phase, o.problem = "joining community "+strconv.Quote(name), ""
	o.changed.Notify()
	o.log.Info("join requested", "community", name, "name", req.chain.Certificate.Name)
	return name, nil
}

// fail records that the overlay cannot run and why.
func (o *overlayService) fail(phase, problem string) {
	o.mu.Lock()
	o.phase, o.problem = phase, problem
	o.mu.Unlock()
	o.log.Error("overlay not running", "state", phase, "error", problem)
}

func (o *overlayService) setPhase(phase, problem string) {
	o.mu.Lock()
	o.phase, o.problem = phase, problem
	o.mu.Unlock()
}

// run joins if needed, then runs the overlay until ctx is done. It returns
// nil after a stop through ctx, and an error if joining is refused or the
// overlay cannot run; it returns only after every goroutine it started has
// returned. Without anything to run it returns nil at once.
func (o *overlayService) run(ctx context.Context) error {
	c, self := o.community, o.self
	var snap *roster.Snapshot
	if o.start {
		o.mu.Lock()
		joining := o.invite != nil
		o.mu.Unlock()
		if joining {
			var err error
			if c, self, snap, err = o.join(ctx); err != nil || ctx.Err() != nil {
				return err
			}
		}
	} else {
		if o.store == nil {
			return nil // disabled
		}
		// Not a member: wait for a join through the API. A refused one
		// is reported and the box waits for another token.
		for self == nil {
			var req joinRequest
			select {
			case <-ctx.Done():
				return nil
			case req = <-o.joins: // requestJoin set invite and chain
			}
			if req.founded != nil { // found (the wizard) made the box a member
				c, self = req.founded.community, req.founded.self
				continue
			}
			var err error
			c, self, snap, err = o.join(ctx)
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				o.mu.Lock()
				o.invite, o.chain, o.notMember = nil, nil, true
				o.phase, o.problem = "not a member: "+notMemberHint, err.Error()+"; ask for a new invitation"
				o.mu.Unlock()
				o.log.Warn("join refused", "error", err)
			}
		}
	}
	rootKey, err := o.store.LoadRootKey()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		rootKey = nil
	case err != nil:
		return fmt.Errorf("loading the community root key: %w", err)
	}
	r, err := roster.New(roster.Config{
		Community:     c,
		Self:          self,
		SelfEndpoints: o.selfEndpoints,
		RelayOK:       true,
		RootKey:       rootKey,
		Store:         o.store,
		Logger:        o.log.With("component", "roster"),
		Now:           o.now,
	})
	if err != nil {
		o.fail("not running", fmt.Sprintf("%v; ask an administrator of community %q for a new invitation, move %s away and start with --join TOKEN",
			err, c.Name, o.store.Dir()))
		<-ctx.Done()
		return nil
	}
	if snap != nil {
		if err := r.Apply(snap); err != nil {
			o.log.Warn("snapshot of the bootstrap member refused", "error", err)
		}
	}
	return o.serve(ctx, c, r, rootKey != nil)
}

// join redeems the invitation with a bootstrap member, retrying while none
// answers, and saves the community and the membership.
func (o *overlayService) join(ctx context.Context) (membership.Community, *membership.Membership, *roster.Snapshot, error) {
	o.mu.Lock()
	invite, chain := o.invite, o.chain
	o.mu.Unlock()
	c := invite.Community()
	var bootstrap []string
	for _, ep := range invite.Bootstrap() {
		bootstrap = append(bootstrap, "http://"+ep.String())
	}
	client := plainhttp.NewClient(plainhttp.ClientConfig{DisableKeepAlives: true, Timeout: roster.DefaultJoinTimeout})
	defer client.CloseIdleConnections()
	name := chain.Certificate.Name
	backoff := minJoinBackoff
	for {
		o.log.Info("joining community", "community", c.Name, "name", name, "bootstrap", bootstrap)
		snap, err := roster.Join(ctx, client, bootstrap, chain, o.selfEndpoints())
		if ctx.Err() != nil {
			return c, nil, nil, nil
		}
		if err == nil {
			if err := o.store.SaveCommunity(c); err != nil {
				return c, nil, nil, fmt.Errorf("joined community %q, but %w (check that the state directory is writable and not full)", c.Name, err)
			}
			if err := o.store.SaveMembership(chain); err != nil {
				return c, nil, nil, fmt.Errorf("joined community %q, but %w (check that the state directory is writable and not full)", c.Name, err)
			}
			o.log.Info("joined community", "community", c.Name, "name", name, "ipv4", chain.Certificate.IPv4)
			return c, chain, snap, nil
		}
		if joinRefused(err) {
			return c, nil, nil, fmt.Errorf("joining community %q as %q: %w", c.Name, name, err)
		}
		o.setPhase("joining community "+strconv.Quote(c.Name), fmt.Sprintf("no member answered yet, retrying in %v: %v", backoff, err))
		o.log.Warn("join failed, retrying", "community", c.Name, "retry_in", backoff, "error", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return c, nil, nil, nil
		case <-t.C:
		}
		backoff = min(2*backoff, maxJoinBackoff)
	}
}

// joinRefused reports whether every member would refuse the join the same
// way, so that trying again is pointless.
func joinRefused(err error) bool {
	return errors.Is(err, roster.ErrRefused) || errors.Is(err, membership.ErrInviteUsed) ||
		errors.Is(err, roster.ErrMalformed) || errors.Is(err, membership.ErrWrongCommunity)
}

// serve runs the engine, the roster's anti-entropy, the roster service and
// the peer loop until ctx is done or one of them fails.
func (o *overlayService) serve(ctx context.Context, c membership.Community, r *roster.Roster, admin bool) error {
	cert := r.Self().Certificate
	ipv4 := netip.PrefixFrom(cert.IPv4, c.IPv4.Bits())
	ipv6 := netip.PrefixFrom(c.NodeIPv6(o.pub), c.IPv6().Bits())
	engine, err := overlay.New(overlay.Config{
		Logger:          o.log.With("component", "overlay"),
		PrivateKey:      o.key,
		ListenPort:      o.cfg.ListenPort,
		InterfaceName:   o.cfg.InterfaceName,
		IPv4:            ipv4,
		IPv6:            ipv6,
		CommunityRoutes: []netip.Prefix{c.IPv4, c.IPv6()},
	})
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort("", strconv.Itoa(int(o.cfg.ListenPort))))
	if err != nil {
		return fmt.Errorf("listening for the roster service: %w (--overlay-port picks another port)", err)
	}
	srv := newHTTPServer(rosterHandler(r, o.catalog.handler(), o.update, o.vault, []netip.Addr{ipv4.Addr(), ipv6.Addr()}, []netip.Prefix{c.IPv4, c.IPv6()}), o.log)
	fetchClient := plainhttp.NewClient(plainhttp.ClientConfig{MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute})
	port := o.cfg.ListenPort
	fetch := func(ctx context.Context, p roster.Peer) (*roster.Snapshot, error) {
		return roster.Fetch(ctx, fetchClient, "http://"+netip.AddrPortFrom(p.IPv6, port).String())
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := engine.Run(ctx); err != nil {
			errc <- fmt.Errorf("running the overlay on %s: %w", o.cfg.InterfaceName, err)
		}
	})
	wg.Go(func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serving the roster service: %w", err)
		}
	})
	wg.Go(func() { r.Run(ctx, fetch) }) // returns nil when ctx is done
	wg.Go(func() { o.syncPeers(ctx, engine, r) })
	wg.Go(func() { o.catalog.run(ctx, o.key, r, port) })

	o.mu.Lock()
	o.running = &overlayRun{community: c, engine: engine, roster: r, admin: admin}
	o.phase, o.problem = "running", ""
	o.mu.Unlock()
	o.log.Info("overlay running", "community", c.Name, "name", cert.Name, "ipv4", ipv4, "ipv6", ipv6,
		"port", port, "root_key", admin)

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), rosterShutdownTimeout)
	if srv.Shutdown(sctx) != nil {
		srv.Close()
	}
	scancel()
	wg.Wait()
	fetchClient.CloseIdleConnections()
	o.mu.Lock()
	o.running = nil
	o.changed.Notify()
	o.phase = "stopped"
	if err != nil {
		o.phase, o.problem = "failed", err.Error()
	}
	o.mu.Unlock()
	return err
}

// syncPeers hands the roster's peers to the engine, at once and after every
// change, until ctx is done.
func (o *overlayService) syncPeers(ctx context.Context, e *overlay.Engine, r *roster.Roster) {
	for {
		rp := r.Peers()
		peers := make([]overlay.Peer, 0, len(rp))
		for _, p := range rp {
			peers = append(peers, overlay.Peer{NodeKey: p.NodeKey, Name: p.Name, IPv4: p.IPv4, IPv6: p.IPv6, Endpoints: p.Endpoints})
		}
		if err := e.SetPeers(peers); err != nil {
			o.log.Error("setting overlay peers failed", "error", err)
		}
		o.changed.Notify()
		select {
		case <-ctx.Done():
			return
		case <-r.Changed():
		}
	}
}

// rosterHandler serves the roster's join endpoint to everyone, and its
// snapshot endpoint and the catalog's documents only to members over the
// overlay: the connection must
// be to one of self (this box's overlay addresses) and from inside one of
// community (the community's prefixes). Together they mean WireGuard
// authenticated the peer: an answer to a community address goes back
// through the tunnel of the member that owns it, so a host on the underlay
// that forges such a source never completes the TCP handshake.
func rosterHandler(r *roster.Roster, catalog, update, vaultH http.Handler, self []netip.Addr, community []netip.Prefix) http.Handler {
	full, join := r.Handler(), r.JoinHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch {
		case overlayRequest(req, self, community) && req.URL.Path == services.CatalogPath:
			catalog.ServeHTTP(w, req)
		case overlayRequest(req, self, community) && update != nil && strings.HasPrefix(req.URL.Path, updatePathPrefix):
			update.ServeHTTP(w, req)
		case vaultH != nil && strings.HasPrefix(req.URL.Path, vault.PathPrefix) && overlayRequest(req, self, community):
			vaultH.ServeHTTP(w, req)
		case overlayRequest(req, self, community):
			full.ServeHTTP(w, req)
		case req.URL.Path == roster.SnapshotPath:
			w.Header().Set("X-Content-Type-Options", "nosniff")
			writeJSON(w, http.StatusForbidden, errorResponse{
				Error: "the roster snapshot is served only to members over the overlay",
			})
		default:
			join.ServeHTTP(w, req)
		}
	})
}

// overlayRequest reports whether req came over the overlay: see
// rosterHandler.
func overlayRequest(req *http.Request, self []netip.Addr, community []netip.Prefix) bool {
	la, ok := req.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	local, err := netip.ParseAddrPort(la.String())
	if err != nil {
		return false
	}
	remote, err := netip.ParseAddrPort(req.RemoteAddr)
	if err != nil {
		return false
	}
	l, from := local.Addr().Unmap(), remote.Addr().Unmap()
	return slices.Contains(self, l) && slices.ContainsFunc(community, func(p netip.Prefix) bool { return p.Contains(from) })
}

// selfEndpoints returns the underlay endpoints of this box: the addresses
// of its interfaces that are up, except loopback, link-local, the overlay's
// own interface and addresses inside the community, each with the overlay
// port; IPv4 first.
func (o *overlayService) selfEndpoints() []netip.AddrPort {
	exclude := o.communityPrefixes()
	var out []netip.AddrPort
	for _, ip := range overlay.UnderlayAddrs(o.cfg.InterfaceName) {
		if usableEndpoint(ip, exclude) {
			out = append(out, netip.AddrPortFrom(ip, o.cfg.ListenPort))
		}
	}
	slices.SortStableFunc(out, func(a, b netip.AddrPort) int {
		switch {
		case a.Addr().Is4() == b.Addr().Is4():
			return 0
		case a.Addr().Is4():
			return -1
		}
		return 1
	})
	return out
}

// usableEndpoint reports whether ip can be offered to other boxes.
func usableEndpoint(ip netip.Addr, exclude []netip.Prefix) bool {
	if !ip.IsValid() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	return !slices.ContainsFunc(exclude, func(p netip.Prefix) bool { return p.Contains(ip) })
}

// communityPrefixes returns the community's IPv4 and IPv6 prefixes, nil
// before the box knows its community.
func (o *overlayService) communityPrefixes() []netip.Prefix {
	c := o.community
	o.mu.Lock()
	switch {
	case o.invite != nil:
		c = o.invite.Community()
	case o.running != nil: // founded at run time
		c = o.running.community
	}
	o.mu.Unlock()
	if !c.IPv4.IsValid() {
		return nil
	}
	return []netip.Prefix{c.IPv4, c.IPv6()}
}

// status is the "overlay" component of the status.
func (o *overlayService) status(context.Context) ComponentStatus {
	v := o.view()
	if !v.Running {
		return ComponentStatus{OK: false, Error: v.Problem, Detail: map[string]string{"state": v.State}}
	}
	direct := 0
	for _, m := range v.Members {
		if m.Live.Direct {
			direct++
		}
	}
	return ComponentStatus{OK: true, Detail: map[string]string{
		"community": v.Community,
		"ipv4":      v.IPv4.String(),
		"ipv6":      v.IPv6.String(),
		"peers":     strconv.Itoa(max(len(v.Members)-1, 0)),
		"direct":    strconv.Itoa(direct),
	}}
}

// view returns what the API, the panel and the metrics show.
func (o *overlayService) view() overlayView {
	o.mu.Lock()
	run := o.running
	v := overlayView{State: o.phase, Problem: o.problem, NotMember: o.notMember}
	o.mu.Unlock()
	if run == nil {
		return v
	}
	v.Running = true
	v.Community = run.community.Name
	v.CommunityID = run.community.ID().String()
	v.IPv4Range, v.IPv6Range = run.community.IPv4, run.community.IPv6()
	v.IPv4, v.IPv6 = run.engine.IPv4(), run.engine.IPv6()
	v.Admin = run.admin
	live := make(map[[32]byte]overlay.PeerStatus)
	for _, p := range run.engine.Peers() {
		live[p.NodeKey] = p
	}
	for _, m := range run.roster.Members() {
		ps, ok := live[m.NodeKey]
		v.Members = append(v.Members, memberView{MemberInfo: m, Live: ps, HasLive: ok})
	}
	v.Engine = run.engine.Stats()
	v.Roster = run.roster.Stats()
	return v
}

// revoke revokes the member with node ID nodeID with the root key.
func (o *overlayService) revoke(nodeID, reason string) (roster.MemberInfo, error) {
	o.mu.Lock()
	run := o.running
	o.mu.Unlock()
	if run == nil {
		return roster.MemberInfo{}, errOverlayNotRunning
	}
	if !run.admin {
		return roster.MemberInfo{}, errNotAdmin
	}
	members := run.roster.Members()
	i := slices.IndexFunc(members, func(m roster.MemberInfo) bool { return m.NodeID == nodeID })
	if i < 0 {
		return roster.MemberInfo{}, fmt.Errorf("node %q: %w", nodeID, errNoSuchMember)
	}
	m := members[i]
	if m.Self {
		return m, errRevokeSelf
	}
	if err := run.roster.Revoke(membership.RevokeNodeKeyEntry(m.NodeKey, reason)); err != nil {
		return m, err
	}
	o.log.Info("member revoked", "node", m.NodeID, "name", m.Name, "reason", reason)
	return m, nil
}

// overlayView is a snapshot of the overlay for the API, panel and metrics.
type overlayView struct {
	// Running is true while the engine runs; the fields below State and
	// Problem are set only then.
	Running bool
	// State says what the component does, for people: "running",
	// "joining community ...", "not a member: ...", "disabled", ...
	State string
	// Problem says what is wrong and what to do; empty if nothing.
	Problem string
	// NotMember is true when the box has no usable membership and is not
	// joining: the panel then says how to become a member.
	NotMember bool

	Community   string
	CommunityID string
	IPv4Range   netip.Prefix
	IPv6Range   netip.Prefix
	// IPv4 and IPv6 are this box's overlay addresses.
	IPv4, IPv6 netip.Prefix
	// Admin is true on boxes that hold the community root key.
	Admin bool
	// Members are every member, this box included, by name.
	Members []memberView
	Engine  overlay.Stats
	Roster  roster.Stats
}

// memberView is a member with the engine's live state of its path.
type memberView struct {
	roster.MemberInfo
	// Live is the engine's state of the peer; zero for this box and for a
	// member the engine does not know yet (HasLive false).
	Live    overlay.PeerStatus
	HasLive bool
}

// zonePart returns the members' names and overlay addresses for the
// community zone; nil while the overlay does not run.
func (o *overlayService) zonePart() ([]dnsproxy.Host, []dnsproxy.Service) {
	o.mu.Lock()
	run := o.running
	o.mu.Unlock()
	if run == nil {
		return nil, nil
	}
	var ms []zoneMember
	for _, m := range run.roster.Members() {
		ms = append(ms, zoneMember{name: m.Name, nodeID: m.NodeID, ipv4: m.IPv4, ipv6: m.IPv6})
	}
	return zoneHostsOf(ms), nil
}

// memberEndpoints returns the underlay endpoints of every member by node
// ID, as their latest roster records report them; nil while the overlay
// does not run.
func (o *overlayService) memberEndpoints() map[string][]netip.AddrPort {
	o.mu.Lock()
	run := o.running
	o.mu.Unlock()
	if run == nil {
		return nil
	}
	out := make(map[string][]netip.AddrPort)
	for _, m := range run.roster.Members() {
		out[m.NodeID] = m.Endpoints
	}
	return out
}
