package transport

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudbox/cloudbox/overlay/disco"
	"github.com/cloudbox/cloudbox/overlay/internal/pktbuf"
	"golang.zx2c4.com/wireguard/conn"
)

// Config configures a Bind.
type Config struct {
	// Logger receives path changes (Info) and disco events (Debug). Nil
	// discards.
	Logger *slog.Logger

	// PrivateKey is this box's X25519 node key, the same key WireGuard
	// uses. Required: New refuses the zero key.
	PrivateKey [32]byte

	// Inner is the UDP Bind that carries all packets. Nil means the
	// package's own on Linux (batched I/O with recvmmsg/sendmmsg and UDP
	// GSO/GRO, on one dual-stack socket, with no allocation per packet;
	// see udp_linux.go) and conn.NewStdNetBind() elsewhere. The Bind owns
	// Inner: its Open and Close open and close Inner.
	Inner conn.Bind

	// LocalAddrs returns this box's underlay addresses; with the listen
	// port they are the endpoints announced to relayed peers in
	// call-me-maybe messages. Nil announces only the public endpoints that
	// peers report in pongs.
	LocalAddrs func() []netip.Addr

	// Exclude lists prefixes never used as peer endpoints, typically the
	// overlay's own ranges, so that underlay traffic is never routed into
	// the overlay. Nil excludes nothing.
	Exclude []netip.Prefix

	// Timing holds the path discovery intervals; zero fields take the
	// values of DefaultTiming.
	Timing Timing

	// Now is the clock. Nil means time.Now.
	Now func() time.Time

	// Inflight bounds the data packets WireGuard holds in each direction
	// (see Gate): received ones not yet written to the TUN, read ones not
	// yet sent. 0 means DefaultInflight; negative means no bound.
	Inflight int

	// BatchSize is the batch size reported to WireGuard, which gives every
	// packet of a batch a 64 KiB buffer. The Bind reads the inner Bind's
	// (larger) batches into its own slots and hands them out in batches of
	// this size. 0 means DefaultBatchSize; it is capped at the inner
	// Bind's.
	BatchSize int
}

// PeerConfig is one peer as the Bind needs it.
type PeerConfig struct {
	// Key is the peer's node key. Peers with the zero key or this box's
	// own key are ignored.
	Key Key
	// Name is shown in status and logs.
	Name string
	// Endpoints are the peer's candidate underlay addresses. Excluded,
	// unspecified and multicast addresses are ignored; more candidates are
	// learned through disco.
	Endpoints []netip.AddrPort
}

// Bind is a conn.Bind that multiplexes WireGuard, relay and disco traffic on
// one UDP socket pair and routes each peer's packets over its best path.
//
// All methods are safe for concurrent use. WireGuard calls Open, Close, Send
// and the ReceiveFuncs; the owner calls SetPeers, Run, Status and Stats.
// Closing the Bind (WireGuard does it on Down and Close) closes Inner but does
// not stop Run; Run stops when its context is done. After Close the Bind can
// be opened again.
type Bind struct {
	// Immutable after New.
	log        *slog.Logger
	private    [32]byte
	public     Key
	inner      conn.Bind
	localAddrs func() []netip.Addr
	exclude    []netip.Prefix
	timing     Timing
	now        func() time.Time
	poke       chan struct{}
	relayBufs  chan *relayBatch // free ones, see getRelayBatch
	in, out    *Gate            // data packets inside WireGuard
	batchSize  int

	// table is replaced, copy on write, under mu and read without locks on
	// the packet path.
	table atomic.Pointer[peerTable]
	stats counters

	// mu guards the following, and the name and paths of every peer.
	mu         sync.Mutex
	port       uint16                       // actual listen port while open, else 0
	reflexive  map[netip.AddrPort]time.Time // our endpoints as peers saw them
	relayCands []*peer                      // peers with a live direct path, best first
	announces  announceLimiter              // LAN announces handled
}

// peer is one configured peer.
type peer struct {
	// Immutable.
	key    Key
	shared disco.SharedKey
	ep     *Endpoint

	// route is where packets go now. Written under Bind.mu, read on the
	// packet path.
	route atomic.Pointer[choice]

	// lastHandshake is the last handshake message sent over an
	// unconfirmed path; when the path changes soon after, it is sent again
	// over the new one instead of waiting for WireGuard's retry.
	lastHandshake atomic.Pointer[sentHandshake]

	// Guarded by Bind.mu.
	name  string
	paths *pathSet
}

type sentHandshake struct {
	pkt []byte
	at  time.Time
}

