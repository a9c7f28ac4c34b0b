package overlay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudbox/cloudbox/overlay/internal/pktbuf"
	"github.com/cloudbox/cloudbox/overlay/netcfg"
	"github.com/cloudbox/cloudbox/overlay/transport"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

const (
	// DefaultListenPort is the UDP port used when Config.ListenPort is 0.
	DefaultListenPort = 51820
	// DefaultInterfaceName is the TUN interface used when
	// Config.InterfaceName is empty.
	DefaultInterfaceName = "cb0"
	// DefaultMTU is the overlay MTU used when Config.MTU is 0; see the
	// package documentation for the arithmetic.
	DefaultMTU = 1380
	// MinMTU is the smallest MTU accepted: IPv6's minimum link MTU.
	MinMTU = 1280
)

// Config configures an Engine. The zero value of every field but PrivateKey
// works.
type Config struct {
	// Logger receives lifecycle and path events. Nil discards.
	Logger *slog.Logger

	// PrivateKey is the box's X25519 node key: its WireGuard static key and
	// its disco key. Required.
	PrivateKey [32]byte

	// ListenPort is the underlay UDP port (IPv4 and IPv6). 0 means
	// DefaultListenPort.
	ListenPort uint16

	// InterfaceName names the TUN interface. Empty means
	// DefaultInterfaceName.
	InterfaceName string

	// IPv4 is this box's overlay IPv4 address with the community prefix
	// length, e.g. 198.18.0.7/15. The zero Prefix means no IPv4 on the
	// overlay.
	IPv4 netip.Prefix

	// IPv6 is this box's overlay IPv6 address with the community prefix
	// length. The zero Prefix means AddrFromKey(DefaultIPv6Prefix, public
	// key)/48. A prefix whose address is the prefix itself (host bits zero,
	// e.g. fd00:1::/48) means AddrFromKey of that prefix.
	IPv6 netip.Prefix

	// CommunityRoutes are routed onto the interface in addition to the
	// prefixes of IPv4 and IPv6 (which the kernel routes there already),
	// for community ranges beyond this box's own prefix. Nil adds none.
	CommunityRoutes []netip.Prefix

	// MTU of the interface. 0 means DefaultMTU. Must be at least MinMTU.
	MTU int

	// LocalAddrs returns the underlay addresses offered to peers for
	// direct connections (hole punching). Nil means the addresses of all
	// interfaces that are up, except loopback, link-local and the overlay's
	// own.
	LocalAddrs func() []netip.Addr

	// LANInterval is how often the box announces its node key on its LANs
	// so that peers there find its endpoint without the roster (see
	// transport.RunLAN). 0 means transport.DefaultLANInterval; negative
	// turns LAN discovery off.
	LANInterval time.Duration

	// LANPort is the UDP port of LAN discovery, the same on every box. 0
	// means transport.DefaultLANPort.
	LANPort uint16

	// PathTiming tunes path discovery; zero fields take
	// transport.DefaultTiming.
	PathTiming transport.Timing

	// Inflight bounds the data packets WireGuard holds in each direction,
	// which bounds the Engine's memory under load (each takes a 64 KiB
	// buffer; see transport.Gate). 0 means transport.DefaultInflight;
	// negative means no bound.
	Inflight int

	// BatchSize is the number of packets WireGuard handles as a batch; the
	// TUN and the UDP sockets still move up to 128 at once (GSO/GRO). Each
	// packet of a batch pins a 64 KiB buffer. 0 means
	// transport.DefaultBatchSize.
	BatchSize int

	// MemoryTrim is how often the Engine checks whether a burst of traffic
	// has ended; when one has, it runs the garbage collector and returns
	// free memory to the operating system (see trimMemory: the packet
	// buffers of a burst stay pooled otherwise). It affects the whole
	// process. 0 means DefaultMemoryTrim; negative never trims.
	MemoryTrim time.Duration
}

// Peer is a member of the community as the overlay needs it.
type Peer struct {
	// NodeKey is the member's X25519 public key.
	NodeKey [32]byte
	// Name is shown in status and logs.
	Name string
	// IPv4 is the member's overlay IPv4 address; the zero Addr means none.
	IPv4 netip.Addr
	// IPv6 is the member's overlay IPv6 address; the zero Addr means
	// AddrFromKey of this box's IPv6 prefix and NodeKey.
	IPv6 netip.Addr
	// Endpoints are candidate underlay addresses of the member. More are
	// learned from disco; none at all means relay-only until the member's
	// own pings arrive.
	Endpoints []netip.AddrPort
}

