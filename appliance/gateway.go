package appliance

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudbox/cloudbox/dnsproxy"
	"github.com/cloudbox/cloudbox/overlay/roster"
	"github.com/cloudbox/cloudbox/services"
	"github.com/cloudbox/cloudbox/services/proxy"
)

// Defaults of GatewayConfig.
const (
	// DefaultGatewayHTTPAddr is where a gateway serves the HTTP proxy
	// (with CONNECT), the port Squid made customary.
	DefaultGatewayHTTPAddr = ":3128"
	// DefaultGatewaySOCKSAddr is where a gateway serves SOCKS5.
	DefaultGatewaySOCKSAddr = ":1080"
	// DefaultGatewayLocalAddr is the local proxy port every box offers: it
	// forwards each connection to the best gateway of the community.
	DefaultGatewayLocalAddr = ":3129"
	// DefaultCredentialTTL is how long a member's proxy credential works.
	DefaultCredentialTTL = 30 * 24 * time.Hour
	// DefaultGatewayProbeEvery is how often a gateway checks its uplink.
	DefaultGatewayProbeEvery = 30 * time.Second
)

// DefaultGatewayProbes are the TCP addresses a gateway dials to check its
// uplink (public DNS resolvers' HTTPS ports): one that answers is enough.
var DefaultGatewayProbes = []string{"1.1.1.1:443", "9.9.9.9:443"}

// The catalog types of a gateway: the HTTP proxy under a type of its own
// (a plain _http._tcp would show up as a web site) and SOCKS5 under the
// registered _socks._tcp.
const (
	gatewayHTTPType  = "_cb-gateway._tcp"
	gatewaySOCKSType = "_socks._tcp"
)

const (
	// gatewayDialTimeout bounds a dial of the local port to one gateway;
	// after it the next gateway is tried.
	gatewayDialTimeout = 2 * time.Second
	// gatewayDownFor is how long a gateway that failed a dial goes to the
	// end of the local port's list.
	gatewayDownFor = 30 * time.Second
	// gatewayOrderTTL is how long the computed order of the gateways is
	// reused by the local port.
	gatewayOrderTTL = time.Second
	// maxLocalConns bounds the local port's open connections.
	maxLocalConns = 4096
	// gatewayRetry is the pause before a failed accept is retried.
	gatewayRetry = 100 * time.Millisecond
	// gatewayProbeTimeout bounds one dial of an uplink probe.
	gatewayProbeTimeout = 5 * time.Second
)

// Uplink states of a gateway (gatewayService.uplink).
const (
	uplinkUnknown int32 = iota
	uplinkUp
	uplinkDown
)

// GatewayConfig configures the shared Internet gateway of Run (package
// services/proxy) and the local proxy port. The zero value offers no
// gateway (sharing the uplink is the owner's choice) and no local port;
// cloudboxd opens the local port on DefaultGatewayLocalAddr.
type GatewayConfig struct {
	// Enabled offers this box's uplink to the community: the HTTP proxy
	// and SOCKS5, published in the catalog. Members' credentials (issued
	// by their boxes) are checked with the roster's node keys.
	Enabled bool
	// HTTPAddr is the TCP address of the HTTP proxy; zero means
	// DefaultGatewayHTTPAddr. Clients from outside the LAN and the
	// community are refused at accept.
	HTTPAddr string
	// SOCKSAddr is the TCP address of SOCKS5; zero means
	// DefaultGatewaySOCKSAddr.
	SOCKSAddr string
	// NoSOCKS leaves SOCKS5 off.
	NoSOCKS bool
	// Federation is whose users the gateway serves; zero means the whole
	// community. FederatedBoxes are the node IDs of proxy.FederateList.
	Federation     proxy.Federation
	FederatedBoxes []string
	// UserRate (bytes per second and direction), UserMaxConns and
	// UserDailyQuota (bytes per day) limit each user, TotalRate everyone
	// together; zero is unlimited. See proxy.Config.
	UserRate       int64
	UserMaxConns   int
	UserDailyQuota int64
	TotalRate      int64
	// CredentialTTL is how long the credentials this box issues to its
	// members work; zero means DefaultCredentialTTL.
	CredentialTTL time.Duration
	// LocalAddr is the TCP address of the local proxy port, which relays
	// each connection to the best gateway of the community (trying the
	// next when one does not answer); e.g. DefaultGatewayLocalAddr. Zero
	// means no local port.
	LocalAddr string
	// LogFields are the fields of the access log (proxy.AccessLogFields),
	// nil for none: no access log is kept by default. The files are
	// <state>/gateway/access-YYYY-MM-DD.log.
	LogFields []string
	// LogDays is how many days of access log are kept; zero means
	// proxy.DefaultAccessLogDays.
	LogDays int
	// Probes are the TCP addresses dialled to check the uplink; zero
	// means DefaultGatewayProbes. The result is published in the catalog
	// ("up=1" or "up=0"), and gateways without uplink are used last.
	Probes []string
	// ProbeEvery is how often the uplink is checked; zero means
	// DefaultGatewayProbeEvery.
	ProbeEvery time.Duration
}