// handshakeResendWindow is how long a handshake message is worth sending
// again: WireGuard retries by itself after 5 s (REKEY_TIMEOUT).
const handshakeResendWindow = 5 * time.Second

func (p *peer) String() string {
	if p.name != "" {
		return p.name
	}
	return p.key.ShortString()
}

// peerTable is an immutable snapshot of the peers.
type peerTable struct {
	byKey map[Key]*peer
	// byAddr maps configured endpoints, disco-confirmed ones and recent
	// sources of authenticated disco messages to their peer; it decides
	// who sent a relay envelope.
	byAddr map[netip.AddrPort]*peer
	// byID maps node IDs (relay-hop headers) to peers; nil for an ID that
	// two peers share.
	byID map[nodeID]*peer
	list []*peer // sorted by name, then key
}

var _ conn.Bind = (*Bind)(nil)

// New returns a closed Bind with no peers.
func New(cfg Config) (*Bind, error) {
	if cfg.PrivateKey == [32]byte{} {
		return nil, errors.New("creating transport: private key is zero")
	}
	b := &Bind{
		log:        cfg.Logger,
		private:    cfg.PrivateKey,
		public:     PublicKey(cfg.PrivateKey),
		inner:      cfg.Inner,
		localAddrs: cfg.LocalAddrs,
		exclude:    slices.Clone(cfg.Exclude),
		timing:     cfg.Timing.withDefaults(),
		now:        cfg.Now,
		poke:       make(chan struct{}, 1),
		reflexive:  make(map[netip.AddrPort]time.Time),
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.inner == nil {
		b.inner = newUDPBind()
	}
	if b.now == nil {
		b.now = time.Now
	}
	inflight := cfg.Inflight
	if inflight == 0 {
		inflight = DefaultInflight
	}
	b.in, b.out = NewGate(inflight), NewGate(inflight)
	b.batchSize = cmp.Or(cfg.BatchSize, DefaultBatchSize)
	b.batchSize = max(1, min(b.batchSize, b.inner.BatchSize()))
	b.relayBufs = make(chan *relayBatch, max(relayBatchesKept, runtime.GOMAXPROCS(0)))
	b.table.Store(&peerTable{byKey: map[Key]*peer{}, byAddr: map[netip.AddrPort]*peer{}, byID: map[nodeID]*peer{}})
	return b, nil
}

// PublicKey returns this box's node key.
func (b *Bind) PublicKey() Key { return b.public }

// Inbound returns the Gate of received data packets: the Bind waits on it
// before reading from the socket and adds what it hands to WireGuard; the
// owner reports packets written to the TUN with Done.
func (b *Bind) Inbound() *Gate { return b.in }

// Outbound returns the Gate of data packets to send: the owner waits on it
// before reading the TUN and adds what it read; the Bind reports data
// packets sent with Done.
func (b *Bind) Outbound() *Gate { return b.out }

// Open implements conn.Bind.
func (b *Bind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := b.inner.Open(port)
	if err != nil {
		return nil, 0, err
	}
	wrapped := make([]conn.ReceiveFunc, len(fns))
	for i, fn := range fns {
		n := b.inner.BatchSize()
		r := &receiver{
			b:     b,
			fn:    fn,
			batch: pktbuf.New(n, pktbuf.MaxSlot),
			eps:   make([]conn.Endpoint, n),
			fwd:   make([][]byte, 0, n),
			timer: time.NewTimer(time.Hour),
		}
		r.timer.Stop()
		wrapped[i] = r.receive
	}
	b.mu.Lock()
	b.port = actual
	b.mu.Unlock()
	b.wake()
	return wrapped, actual, nil
}

// Close implements conn.Bind.
func (b *Bind) Close() error {
	b.mu.Lock()
	b.port = 0
	b.mu.Unlock()
	return b.inner.Close()
}

// SetMark implements conn.Bind.
func (b *Bind) SetMark(mark uint32) error { return b.inner.SetMark(mark) }

// BatchSize implements conn.Bind: Config.BatchSize.
func (b *Bind) BatchSize() int { return b.batchSize }

// ParseEndpoint implements conn.Bind. A node key in hex gives the peer's
// Endpoint (the peer must have been set with SetPeers); anything else is
// parsed by the inner Bind as an address.
func (b *Bind) ParseEndpoint(s string) (conn.Endpoint, error) {
	if len(s) == 2*len(Key{}) {
		k, err := ParseKey(s)
		if err == nil {
			p := b.table.Load().byKey[k]
			if p == nil {
				return nil, fmt.Errorf("parsing endpoint %s: %w", k.ShortString(), ErrUnknownPeer)
			}
			return p.ep, nil
		}
	}
	return b.inner.ParseEndpoint(s)
}

// Send implements conn.Bind. For a peer's Endpoint it sends over the peer's
// current path; any other endpoint (WireGuard answers cookie replies to
// the address a handshake came from) goes straight to the inner Bind.
func (b *Bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	e, ok := ep.(*Endpoint)
	if !ok {
		return b.sendInner(bufs, ep)
	}
	c := e.peer.route.Load()
	if c == nil {
		return ErrNoPath
	}
	if !c.confirmed && isHandshake(bufs) {
		e.peer.lastHandshake.Store(&sentHandshake{pkt: bytes.Clone(bufs[0]), at: b.now()})
		// Try the alternative too; WireGuard ignores the duplicate.
		if c.altEP != nil {
			b.sendInner(bufs, c.altEP)
		} else if !c.altVia.IsZero() {
			if ep := relayEndpoint(b.table.Load(), c.altVia); ep != nil {
				b.sendRelayed(bufs, e.peer.key, ep)
			}
		}
	}
	switch c.kind {
	case choiceDirect:
		return b.sendInner(bufs, c.ep)
	case choiceRelay:
		if ep := relayEndpoint(b.table.Load(), c.via); ep != nil {
			return b.sendRelayed(bufs, e.peer.key, ep)
		}
	}
	return ErrNoPath
}

// isHandshake reports whether a batch is a WireGuard handshake initiation
// or response (they travel alone).
func isHandshake(bufs [][]byte) bool {
	return len(bufs) == 1 && len(bufs[0]) > 0 && (bufs[0][0] == 1 || bufs[0][0] == 2)
}

func (b *Bind) sendInner(bufs [][]byte, ep conn.Endpoint) error {
	b.out.Done(b.stats.wireGuardOut(bufs))
	err := b.inner.Send(bufs, ep)
	if err != nil {
		b.stats.sendErrors.Add(1)
	}
	return err
}

// relaySlot is the room for one relayed packet in a relayBatch: a packet of
// the largest overlay MTU in use plus WireGuard's and our headers fits.
const relaySlot = 2048

// relayBatchesKept is the least number of free relay batches a Bind keeps
// for reuse; it keeps one per CPU if there are more CPUs.
const relayBatchesKept = 4

// relayBatch is reusable memory for wrapping a batch in relay headers.
type relayBatch struct {
	bufs [][]byte
	mem  []byte
}

// getRelayBatch returns a free relayBatch with room for a batch of
// BatchSize packets, the most WireGuard sends at once. A buffered channel
// keeps the free ones rather than a sync.Pool, which lets the GC take them
// (and, under the race detector, drops a quarter of them at random): each
// new one costs BatchSize*relaySlot bytes on the packet path.
func (b *Bind) getRelayBatch() *relayBatch {
	select {
	case rb := <-b.relayBufs:
		return rb
	default:
		return &relayBatch{
			bufs: make([][]byte, 0, b.batchSize),
			mem:  make([]byte, b.batchSize*relaySlot),
		}
	}
}

// putRelayBatch keeps rb for reuse, unless enough are kept.
func (b *Bind) putRelayBatch(rb *relayBatch) {
	clear(rb.bufs)
	rb.bufs = rb.bufs[:0]
	select {
	case b.relayBufs <- rb:
	default:
	}
}

// sendRelayed wraps each packet in a relay-forward header for dst and sends
// the batch to the relay at ep.
func (b *Bind) sendRelayed(bufs [][]byte, dst Key, ep conn.Endpoint) error {
	rb := b.getRelayBatch()
	for i, p := range bufs {
		n := HeaderLen + len(p)
		var out []byte
		if n <= relaySlot && (i+1)*relaySlot <= len(rb.mem) {
			// Capped, so that UDP GSO coalescing in the inner Bind cannot
			// append into the next slot.
			out = rb.mem[i*relaySlot : i*relaySlot+n : (i+1)*relaySlot]
		} else {
			out = make([]byte, n)
		}
		out[0], out[1] = Magic, TypeRelayFwd
		copy(out[2:HeaderLen], dst[:])
		copy(out[HeaderLen:], p)
		rb.bufs = append(rb.bufs, out)
	}
	b.out.Done(b.stats.wireGuardOut(bufs))
	b.stats.relayedOut.Add(uint64(len(bufs)))
	err := b.inner.Send(rb.bufs, ep)
	if err != nil {
		b.stats.sendErrors.Add(1)
	}
	b.putRelayBatch(rb)
	return err
}

// receiver wraps one of the inner Bind's ReceiveFuncs. Each is called by one
// goroutine at a time, so its scratch space needs no lock.
type receiver struct {
	b  *Bind
	fn conn.ReceiveFunc
	// batch and eps receive the inner Bind's batches; WireGuard gets them
	// in its smaller ones.
	batch *pktbuf.Batch
	eps   []conn.Endpoint
	// Packets waiting to be forwarded to fwdEP, rewritten in place in the
	// receive buffers.
	fwd   [][]byte
	fwdEP conn.Endpoint
	// timer is for waiting on the inbound Gate.
	timer *time.Timer
}

// receive implements conn.ReceiveFunc. As its contract asks, it returns at
// least one packet: a batch that demux consumed whole (disco, packets
// forwarded to other boxes, as on a relay) is not handed to WireGuard as an
// empty one, whose sizes would be those of the previous call; receive reads
// the next batch instead.
func (r *receiver) receive(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	bb := r.batch
	for {
		if !bb.Pending() {
			r.b.in.Wait(r.timer)
			n, err := r.fn(bb.Bufs, bb.Sizes, r.eps)
			if err != nil {
				return 0, err
			}
			r.b.in.Add(r.b.demux(r, bb.Bufs[:n], bb.Sizes[:n], r.eps[:n]))
			bb.Filled(n)
		}
		n := 0
		for n < len(bufs) {
			i, ok := bb.Next()
			if !ok {
				break
			}
			sizes[n] = copy(bufs[n], bb.Bufs[i][:bb.Sizes[i]])
			eps[n] = r.eps[i]
			n++
		}
		if n > 0 {
			return n, nil
		}
	}
}

// demux sorts a received batch: WireGuard messages stay in place for
// WireGuard; relayed WireGuard messages are unwrapped in place; disco and
// relay-forward packets are consumed (their size set to zero, which
// WireGuard skips). It returns the number of data packets left for
// WireGuard.
func (b *Bind) demux(r *receiver, bufs [][]byte, sizes []int, eps []conn.Endpoint) (data int) {
	t := b.table.Load()
	for i, n := range sizes {
		if n == 0 {
			continue
		}
		pkt := bufs[i][:n]
		switch classify(pkt) {
		case kindWireGuard:
			// Delivered with the inner endpoint: WireGuard's rate limiter
			// and cookie replies want the real source address, and with
			// roaming disabled WireGuard never adopts it as the peer's
			// endpoint.
			if b.stats.wireGuardIn(pkt) {
				data++
			}
		case kindDisco:
			sizes[i] = 0
			b.handleDisco(t, pkt, eps[i], nil)
		case kindRelayFwd, kindRelayHop:
			sizes[i] = 0
			r.forward(t, pkt, addrOf(eps[i]))
		case kindRelayed:
			relay := t.byAddr[addrOf(eps[i])]
			if relay == nil {
				sizes[i] = 0
				b.stats.dropRelayNotAllowed.Add(1)
				continue
			}
			src := t.byKey[headerKey(pkt)]
			if src == nil || src == relay {
				sizes[i] = 0
				b.stats.dropUnknownPeer.Add(1)
				continue
			}
			inner := pkt[HeaderLen:]
			if !isWireGuard(inner) {
				sizes[i] = 0
				if headerKey(inner) != src.key {
					// The relay vouches for the sender; the disco sender
					// must be the same peer.
					b.stats.dropMalformed.Add(1)
					continue
				}
				b.handleDisco(t, inner, eps[i], relay)
				continue
			}
			// WireGuard reads the message from the start of the buffer.
			sizes[i] = copy(bufs[i], inner)
			eps[i] = src.ep
			if b.stats.wireGuardIn(bufs[i][:sizes[i]]) {
				data++
			}
			b.stats.relayedIn.Add(1)
		default:
			sizes[i] = 0
			b.stats.dropMalformed.Add(1)
		}
	}
	r.flush()
	return data
}

// forward relays a relay-forward or relay-hop packet that arrived from
// addr. It rewrites the header in place (same length) into a relayed header
// naming the source and queues the packet for the destination's direct
// path, or, without one, into a relay-hop header for the next relay
// (relayhop.go).
func (r *receiver) forward(t *peerTable, pkt []byte, from netip.AddrPort) {
	b := r.b
	sender := t.byAddr[from]
	if sender == nil {
		b.stats.dropRelayNotAllowed.Add(1)
		return
	}
	// A relay forward comes from its source and may pass MaxRelays
	// relays; a relay hop names its source and counts the hops left.
	hop := pkt[1] == TypeRelayHop
	src, dst, left := sender, t.byKey[headerKey(pkt)], byte(MaxRelays-1)
	if hop {
		src, dst, left = t.byID[nodeID(pkt[hopSrc:hopDst])], t.byID[nodeID(pkt[hopDst:HeaderLen])], pkt[hopLeft]
	}
	if src == nil || dst == nil {
		b.stats.dropUnknownPeer.Add(1)
		return
	}
	if src == dst || dst == sender || (hop && src == sender) {
		b.stats.dropRelayNotAllowed.Add(1)
		return
	}
	r.pass(t, pkt, src, dst, sender, left)
}

// queue adds a rewritten packet to the batch for ep.
func (r *receiver) queue(pkt []byte, ep conn.Endpoint) {
	if len(r.fwd) > 0 && (r.fwdEP != ep || len(r.fwd) == cap(r.fwd)) {
		r.flush()
	}
	r.fwdEP = ep
	r.fwd = append(r.fwd, pkt)
}

// flush sends the queued forwards as one batch.
func (r *receiver) flush() {
	if len(r.fwd) == 0 {
		return
	}
	var n uint64
	for _, p := range r.fwd {
		n += uint64(len(p))
	}
	if err := r.b.inner.Send(r.fwd, r.fwdEP); err != nil {
		r.b.stats.sendErrors.Add(1)
	} else {
		r.b.stats.fwdPackets.Add(uint64(len(r.fwd)))
		r.b.stats.fwdBytes.Add(n)
	}
	clear(r.fwd)
	r.fwd = r.fwd[:0]
	r.fwdEP = nil
}

// SetPeers replaces the set of peers. Peers that stay keep their path
// state; WireGuard must be told about new peers after SetPeers (so that
// ParseEndpoint knows them) and about removed ones before.
func (b *Bind) SetPeers(peers []PeerConfig) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.table.Load()
	var list []*peer
	seen := make(map[Key]bool)
	for _, pc := range peers {
		if pc.Key.IsZero() || pc.Key == b.public || seen[pc.Key] {
			continue
		}
		seen[pc.Key] = true
		p := old.byKey[pc.Key]
		if p == nil {
			k := [32]byte(pc.Key)
			p = &peer{key: pc.Key, shared: disco.Shared(&k, &b.private), paths: newPathSet(b.timing, now)}
			p.ep = newEndpoint(p)
		}
		p.name = pc.Name
		var eps []netip.AddrPort
		for _, ap := range pc.Endpoints {
			if b.usable(ap) {
				eps = append(eps, ap)
			}
		}
		p.paths.setConfigured(eps, b.innerEndpoint, now)
		list = append(list, p)
	}
	slices.SortFunc(list, func(a, b *peer) int {
		return cmp.Or(cmp.Compare(a.name, b.name), slices.Compare(a.key[:], b.key[:]))
	})
	b.publishLocked(list)
	b.computeRelaysLocked(now)
	for _, p := range list {
		b.routeLocked(p, now) // new peers have sent no handshake yet
	}
	b.wake()
}