// PeerStatus is the state of one peer.
type PeerStatus struct {
	Name    string
	NodeKey [32]byte
	IPv4    netip.Addr
	IPv6    netip.Addr
	// Endpoint describes the current path: "direct 192.0.2.2:51820",
	// "relay via r1", either followed by " (unconfirmed)" while no pong has
	// confirmed it, or "none".
	Endpoint string
	// Direct is true when packets go straight to the peer.
	Direct bool
	// Via names the relay when packets are relayed: the first one, which
	// may pass them on through relays of its own.
	Via string
	// RTT is the last round-trip time measured by disco over the path.
	RTT time.Duration
	// RxBytes and TxBytes count WireGuard bytes to and from the peer.
	RxBytes, TxBytes uint64
	// LastHandshake is the time of the last completed WireGuard handshake;
	// zero if none.
	LastHandshake time.Time
}

// Stats are the Engine's counters since New, all monotonic except
// DataDropped (see there).
type Stats struct {
	transport.Stats
	// TUNPacketsOut counts packets WireGuard decrypted and wrote to the
	// TUN.
	TUNPacketsOut uint64
	// HandshakesRejected counts handshake messages WireGuard refused
	// (invalid MAC or failed to authenticate).
	HandshakesRejected uint64
	// DataDropped is DataPacketsIn minus TUNPacketsOut: data messages that
	// WireGuard dropped as replayed, unauthenticated or from a disallowed
	// source address. Packets still in WireGuard's queues count too, so it
	// is exact only when the overlay is idle.
	DataDropped uint64
}

// Engine runs the overlay on one TUN interface.
type Engine struct {
	// Immutable after New.
	cfg    Config
	log    *slog.Logger
	public transport.Key
	ipv4   netip.Prefix
	ipv6   netip.Prefix
	bind   *transport.Bind

	tunWrites  atomic.Uint64
	hsRejected atomic.Uint64

	// mu guards the following.
	mu       sync.Mutex
	peers    []Peer                       // wanted, as last set
	devPeers map[transport.Key]devicePeer // configured in dev
	dev      *device.Device               // while running
	cancel   context.CancelFunc           // cancels Run
	done     chan struct{}                // closed when Run returns
	closed   bool
}

// devicePeer is what WireGuard was told about a peer.
type devicePeer struct {
	allowed []netip.Prefix
}