func (c GatewayConfig) withDefaults() GatewayConfig {
	c.HTTPAddr = cmp.Or(c.HTTPAddr, DefaultGatewayHTTPAddr)
	c.SOCKSAddr = cmp.Or(c.SOCKSAddr, DefaultGatewaySOCKSAddr)
	if c.CredentialTTL <= 0 {
		c.CredentialTTL = DefaultCredentialTTL
	}
	if len(c.Probes) == 0 {
		c.Probes = DefaultGatewayProbes
	}
	if c.ProbeEvery <= 0 {
		c.ProbeEvery = DefaultGatewayProbeEvery
	}
	return c
}

// gatewayDeps is what the gateway component reads from the rest of the
// daemon; functions so that tests can supply their own.
type gatewayDeps struct {
	nodeID, nodeName string
	key              [32]byte // node private key, signs credentials
	// community returns the community's prefixes, nil before the box
	// knows its community; changed signals when it may have changed.
	community func() []netip.Prefix
	changed   func() <-chan struct{}
	// keys returns a member's node key by node ID (the roster).
	keys func(nodeID string) ([32]byte, bool)
	// records returns the catalog's services of a type; nil while the
	// catalog does not run.
	records func(typ string) []services.Record
	// rtts returns the overlay's round-trip times by node ID.
	rtts func() map[string]time.Duration
	// wpadAddrs returns the addresses "wpad" in the community zone
	// points to (this box's), and whether a member already has the name.
	wpadAddrs func() ([]netip.Addr, bool)
	// domain is the community zone, for the PAC file.
	domain string
	// logDir is where the access log goes when the owner keeps one.
	logDir string
}

// gatewayService is the gateway component: the proxy when the owner
// shares the uplink, the local port that forwards to the best gateway,
// the gateways' order for the PAC file and the API.
type gatewayService struct {
	// Immutable after newGateway.
	cfg    GatewayConfig
	deps   gatewayDeps
	log    *slog.Logger
	now    func() time.Time
	dialer net.Dialer

	// Local port counters.
	forwarded    atomic.Uint64 // connections relayed to a gateway
	dialFailures atomic.Uint64
	failovers    atomic.Uint64 // connections relayed to another than the first choice
	refused      atomic.Uint64 // source not allowed, too many, or no gateway
	active       atomic.Int64
	bytes        [2]atomic.Uint64 // client to gateway, gateway to client
	uplink       atomic.Int32     // uplinkUnknown, uplinkUp or uplinkDown

	// mu guards the following.
	mu        sync.Mutex
	px        *proxy.Proxy     // nil while the gateway does not serve
	accessLog *proxy.AccessLog // nil without
	state     string
	problem   string
	httpPort  uint16
	socksPort uint16
	localAddr net.Addr // nil while the local port is closed
	down      map[netip.AddrPort]time.Time
	order     []gatewayEntry
	orderAt   time.Time
	lastUsed  string // box name of the gateway of the last relayed connection
	conns     map[net.Conn]struct{}
}