// usable reports whether an address may be a peer endpoint.
func (b *Bind) usable(ap netip.AddrPort) bool {
	a := ap.Addr()
	if !a.IsValid() || ap.Port() == 0 || a.IsUnspecified() || a.IsMulticast() {
		return false
	}
	for _, p := range b.exclude {
		if p.Contains(a.Unmap()) {
			return false
		}
	}
	return true
}

func (b *Bind) innerEndpoint(ap netip.AddrPort) conn.Endpoint {
	ep, err := b.inner.ParseEndpoint(ap.String())
	if err != nil {
		return &conn.StdNetEndpoint{AddrPort: ap}
	}
	return ep
}

// publishLocked stores a new table snapshot.
func (b *Bind) publishLocked(list []*peer) {
	t := &peerTable{
		byKey:  make(map[Key]*peer, len(list)),
		byAddr: make(map[netip.AddrPort]*peer),
		byID:   make(map[nodeID]*peer, len(list)),
		list:   list,
	}
	for _, p := range list {
		t.byKey[p.key] = p
		addID(t.byID, p)
		for a := range p.paths.seen {
			t.byAddr[a] = p
		}
		for _, d := range p.paths.direct {
			if d.configured || !d.lastPong.IsZero() {
				t.byAddr[d.addr] = p
			}
		}
	}
	b.table.Store(t)
}