// New checks cfg and returns an Engine that Run starts.
func New(cfg Config) (*Engine, error) {
	if cfg.PrivateKey == [32]byte{} {
		return nil, errors.New("creating overlay: PrivateKey is zero")
	}
	if cfg.ListenPort == 0 {
		cfg.ListenPort = DefaultListenPort
	}
	if cfg.InterfaceName == "" {
		cfg.InterfaceName = DefaultInterfaceName
	}
	if len(cfg.InterfaceName) > 15 {
		return nil, fmt.Errorf("creating overlay: InterfaceName %q is longer than 15 bytes", cfg.InterfaceName)
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.MTU < MinMTU || cfg.MTU > 65535 {
		return nil, fmt.Errorf("creating overlay: MTU %d is outside %d..65535", cfg.MTU, MinMTU)
	}
	if cfg.IPv4.IsValid() && !cfg.IPv4.Addr().Is4() {
		return nil, fmt.Errorf("creating overlay: IPv4 %s is not an IPv4 prefix", cfg.IPv4)
	}
	e := &Engine{
		cfg:      cfg,
		log:      cfg.Logger,
		public:   transport.PublicKey(cfg.PrivateKey),
		ipv4:     cfg.IPv4,
		devPeers: make(map[transport.Key]devicePeer),
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	switch {
	case !cfg.IPv6.IsValid():
		e.ipv6 = netip.PrefixFrom(AddrFromKey(DefaultIPv6Prefix, e.public), DefaultIPv6Prefix.Bits())
	case !cfg.IPv6.Addr().Is6() || cfg.IPv6.Addr().Is4In6():
		return nil, fmt.Errorf("creating overlay: IPv6 %s is not an IPv6 prefix", cfg.IPv6)
	case cfg.IPv6.Bits() > 120:
		return nil, fmt.Errorf("creating overlay: IPv6 prefix %s is longer than /120", cfg.IPv6)
	case cfg.IPv6.Masked() == cfg.IPv6:
		e.ipv6 = netip.PrefixFrom(AddrFromKey(cfg.IPv6, e.public), cfg.IPv6.Bits())
	default:
		e.ipv6 = cfg.IPv6
	}
	exclude := []netip.Prefix{e.ipv6.Masked()}
	if e.ipv4.IsValid() {
		exclude = append(exclude, e.ipv4.Masked())
	}
	exclude = append(exclude, cfg.CommunityRoutes...)
	localAddrs := cfg.LocalAddrs
	if localAddrs == nil {
		localAddrs = func() []netip.Addr { return UnderlayAddrs(e.cfg.InterfaceName) }
	}
	b, err := transport.New(transport.Config{
		Logger:     e.log,
		PrivateKey: cfg.PrivateKey,
		LocalAddrs: localAddrs,
		Exclude:    exclude,
		Timing:     cfg.PathTiming,
		Inflight:   cfg.Inflight,
		BatchSize:  cfg.BatchSize,
	})
	if err != nil {
		return nil, fmt.Errorf("creating overlay: %w", err)
	}
	e.bind = b
	return e, nil
}

// PublicKey returns the box's node key.
func (e *Engine) PublicKey() [32]byte { return e.public }

// IPv4 returns the box's overlay IPv4 address and prefix (zero if none).
func (e *Engine) IPv4() netip.Prefix { return e.ipv4 }

// IPv6 returns the box's overlay IPv6 address and prefix.
func (e *Engine) IPv6() netip.Prefix { return e.ipv6 }

// Run creates and configures the interface, starts WireGuard and path
// discovery, and runs until ctx is done or Close is called; then it removes
// the interface and returns nil. It returns an error when setting up fails or
// the device dies. Run may be called again after it returned, not after
// Close.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	switch {
	case e.closed:
		e.mu.Unlock()
		return ErrClosed
	case e.done != nil:
		e.mu.Unlock()
		return ErrRunning
	}
	ctx, cancel := context.WithCancel(ctx)
	e.cancel = cancel
	e.done = make(chan struct{})
	e.mu.Unlock()
	defer func() {
		cancel()
		e.mu.Lock()
		close(e.done)
		e.done, e.cancel = nil, nil
		e.mu.Unlock()
	}()
	return e.run(ctx)
}

func (e *Engine) run(ctx context.Context) error {
	name := e.cfg.InterfaceName
	tdev, err := createTUN(name, e.cfg.MTU)
	if err != nil {
		return fmt.Errorf("creating TUN %s: %w", name, err)
	}
	dev := device.NewDevice(newGatedTUN(tdev, &e.tunWrites, e.bind), e.bind, e.wireGuardLogger())
	// The Bind decides where packets go; WireGuard must not move a peer's
	// endpoint to the source of a packet.
	dev.DisableSomeRoamingForBrokenMobileSemantics()
	defer dev.Close() // closes the TUN (removing the interface) and the Bind
	if err := dev.IpcSet(deviceConfig(e.cfg.PrivateKey, e.cfg.ListenPort)); err != nil {
		return fmt.Errorf("configuring WireGuard: %w", err)
	}
	if err := dev.Up(); err != nil {
		return fmt.Errorf("starting WireGuard on UDP port %d: %w", e.cfg.ListenPort, err)
	}
	addrs := []netip.Prefix{e.ipv6}
	if e.ipv4.IsValid() {
		addrs = append(addrs, e.ipv4)
	}
	nctx, ncancel := context.WithTimeout(ctx, 10*time.Second)
	err = netcfg.Apply(nctx, netcfg.Config{Name: name, MTU: e.cfg.MTU, Addrs: addrs, Routes: e.cfg.CommunityRoutes})
	ncancel()
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.dev = dev
	clear(e.devPeers)
	err = e.syncLocked()
	e.mu.Unlock()
	// Forget the device before the deferred Close, whatever the way out,
	// so SetPeers and Peers never reach a closed device.
	defer func() {
		e.mu.Lock()
		e.dev = nil
		e.mu.Unlock()
	}()
	if err != nil {
		return err
	}
	e.log.Info("overlay up", "interface", name, "ipv4", e.ipv4, "ipv6", e.ipv6,
		"port", e.bind.Port(), "key", e.public.ShortString())

	var wg sync.WaitGroup
	bctx, bcancel := context.WithCancel(ctx)
	wg.Go(func() { e.bind.Run(bctx) })
	if e.cfg.LANInterval >= 0 {
		lan := transport.LANConfig{Port: e.cfg.LANPort, Interval: e.cfg.LANInterval, Skip: name}
		wg.Go(func() {
			if err := e.bind.RunLAN(bctx, lan); err != nil {
				e.log.Warn("lan discovery off", "err", err)
			}
		})
	}
	if every := cmp.Or(e.cfg.MemoryTrim, DefaultMemoryTrim); every > 0 {
		wg.Go(func() { e.trimMemory(bctx, every) })
	}
	select {
	case <-ctx.Done():
	case <-dev.Wait():
		err = errors.New("WireGuard device closed unexpectedly")
	}
	bcancel()
	wg.Wait()
	e.log.Info("overlay down", "interface", name)
	return err
}