func newGateway(cfg GatewayConfig, deps gatewayDeps, logger *slog.Logger, now func() time.Time) *gatewayService {
	g := &gatewayService{cfg: cfg.withDefaults(), deps: deps, log: logger.With("component", "gateway"), now: now,
		down: make(map[netip.AddrPort]time.Time), conns: make(map[net.Conn]struct{})}
	g.dialer.Timeout = gatewayDialTimeout
	g.state = "off (the owner has not shared the uplink)"
	if g.cfg.Enabled {
		g.state = "waiting for the overlay"
	}
	return g
}

// openGateway wires the gateway component to the overlay and catalog.
func openGateway(cfg GatewayConfig, nodeID, nodeName, stateDir string, ov *overlayService, domain string, logger *slog.Logger, now func() time.Time) *gatewayService {
	return newGateway(cfg, gatewayDeps{
		nodeID: nodeID, nodeName: nodeName, key: ov.key,
		community: ov.communityPrefixes, changed: ov.changed.Wait, keys: ov.memberKey,
		records: func(typ string) []services.Record {
			cat := ov.catalog.current()
			if cat == nil {
				return nil
			}
			return cat.Services(services.Filter{Type: typ})
		},
		rtts:      ov.rtts,
		wpadAddrs: ov.wpadAddrs,
		domain:    domain,
		logDir:    filepath.Join(stateDir, "gateway"),
	}, logger, now)
}

// memberKey returns the node key of the member nodeID; false while the
// overlay does not run.
func (o *overlayService) memberKey(nodeID string) ([32]byte, bool) {
	o.mu.Lock()
	run := o.running
	o.mu.Unlock()
	if run == nil {
		return [32]byte{}, false
	}
	for _, m := range run.roster.Members() {
		if m.NodeID == nodeID {
			return m.NodeKey, true
		}
	}
	return [32]byte{}, false
}

// rtts returns the engine's last round-trip time to each member with a
// confirmed path, by node ID.
func (o *overlayService) rtts() map[string]time.Duration {
	o.mu.Lock()
	run := o.running
	o.mu.Unlock()
	if run == nil {
		return nil
	}
	byKey := make(map[[32]byte]time.Duration)
	for _, p := range run.engine.Peers() {
		if p.RTT > 0 {
			byKey[p.NodeKey] = p.RTT
		}
	}
	out := make(map[string]time.Duration)
	for _, m := range run.roster.Members() {
		if d, ok := byKey[m.NodeKey]; ok {
			out[m.NodeID] = d
		}
	}
	return out
}

// wpadAddrs returns this box's addresses for the "wpad" name: the LAN
// addresses first, then the overlay's; taken is true when a member's name
// is "wpad" already.
func (o *overlayService) wpadAddrs() ([]netip.Addr, bool) {
	o.mu.Lock()
	run := o.running
	o.mu.Unlock()
	if run == nil {
		return nil, false
	}
	taken := slices.ContainsFunc(run.roster.Members(), func(m roster.MemberInfo) bool { return hostLabel(m.Name) == "wpad" })
	var out []netip.Addr
	community := o.communityPrefixes()
	for _, p := range upAddrPrefixes() {
		if ip := p.Addr().Unmap(); !slices.ContainsFunc(community, func(c netip.Prefix) bool { return c.Contains(ip) }) {
			out = append(out, ip)
		}
	}
	return append(out, run.engine.IPv4().Addr(), run.engine.IPv6().Addr()), taken
}

// run serves the local port and, when enabled, the gateway until ctx is
// done. It returns an error when a port cannot be opened.
func (g *gatewayService) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	if g.cfg.LocalAddr != "" {
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", g.cfg.LocalAddr)
		if err != nil {
			err = fmt.Errorf("listening for the local proxy port: %w (--gateway-local picks another address, or off)", err)
			g.setProblem("failed", err.Error())
			return err
		}
		g.mu.Lock()
		g.localAddr = ln.Addr()
		g.mu.Unlock()
		g.log.Info("local proxy port listening", "addr", ln.Addr().String())
		wg.Go(func() { g.serveLocal(ctx, ln) })
	}
	if !g.cfg.Enabled {
		<-ctx.Done()
		return nil
	}
	wg.Go(func() { g.probeLoop(ctx) })
	return g.runProxy(ctx)
}