// computeRelaysLocked finds the peers that can relay: those with a live
// direct path, lowest RTT first.
func (b *Bind) computeRelaysLocked(now time.Time) {
	b.relayCands = b.relayCands[:0]
	for _, p := range b.table.Load().list {
		if p.paths.hasLiveDirect(now) {
			b.relayCands = append(b.relayCands, p)
		}
	}
	slices.SortStableFunc(b.relayCands, func(x, y *peer) int {
		return cmp.Compare(x.paths.bestDirect(now).rtt, y.paths.bestDirect(now).rtt)
	})
}

// relaysFor lists the relay candidates for p.
func (b *Bind) relaysFor(p *peer) []Key {
	keys := make([]Key, 0, len(b.relayCands))
	for _, r := range b.relayCands {
		if r != p {
			keys = append(keys, r.key)
		}
	}
	return keys
}

// routeLocked recomputes where p's packets go and publishes it. When the
// path moved and a handshake went out over the old, unconfirmed one moments
// ago, it returns that handshake for the caller to send again (after
// unlocking).
func (b *Bind) routeLocked(p *peer, now time.Time) (resend []byte) {
	c := p.paths.choose(now, b.relaysFor(p))
	old := p.route.Load()
	if old != nil && old.same(c) {
		// Keep the RTT fresh without logging.
		p.route.Store(&c)
		return nil
	}
	p.route.Store(&c)
	b.log.Info("path changed", "peer", p.String(), "path", b.describeLocked(c))
	if old == nil || (old.kind == c.kind && old.addr == c.addr && old.via == c.via) {
		return nil
	}
	if hs := p.lastHandshake.Swap(nil); hs != nil && now.Sub(hs.at) < handshakeResendWindow {
		return hs.pkt
	}
	return nil
}