// Close stops Run, waits for it to return, and makes the Engine unusable.
// It is idempotent.
func (e *Engine) Close() error {
	e.mu.Lock()
	e.closed = true
	cancel, done := e.cancel, e.done
	e.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return nil
}

// SetPeers replaces the set of peers; it may be called before and while Run
// runs. Peers without key, with this box's key or with addresses of the
// wrong family are refused with an error, and nothing changes.
func (e *Engine) SetPeers(peers []Peer) error {
	seen := make(map[[32]byte]bool)
	for _, p := range peers {
		switch {
		case p.NodeKey == [32]byte{}:
			return fmt.Errorf("setting peer %q: no node key", p.Name)
		case p.NodeKey == e.public:
			return fmt.Errorf("setting peer %q: it has this box's own node key", p.Name)
		case seen[p.NodeKey]:
			return fmt.Errorf("setting peer %q: node key %s appears twice", p.Name, transport.Key(p.NodeKey).ShortString())
		case p.IPv4.IsValid() && !p.IPv4.Is4():
			return fmt.Errorf("setting peer %q: IPv4 %s is not an IPv4 address", p.Name, p.IPv4)
		case p.IPv6.IsValid() && (!p.IPv6.Is6() || p.IPv6.Is4In6()):
			return fmt.Errorf("setting peer %q: IPv6 %s is not an IPv6 address", p.Name, p.IPv6)
		}
		seen[p.NodeKey] = true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.peers = slices.Clone(peers)
	for i := range e.peers {
		if !e.peers[i].IPv6.IsValid() {
			e.peers[i].IPv6 = AddrFromKey(e.ipv6.Masked(), e.peers[i].NodeKey)
		}
	}
	return e.syncLocked()
}

// syncLocked brings the Bind and, while running, WireGuard in line with
// e.peers: removed peers leave WireGuard first, then the Bind learns the new
// set, then new and changed peers enter WireGuard.
func (e *Engine) syncLocked() error {
	want := make(map[transport.Key]Peer, len(e.peers))
	for _, p := range e.peers {
		want[p.NodeKey] = p
	}
	if e.dev != nil {
		var removed []transport.Key
		for k := range e.devPeers {
			if _, ok := want[k]; !ok {
				removed = append(removed, k)
			}
		}
		if len(removed) > 0 {
			if err := e.dev.IpcSet(removePeersConfig(removed)); err != nil {
				return fmt.Errorf("removing WireGuard peers: %w", err)
			}
			for _, k := range removed {
				delete(e.devPeers, k)
			}
		}
	}
	bps := make([]transport.PeerConfig, 0, len(e.peers))
	for _, p := range e.peers {
		bps = append(bps, transport.PeerConfig{Key: p.NodeKey, Name: p.Name, Endpoints: p.Endpoints})
	}
	e.bind.SetPeers(bps)
	if e.dev == nil {
		return nil
	}
	var changes []peerChange
	for _, p := range e.peers {
		allowed := allowedIPs(p)
		old, ok := e.devPeers[p.NodeKey]
		if ok && slices.Equal(old.allowed, allowed) {
			continue
		}
		changes = append(changes, peerChange{key: p.NodeKey, allowed: allowed, isNew: !ok})
	}
	if len(changes) == 0 {
		return nil
	}
	if err := e.dev.IpcSet(setPeersConfig(changes)); err != nil {
		return fmt.Errorf("configuring WireGuard peers: %w", err)
	}
	for _, c := range changes {
		e.devPeers[c.key] = devicePeer{allowed: c.allowed}
	}
	return nil
}

func allowedIPs(p Peer) []netip.Prefix {
	var out []netip.Prefix
	if p.IPv4.IsValid() {
		out = append(out, netip.PrefixFrom(p.IPv4, 32))
	}
	if p.IPv6.IsValid() {
		out = append(out, netip.PrefixFrom(p.IPv6, 128))
	}
	return out
}

// Peers returns the status of every peer, sorted by name.
func (e *Engine) Peers() []PeerStatus {
	paths := e.bind.Status()
	e.mu.Lock()
	peers := slices.Clone(e.peers)
	dev := e.dev
	e.mu.Unlock()
	var wg map[transport.Key]wireGuardPeer
	if dev != nil {
		if s, err := dev.IpcGet(); err == nil {
			wg = parseDeviceStatus(s)
		}
	}
	byKey := make(map[transport.Key]transport.PeerPath, len(paths))
	for _, p := range paths {
		byKey[p.Key] = p
	}
	out := make([]PeerStatus, 0, len(peers))
	for _, p := range peers {
		path := byKey[p.NodeKey]
		w := wg[p.NodeKey]
		out = append(out, PeerStatus{
			Name:          p.Name,
			NodeKey:       p.NodeKey,
			IPv4:          p.IPv4,
			IPv6:          p.IPv6,
			Endpoint:      path.String(),
			Direct:        path.Direct,
			Via:           path.ViaName,
			RTT:           path.RTT,
			RxBytes:       w.rxBytes,
			TxBytes:       w.txBytes,
			LastHandshake: w.lastHandshake,
		})
	}
	order := func(a, b PeerStatus) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), slices.Compare(a.NodeKey[:], b.NodeKey[:]))
	}
	sort.Slice(out, func(i, j int) bool { return order(out[i], out[j]) < 0 })
	return out
}

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	s := Stats{
		Stats:              e.bind.Stats(),
		TUNPacketsOut:      e.tunWrites.Load(),
		HandshakesRejected: e.hsRejected.Load(),
	}
	if s.DataPacketsIn > s.TUNPacketsOut {
		s.DataDropped = s.DataPacketsIn - s.TUNPacketsOut
	}
	return s
}