// probeLoop checks the uplink at once and every ProbeEvery until ctx is
// done.
func (g *gatewayService) probeLoop(ctx context.Context) {
	t := time.NewTicker(g.cfg.ProbeEvery)
	defer t.Stop()
	for {
		state := uplinkDown
		if g.probe(ctx) {
			state = uplinkUp
		}
		if ctx.Err() != nil {
			return
		}
		if old := g.uplink.Swap(state); old != state {
			g.log.Info("uplink checked", "up", state == uplinkUp, "probes", strings.Join(g.cfg.Probes, ","))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probe reports whether one of the probes answers a TCP dial.
func (g *gatewayService) probe(ctx context.Context) bool {
	d := net.Dialer{Timeout: gatewayProbeTimeout}
	for _, addr := range g.cfg.Probes {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return true
		}
	}
	return false
}

// runProxy waits until the box knows its community, then runs the proxy.
func (g *gatewayService) runProxy(ctx context.Context) error {
	var community []netip.Prefix
	for {
		changed := g.deps.changed()
		if community = g.deps.community(); len(community) > 0 {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
	cfg := proxy.Config{
		Logger: g.log,
		Keys:   g.deps.keys,
		// The roster keeps offline members: a box it drops was revoked.
		KeysAuthoritative: true,
		NodeID:            g.deps.nodeID,
		Federation:        g.cfg.Federation,
		FederatedBoxes:    g.cfg.FederatedBoxes,
		Community:         community,
		HTTPAddrs:         []string{g.cfg.HTTPAddr},
		UserRate:          g.cfg.UserRate,
		UserMaxConns:      g.cfg.UserMaxConns,
		UserDailyQuota:    g.cfg.UserDailyQuota,
		TotalRate:         g.cfg.TotalRate,
	}
	if !g.cfg.NoSOCKS {
		cfg.SOCKSAddrs = []string{g.cfg.SOCKSAddr}
	}
	if len(g.cfg.LogFields) > 0 {
		al, err := proxy.OpenAccessLog(proxy.AccessLogConfig{Dir: g.deps.logDir, Fields: g.cfg.LogFields,
			Days: g.cfg.LogDays, Now: g.now, Logger: g.log})
		if err != nil {
			err = fmt.Errorf("opening the gateway's access log: %w", err)
			g.setProblem("failed", err.Error())
			return err
		}
		ctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { al.Run(ctx) })
		defer wg.Wait()
		defer cancel()
		cfg.AccessLog = al.Log
		g.mu.Lock()
		g.accessLog = al
		g.mu.Unlock()
	}
	px, err := proxy.New(cfg)
	if err != nil {
		err = fmt.Errorf("configuring the gateway: %w", err)
		g.setProblem("failed", err.Error())
		return err
	}
	done := make(chan error, 1)
	go func() { done <- px.Run(ctx) }()
	select {
	case err := <-done:
		err = fmt.Errorf("running the gateway: %w (--gateway-http and --gateway-socks pick other addresses)", err)
		g.setProblem("failed", err.Error())
		return err
	case <-px.Ready():
	}
	httpAddrs, socksAddrs := px.Addrs()
	g.mu.Lock()
	g.px, g.state, g.problem = px, "serving", ""
	g.httpPort = addrPort(httpAddrs)
	g.socksPort = addrPort(socksAddrs)
	g.mu.Unlock()
	err = <-done
	g.mu.Lock()
	g.px, g.state = nil, "stopped"
	g.mu.Unlock()
	if err != nil {
		return fmt.Errorf("running the gateway: %w", err)
	}
	return nil
}

// addrPort returns the port of the first address, 0 for none.
func addrPort(addrs []net.Addr) uint16 {
	if len(addrs) == 0 {
		return 0
	}
	if ta, ok := addrs[0].(*net.TCPAddr); ok {
		return uint16(ta.Port)
	}
	return 0
}

func (g *gatewayService) setProblem(state, problem string) {
	g.mu.Lock()
	g.state, g.problem = state, problem
	g.mu.Unlock()
}

// current returns the running proxy, or nil.
func (g *gatewayService) current() *proxy.Proxy {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.px
}

// builtinServices returns the catalog entries of the gateway while it
// serves: the HTTP proxy and SOCKS5, with its load and federation.
func (g *gatewayService) builtinServices() []services.Service {
	g.mu.Lock()
	px, httpPort, socksPort := g.px, g.httpPort, g.socksPort
	g.mu.Unlock()
	if px == nil {
		return nil
	}
	suffix := " (" + g.deps.nodeName + ")"
	txt := map[string]string{"load": loadLevel(px.Stats().ConnsActive), "fed": g.cfg.Federation.String()}
	switch g.uplink.Load() {
	case uplinkUp:
		txt["up"] = "1"
	case uplinkDown:
		txt["up"] = "0"
	}
	out := []services.Service{{Instance: cutUTF8("gateway", 63-len(suffix)) + suffix, Type: gatewayHTTPType, Port: httpPort,
		Description: "Shared Internet gateway: HTTP proxy with CONNECT, for members", TXT: txt}}
	if socksPort != 0 {
		out = append(out, services.Service{Instance: cutUTF8("gateway", 63-len(suffix)) + suffix, Type: gatewaySOCKSType, Port: socksPort,
			Description: "Shared Internet gateway: SOCKS5, for members", TXT: txt})
	}
	return out
}

// loadLevel turns a number of open connections into a coarse level, so
// that the catalog entry changes (and is gossiped) rarely.
func loadLevel(conns int64) string {
	switch {
	case conns == 0:
		return "idle"
	case conns < 64:
		return "low"
	case conns < 1024:
		return "busy"
	}
	return "high"
}

// gatewayEntry is one gateway of the community, as GET /api/v1/proxy and
// the panel show it.
type gatewayEntry struct {
	Box   string `json:"box"`
	BoxID string `json:"box_id"`
	// Addr is the HTTP proxy's address over the overlay, SOCKS SOCKS5's
	// ("" without).
	Addr    string `json:"addr"`
	SOCKS   string `json:"socks,omitempty"`
	Healthy bool   `json:"healthy"`
	// Uplink is false when the gateway published that its own Internet
	// connection does not answer (TXT "up=0").
	Uplink bool     `json:"uplink"`
	Self   bool     `json:"self"`
	RTTMs  *float64 `json:"rtt_ms,omitempty"`
	Load   string   `json:"load,omitempty"`
	// Down is true when a dial from this box's local port failed in the
	// last gatewayDownFor.
	Down bool `json:"down"`

	ap  netip.AddrPort
	rtt time.Duration
}

// orderGateways returns the gateways of http (catalog records of
// gatewayHTTPType) with the SOCKS5 ports of socks, best first: healthy
// before unhealthy, with uplink before without ("up=0"), not down before
// down, this box first, then by overlay
// RTT (known before unknown), then by name.
func orderGateways(http, socks []services.Record, selfID string, rtts map[string]time.Duration, down func(netip.AddrPort) bool) []gatewayEntry {
	socksOf := make(map[string]services.Record)
	for _, r := range socks {
		socksOf[r.OwnerID] = r
	}
	out := make([]gatewayEntry, 0, len(http))
	for _, r := range http {
		ap := netip.AddrPortFrom(serviceAddr(r), r.Port)
		e := gatewayEntry{Box: r.OwnerName, BoxID: r.OwnerID, Addr: ap.String(), Healthy: r.Healthy,
			Uplink: r.TXT["up"] != "0", Self: r.OwnerID == selfID, Load: r.TXT["load"], ap: ap}
		if s, ok := socksOf[r.OwnerID]; ok {
			e.SOCKS = netip.AddrPortFrom(serviceAddr(s), s.Port).String()
		}
		if d, ok := rtts[r.OwnerID]; ok && d > 0 {
			e.rtt = d
			ms := float64(d) / float64(time.Millisecond)
			e.RTTMs = &ms
		}
		e.Down = down != nil && down(ap)
		out = append(out, e)
	}
	order := func(a, b gatewayEntry) int {
		if c := boolFirst(a.Healthy, b.Healthy); c != 0 {
			return c
		}
		if c := boolFirst(a.Uplink, b.Uplink); c != 0 {
			return c
		}
		if c := boolFirst(!a.Down, !b.Down); c != 0 {
			return c
		}
		if c := boolFirst(a.Self, b.Self); c != 0 {
			return c
		}
		if c := boolFirst(a.rtt > 0, b.rtt > 0); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.rtt, b.rtt), cmp.Compare(a.Box, b.Box), cmp.Compare(a.BoxID, b.BoxID))
	}
	sort.SliceStable(out, func(i, j int) bool { return order(out[i], out[j]) < 0 })
	return out
}

// boolFirst orders true before false.
func boolFirst(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	}
	return 1
}