// resendHandshakes sends handshake messages that routeLocked returned.
func (b *Bind) resendHandshakes(peers []*peer, pkts [][]byte) {
	for i, p := range peers {
		b.Send(pkts[i:i+1], p.ep)
	}
}

func (b *Bind) describeLocked(c choice) string {
	var s string
	switch c.kind {
	case choiceDirect:
		s = "direct " + c.addr.String()
	case choiceRelay:
		name := c.via.ShortString()
		if r := b.table.Load().byKey[c.via]; r != nil {
			name = r.String()
		}
		s = "relay via " + name
	default:
		return "none"
	}
	if !c.confirmed {
		s += " (unconfirmed)"
	}
	return s
}

// wake makes Run do a heartbeat now.
func (b *Bind) wake() {
	select {
	case b.poke <- struct{}{}:
	default:
	}
}

// Run pings peers and re-evaluates their paths until ctx is done. It returns
// nil then. Run it once; packets flow without it but paths never change.
func (b *Bind) Run(ctx context.Context) error {
	tick := min(500*time.Millisecond, b.timing.Heartbeat/4)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		b.heartbeat()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-b.poke:
		}
	}
}

// outgoing is a control packet ready to send.
type outgoing struct {
	pkt []byte
	ep  conn.Endpoint
}