// UnderlayAddrs returns the unicast, non-link-local addresses of the
// interfaces that are up, except loopback and the interface named skip (the
// overlay's own): where other boxes may reach this one. It is the default
// Config.LocalAddrs.
func UnderlayAddrs(skip string) []netip.Addr {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || ifc.Name == skip {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			if ip.IsLinkLocalUnicast() || ip.IsLoopback() {
				continue
			}
			out = append(out, ip)
		}
	}
	return out
}

// gatedTUN counts the packets WireGuard writes to the TUN, and keeps the
// Bind's Gates: WireGuard reads the TUN only while the outbound Gate has
// room, and packets it writes leave the inbound Gate. It reports the Bind's
// batch size to WireGuard, reads the TUN's larger batches (GSO splits) into
// its own slots and hands them out in WireGuard's batches.
type gatedTUN struct {
	tun.Device
	writes  *atomic.Uint64
	out, in *transport.Gate
	size    int
	// WireGuard reads from one goroutine; these are its.
	timer   *time.Timer
	batch   *pktbuf.Batch
	readErr error // returned with the last packets of batch
}

func newGatedTUN(dev tun.Device, writes *atomic.Uint64, b *transport.Bind) *gatedTUN {
	n := dev.BatchSize()
	t := &gatedTUN{
		Device: dev,
		writes: writes,
		out:    b.Outbound(),
		in:     b.Inbound(),
		size:   max(1, min(n, b.BatchSize())),
		timer:  time.NewTimer(time.Hour),
		batch:  pktbuf.New(n, pktbuf.MaxSlot),
	}
	t.timer.Stop()
	return t
}

func (t *gatedTUN) BatchSize() int { return t.size }

func (t *gatedTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	bb := t.batch
	if !bb.Pending() {
		t.out.Wait(t.timer)
		n, err := t.Device.Read(bb.Bufs, bb.Sizes, offset)
		if n == 0 {
			return 0, err
		}
		bb.Filled(n)
		t.readErr = err
	}
	n := 0
	for n < len(bufs) {
		i, ok := bb.Next()
		if !ok {
			break
		}
		sizes[n] = copy(bufs[n][offset:], bb.Bufs[i][offset:offset+bb.Sizes[i]])
		n++
	}
	t.out.Add(n)
	var err error
	if !bb.Pending() {
		err, t.readErr = t.readErr, nil
	}
	return n, err
}

func (t *gatedTUN) Write(bufs [][]byte, offset int) (int, error) {
	n, err := t.Device.Write(bufs, offset)
	// Written or not, the packets have left WireGuard.
	t.in.Done(len(bufs))
	if err == nil {
		t.writes.Add(uint64(len(bufs)))
	}
	return n, err
}