// gateways returns the community's gateways, best first (see
// orderGateways), computed at most every gatewayOrderTTL.
func (g *gatewayService) gateways() []gatewayEntry {
	now := g.now()
	g.mu.Lock()
	if g.order != nil && now.Sub(g.orderAt) < gatewayOrderTTL && now.After(g.orderAt) {
		defer g.mu.Unlock()
		return g.order
	}
	g.mu.Unlock()
	if g.deps.records == nil {
		return nil
	}
	httpRecs, socksRecs := g.deps.records(gatewayHTTPType), g.deps.records(gatewaySOCKSType)
	var rtts map[string]time.Duration
	if g.deps.rtts != nil {
		rtts = g.deps.rtts()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	order := orderGateways(httpRecs, socksRecs, g.deps.nodeID, rtts, func(ap netip.AddrPort) bool {
		t, ok := g.down[ap]
		return ok && now.Sub(t) < gatewayDownFor
	})
	g.order, g.orderAt = order, now
	return order
}

// markDown notes that a dial to ap failed, or (ok) that it worked.
func (g *gatewayService) mark(ap netip.AddrPort, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, wasDown := g.down[ap]
	if ok {
		delete(g.down, ap)
	} else {
		g.down[ap] = g.now()
	}
	if wasDown == ok {
		g.order = nil // recompute at once
	}
}

// issue returns a new credential for user, signed by this box.
func (g *gatewayService) issue(user string) (string, time.Time, error) {
	exp := g.now().Add(g.cfg.CredentialTTL).Truncate(time.Second)
	tok, err := proxy.IssueCredential(g.deps.key, g.deps.nodeID, user, exp)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issuing a proxy credential for %q: %w", user, err)
	}
	return tok, exp, nil
}