// callMeMaybeJob is a call-me-maybe to seal once our endpoints are known.
type callMeMaybeJob struct {
	p     *peer
	relay conn.Endpoint
}

// heartbeat expires stale state, sends the pings and call-me-maybes that are
// due and re-evaluates every peer's path.
func (b *Bind) heartbeat() {
	now := b.now()
	var out []outgoing
	var cmms []callMeMaybeJob
	var hsPeers []*peer
	var hsPkts [][]byte
	b.mu.Lock()
	t := b.table.Load()
	removed := false
	for _, p := range t.list {
		if p.paths.expire(now) {
			removed = true
		}
	}
	if removed {
		b.publishLocked(t.list)
		t = b.table.Load()
	}
	b.computeRelaysLocked(now)
	open := b.port != 0
	for _, p := range t.list {
		relays := b.relaysFor(p)
		if open {
			pings, cmm := p.paths.due(now, relays)
			for _, to := range pings {
				if o, ok := b.pingLocked(t, p, to, now); ok {
					out = append(out, o)
				}
			}
			if cmm {
				via := relays[0]
				if p.paths.cur.kind == choiceRelay && slices.Contains(relays, p.paths.cur.via) {
					via = p.paths.cur.via
				}
				if ep := relayEndpoint(t, via); ep != nil {
					cmms = append(cmms, callMeMaybeJob{p: p, relay: ep})
				}
			}
		}
		if hs := b.routeLocked(p, now); hs != nil {
			hsPeers, hsPkts = append(hsPeers, p), append(hsPkts, hs)
		}
	}
	for ap, seen := range b.reflexive {
		if now.Sub(seen) > b.timing.LearnedTTL {
			delete(b.reflexive, ap)
		}
	}
	port := b.port
	reflexive := make([]netip.AddrPort, 0, len(b.reflexive))
	for ap := range b.reflexive {
		reflexive = append(reflexive, ap)
	}
	b.mu.Unlock()

	if len(cmms) > 0 {
		eps := b.ourEndpoints(port, reflexive)
		for _, j := range cmms {
			pkt, err := b.sealDisco(j.p, &disco.CallMeMaybe{Endpoints: eps})
			if err != nil {
				continue
			}
			out = append(out, outgoing{pkt: wrapRelay(j.p.key, pkt), ep: j.relay})
		}
	}
	b.sendControl(out)
	b.resendHandshakes(hsPeers, hsPkts)
}

// ourEndpoints lists the endpoints to announce: local addresses with the
// listen port, then public ones that peers reported.
func (b *Bind) ourEndpoints(port uint16, reflexive []netip.AddrPort) []netip.AddrPort {
	var eps []netip.AddrPort
	if b.localAddrs != nil && port != 0 {
		for _, a := range b.localAddrs() {
			if ap := netip.AddrPortFrom(a, port); b.usable(ap) && !a.IsLoopback() {
				eps = append(eps, ap)
			}
		}
	}
	slices.SortFunc(reflexive, func(x, y netip.AddrPort) int { return x.Compare(y) })
	for _, ap := range reflexive {
		if !slices.Contains(eps, ap) {
			eps = append(eps, ap)
		}
	}
	if len(eps) > disco.MaxEndpoints {
		eps = eps[:disco.MaxEndpoints]
	}
	return eps
}

// relayEndpoint returns the direct endpoint of relay k, or nil.
func relayEndpoint(t *peerTable, k Key) conn.Endpoint {
	r := t.byKey[k]
	if r == nil {
		return nil
	}
	c := r.route.Load()
	if c == nil || c.kind != choiceDirect {
		return nil
	}
	return c.ep
}

// pingLocked seals a ping to p over the target and records it.
func (b *Bind) pingLocked(t *peerTable, p *peer, to target, now time.Time) (outgoing, bool) {
	tx := disco.NewTxID()
	pkt, err := b.sealDisco(p, &disco.Ping{TxID: tx})
	if err != nil {
		return outgoing{}, false
	}
	var o outgoing
	if to.relayed() {
		ep := relayEndpoint(t, to.via)
		if ep == nil {
			return outgoing{}, false
		}
		o = outgoing{pkt: wrapRelay(p.key, pkt), ep: ep}
	} else {
		d := p.paths.find(to.addr)
		if d == nil {
			return outgoing{}, false
		}
		o = outgoing{pkt: pkt, ep: d.ep}
	}
	p.paths.sent(to, tx, now)
	return o, true
}

// pingSoonLocked pings p's direct path to addr unless the path is live or
// was just pinged.
func (b *Bind) pingSoonLocked(t *peerTable, p *peer, addr netip.AddrPort, now time.Time) (outgoing, bool) {
	d := p.paths.find(addr)
	if d == nil || d.live(now, b.timing.Trust) || now.Sub(d.lastPing) < b.timing.Heartbeat/20 {
		return outgoing{}, false
	}
	return b.pingLocked(t, p, target{addr: addr}, now)
}

// sealDisco frames a disco message to p.
func (b *Bind) sealDisco(p *peer, m disco.Message) ([]byte, error) {
	pkt := make([]byte, 0, 2*HeaderLen+disco.Overhead+disco.MaxPlaintextLen)
	pkt = appendHeader(pkt, TypeDisco, b.public)
	return disco.Seal(pkt, m, &p.shared, nil)
}

// wrapRelay puts a relay-forward header for dst in front of pkt.
func wrapRelay(dst Key, pkt []byte) []byte {
	out := make([]byte, 0, HeaderLen+len(pkt))
	out = appendHeader(out, TypeRelayFwd, dst)
	return append(out, pkt...)
}

func (b *Bind) sendControl(out []outgoing) {
	for _, o := range out {
		if err := b.inner.Send([][]byte{o.pkt}, o.ep); err != nil {
			b.stats.sendErrors.Add(1)
			b.log.Debug("sending disco failed", "to", o.ep.DstToString(), "err", err)
			continue
		}
		b.stats.discoOut.Add(1)
	}
}