// pac renders the proxy auto-config file for a client that reached this
// box at local: this box's own gateway first (if it serves and its uplink
// answers), then its local port (which follows the best gateway), then the
// other healthy gateways over the overlay, nearest first, then the healthy
// gateways whose uplink does not answer, then DIRECT.
func (g *gatewayService) pac(local netip.Addr) ([]byte, error) {
	c := proxy.PAC{DirectNets: append(slices.Clone(g.deps.community()), localPrefixes()...)}
	if d := strings.Trim(g.deps.domain, "."); d != "" {
		c.DirectDomains = []string{d}
	}
	order := g.gateways()
	g.mu.Lock()
	px, httpPort, localAddr := g.px, g.httpPort, g.localAddr
	g.mu.Unlock()
	local = local.Unmap()
	here := local.IsValid() && !local.IsUnspecified()
	var self string
	if here && px != nil && httpPort != 0 {
		self = netip.AddrPortFrom(local, httpPort).String()
	}
	selfUp := g.uplink.Load() != uplinkDown
	if self != "" && selfUp {
		c.Gateways = append(c.Gateways, self)
	}
	if here && localAddr != nil && slices.ContainsFunc(order, func(e gatewayEntry) bool { return e.Healthy }) {
		if p := addrPort([]net.Addr{localAddr}); p != 0 {
			c.Gateways = append(c.Gateways, netip.AddrPortFrom(local, p).String())
		}
	}
	for _, e := range order {
		if e.Healthy && e.Uplink && !e.Self {
			c.Gateways = append(c.Gateways, e.Addr)
		}
	}
	if self != "" && !selfUp {
		c.Gateways = append(c.Gateways, self)
	}
	for _, e := range order {
		if e.Healthy && !e.Uplink && !e.Self {
			c.Gateways = append(c.Gateways, e.Addr)
		}
	}
	return proxy.RenderPAC(c)
}