// handleDisco opens a disco packet that arrived from ep, directly (relay
// nil) or through relay, and acts on it.
func (b *Bind) handleDisco(t *peerTable, pkt []byte, ep conn.Endpoint, relay *peer) {
	sender := t.byKey[headerKey(pkt)]
	if sender == nil {
		b.stats.dropUnknownPeer.Add(1)
		return
	}
	m, err := disco.Open(pkt[HeaderLen:], &sender.shared)
	if err != nil {
		if errors.Is(err, disco.ErrAuth) {
			b.stats.dropDiscoAuth.Add(1)
		} else {
			b.stats.dropMalformed.Add(1)
		}
		return
	}
	b.stats.discoIn.Add(1)
	now := b.now()
	var from netip.AddrPort
	if relay == nil {
		from = addrOf(ep)
		b.mu.Lock()
		if sender.paths.sawFrom(from, now) {
			b.publishLocked(b.table.Load().list)
		}
		b.mu.Unlock()
	}
	var out []outgoing
	var resend []byte
	switch m := m.(type) {
	case *disco.Ping:
		pong, err := b.sealDisco(sender, &disco.Pong{TxID: m.TxID, Src: from})
		if err != nil {
			return
		}
		if relay != nil {
			// Answer through the relay the ping came through.
			out = append(out, outgoing{pkt: wrapRelay(sender.key, pong), ep: ep})
			break
		}
		out = append(out, outgoing{pkt: pong, ep: ep})
		if b.usable(from) {
			b.mu.Lock()
			added := sender.paths.addLearned(from, b.innerEndpoint, now)
			if added {
				b.log.Debug("learned endpoint", "peer", sender.String(), "addr", from)
			}
			// Confirm the path from our side too, now rather than at the
			// next heartbeat.
			if o, ok := b.pingSoonLocked(t, sender, from, now); ok {
				out = append(out, o)
			}
			b.mu.Unlock()
		}
	case *disco.Pong:
		var via Key
		if relay != nil {
			via = relay.key
		}
		b.mu.Lock()
		switch sender.paths.onPong(m.TxID, via, now) {
		case pongUnsolicited:
			b.stats.dropDiscoUnsolicited.Add(1)
		case pongNewDirect:
			b.publishLocked(b.table.Load().list)
			fallthrough
		default:
			if relay == nil && m.Src.IsValid() && (len(b.reflexive) < disco.MaxEndpoints || !b.reflexive[m.Src].IsZero()) {
				b.reflexive[m.Src] = now
			}
			resend = b.routeLocked(sender, now)
		}
		b.mu.Unlock()
	case *disco.CallMeMaybe:
		b.mu.Lock()
		for _, ap := range m.Endpoints {
			if b.usable(ap) {
				sender.paths.addLearned(ap, b.innerEndpoint, now)
			}
		}
		// Ping every candidate now, while the sender pings us: this is the
		// simultaneous open that punches through NATs.
		for _, d := range sender.paths.direct {
			if o, ok := b.pingLocked(t, sender, target{addr: d.addr}, now); ok {
				out = append(out, o)
			}
		}
		b.mu.Unlock()
	}
	b.sendControl(out)
	if resend != nil {
		b.resendHandshakes([]*peer{sender}, [][]byte{resend})
	}
}

// PeerPath describes the path to one peer.
type PeerPath struct {
	Key  Key
	Name string
	// Direct is true when packets go straight to Addr.
	Direct bool
	Addr   netip.AddrPort
	// Via is the relay's key when packets go through a relay: the first
	// one, which may pass them on through relays of its own.
	Via     Key
	ViaName string
	// Confirmed is true when a pong came back over the path recently; an
	// unconfirmed path is a guess.
	Confirmed bool
	// RTT is the last round-trip time measured over the path.
	RTT time.Duration
}

// String describes the path: "direct 192.0.2.2:51820", "relay via r1",
// with " (unconfirmed)" for a guess, or "none".
func (p PeerPath) String() string {
	var s string
	switch {
	case p.Direct:
		s = "direct " + p.Addr.String()
	case !p.Via.IsZero():
		s = "relay via " + cmp.Or(p.ViaName, p.Via.ShortString())
	default:
		return "none"
	}
	if !p.Confirmed {
		s += " (unconfirmed)"
	}
	return s
}

// Status returns the path to every peer, sorted by name.
func (b *Bind) Status() []PeerPath {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.table.Load()
	out := make([]PeerPath, 0, len(t.list))
	for _, p := range t.list {
		pp := PeerPath{Key: p.key, Name: p.name}
		if c := p.route.Load(); c != nil {
			pp.Confirmed, pp.RTT = c.confirmed, c.rtt
			switch c.kind {
			case choiceDirect:
				pp.Direct, pp.Addr = true, c.addr
			case choiceRelay:
				pp.Via = c.via
				if r := t.byKey[c.via]; r != nil {
					pp.ViaName = r.name
				}
			}
		}
		out = append(out, pp)
	}
	return out
}

// Stats returns the counters.
func (b *Bind) Stats() Stats { return b.stats.snapshot() }

// Port returns the UDP port while open, or 0.
func (b *Bind) Port() uint16 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.port
}