// zonePart puts "wpad" in the community zone, pointing at this box, so
// that WPAD finds the PAC file (http://wpad.<zone>/wpad.dat).
func (g *gatewayService) zonePart() ([]dnsproxy.Host, []dnsproxy.Service) {
	if g.deps.wpadAddrs == nil {
		return nil, nil
	}
	addrs, taken := g.deps.wpadAddrs()
	if taken || len(addrs) == 0 {
		return nil, nil
	}
	return []dnsproxy.Host{{Name: "wpad", Addrs: addrs}}, nil
}

// serveLocal accepts on the local port until ctx is done and relays each
// connection to the best gateway; it returns after every relay ended.
func (g *gatewayService) serveLocal(ctx context.Context, ln net.Listener) {
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		g.mu.Lock()
		for c := range g.conns {
			c.Close()
		}
		g.mu.Unlock()
	})
	defer func() {
		stop()
		ln.Close()
		wg.Wait()
		g.mu.Lock()
		g.localAddr = nil
		g.mu.Unlock()
	}()
	sources := append(slices.Clone(proxy.DefaultSources), g.deps.community()...)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			g.log.Warn("local proxy port accept failed", "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(gatewayRetry):
			}
			continue
		}
		if !sourceIn(c.RemoteAddr(), sources, g.deps.community()) || g.active.Load() >= maxLocalConns || !g.track(c) {
			g.refused.Add(1)
			c.Close()
			continue
		}
		g.active.Add(1)
		wg.Go(func() {
			defer g.active.Add(-1)
			defer g.untrack(c)
			g.forward(ctx, c)
		})
	}
}

// sourceIn reports whether a client at addr is in one of the prefix lists.
func sourceIn(addr net.Addr, lists ...[]netip.Prefix) bool {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, l := range lists {
		if slices.ContainsFunc(l, func(p netip.Prefix) bool { return p.Contains(ip) }) {
			return true
		}
	}
	return false
}

// track adds c to the open connections, which ctx's end closes; false
// after that.
func (g *gatewayService) track(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conns == nil {
		return false
	}
	g.conns[c] = struct{}{}
	return true
}

func (g *gatewayService) untrack(c net.Conn) {
	c.Close()
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
}

// forward relays the client c to the first gateway that answers, in the
// order of gateways; without one it answers 502 (the client speaks HTTP
// to a proxy).
func (g *gatewayService) forward(ctx context.Context, c net.Conn) {
	tried := 0
	for _, e := range g.gateways() {
		up, err := g.dialer.DialContext(ctx, "tcp", e.ap.String())
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			g.dialFailures.Add(1)
			g.mark(e.ap, false)
			g.log.Info("gateway did not answer, trying the next", "box", e.Box, "addr", e.Addr, "error", err)
			tried++
			continue
		}
		g.mark(e.ap, true)
		g.forwarded.Add(1)
		if tried > 0 {
			g.failovers.Add(1)
		}
		g.mu.Lock()
		g.lastUsed = e.Box
		g.mu.Unlock()
		if !g.track(up) {
			up.Close()
			return
		}
		defer g.untrack(up)
		g.relay(c, up)
		return
	}
	g.refused.Add(1)
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	msg := "no gateway of the community answers; try again later\n"
	io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: "+
		strconv.Itoa(len(msg))+"\r\n\r\n"+msg)
}

// relay copies between the client and the gateway until the gateway's
// side ends; a client that finishes sending half-closes the gateway's.
func (g *gatewayService) relay(c, up net.Conn) {
	var wg sync.WaitGroup
	wg.Go(func() {
		n, _ := io.Copy(up, c)
		g.bytes[0].Add(uint64(n))
		closeWrite(up)
	})
	n, _ := io.Copy(c, up)
	g.bytes[1].Add(uint64(n))
	c.Close()
	up.Close()
	wg.Wait()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// status is the "gateway" component of the status.
func (g *gatewayService) status(context.Context) ComponentStatus {
	v := g.view()
	if v.Problem != "" {
		return ComponentStatus{OK: false, Error: v.Problem, Detail: map[string]string{"state": v.State}}
	}
	healthy := 0
	for _, e := range v.Gateways {
		if e.Healthy {
			healthy++
		}
	}
	d := map[string]string{"state": v.State, "gateways": strconv.Itoa(healthy)}
	if v.Local.Addr != "" {
		d["local"] = v.Local.Addr
	}
	return ComponentStatus{OK: true, Detail: d}
}

// GatewayInfo is the body of GET /api/v1/proxy.
type GatewayInfo struct {
	// Enabled is whether this box shares its uplink; Running whether its
	// gateway serves now.
	Enabled    bool   `json:"enabled"`
	Running    bool   `json:"running"`
	State      string `json:"state"`
	Problem    string `json:"problem,omitempty"`
	HTTPPort   uint16 `json:"http_port,omitempty"`
	SOCKSPort  uint16 `json:"socks_port,omitempty"`
	Federation string `json:"federation"`
	// Uplink is "up", "down" or "unknown" (not checked yet, or no
	// gateway): whether this gateway's probes answer.
	Uplink string `json:"uplink"`
	// AccessLog are the fields of the access log, empty when none is
	// kept; AccessLogDropped counts lines over the daily bound.
	AccessLog        []string     `json:"access_log"`
	AccessLogDropped uint64       `json:"access_log_dropped"`
	Limits           GatewayLimit `json:"limits"`
	// Stats are this box's gateway's counters and users; nil when it
	// does not serve.
	Stats *proxy.Stats `json:"stats,omitempty"`
	// Local is the local proxy port.
	Local LocalPortInfo `json:"local"`
	// Gateways are the community's, best first.
	Gateways []gatewayEntry `json:"gateways"`
}

// GatewayLimit is the fair-use configuration; zero is unlimited.
type GatewayLimit struct {
	UserRate       int64 `json:"user_rate"`
	UserMaxConns   int   `json:"user_max_conns"`
	UserDailyQuota int64 `json:"user_daily_quota"`
	TotalRate      int64 `json:"total_rate"`
}

// LocalPortInfo describes the local proxy port.
type LocalPortInfo struct {
	Enabled bool   `json:"enabled"`
	Addr    string `json:"addr,omitempty"`
	// Uses is the gateway new connections go to first; LastUsed the one
	// the last connection went to.
	Uses         string `json:"uses,omitempty"`
	LastUsed     string `json:"last_used,omitempty"`
	Active       int64  `json:"active"`
	Forwarded    uint64 `json:"forwarded"`
	DialFailures uint64 `json:"dial_failures"`
	Failovers    uint64 `json:"failovers"`
	Refused      uint64 `json:"refused"`
}

// view returns what the API and the panel show.
func (g *gatewayService) view() GatewayInfo {
	order := g.gateways()
	g.mu.Lock()
	v := GatewayInfo{Enabled: g.cfg.Enabled, Running: g.px != nil, State: g.state, Problem: g.problem,
		HTTPPort: g.httpPort, SOCKSPort: g.socksPort, Federation: g.cfg.Federation.String(),
		Limits: GatewayLimit{UserRate: g.cfg.UserRate, UserMaxConns: g.cfg.UserMaxConns,
			UserDailyQuota: g.cfg.UserDailyQuota, TotalRate: g.cfg.TotalRate},
		Local:    LocalPortInfo{Enabled: g.cfg.LocalAddr != "", LastUsed: g.lastUsed},
		Gateways: order,
	}
	px, localAddr, al := g.px, g.localAddr, g.accessLog
	g.mu.Unlock()
	v.Uplink = [...]string{uplinkUnknown: "unknown", uplinkUp: "up", uplinkDown: "down"}[g.uplink.Load()]
	v.AccessLog = append([]string{}, g.cfg.LogFields...)
	if al != nil {
		v.AccessLogDropped = al.Dropped()
	}
	if px != nil {
		s := px.Stats()
		v.Stats = &s
	}
	if localAddr != nil {
		v.Local.Addr = localAddr.String()
	}
	if len(order) > 0 && order[0].Healthy {
		v.Local.Uses = order[0].Box
	}
	v.Local.Active, v.Local.Forwarded = g.active.Load(), g.forwarded.Load()
	v.Local.DialFailures, v.Local.Failovers, v.Local.Refused = g.dialFailures.Load(), g.failovers.Load(), g.refused.Load()
	if v.Gateways == nil {
		v.Gateways = []gatewayEntry{}
	}
	return v
}
