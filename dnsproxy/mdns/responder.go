package mdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// The mDNS groups (RFC 6762 §3).
var (
	group4 = netip.MustParseAddr("224.0.0.251")
	group6 = netip.MustParseAddr("ff02::fb")
)

const (
	// tickEvery is how often the run loop looks for due work.
	tickEvery = 100 * time.Millisecond
	// addrsEvery is how often the run loop rereads the box's addresses.
	addrsEvery = 5 * time.Second
	// queueLen bounds the packets waiting for the run loop.
	queueLen = 256
	// maxRecv is the largest mDNS message read (RFC 6762 §17).
	maxRecv = 9000
)

// Responder is the mDNS responder and browser of one LAN interface. Its
// methods are safe for concurrent use.
type Responder struct {
	// immutable after New
	cfg    Config
	update chan struct{}
	signal chan struct{}
	ran    atomic.Bool
	m      counters

	// mu guards found.
	mu    sync.Mutex
	found []Found
}

// New returns a Responder for cfg. It checks cfg but opens nothing: Run
// opens the sockets.
func New(cfg Config) (*Responder, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Responder{cfg: c, update: make(chan struct{}, 1), signal: make(chan struct{}, 1)}, nil
}

// Update tells the responder that Config.Services changed: it calls it
// again, announces new and changed records and sends goodbyes for removed
// ones. It does not block; updates before Run are applied when Run starts.
func (r *Responder) Update() {
	select {
	case r.update <- struct{}{}:
	default:
	}
}

// Found returns the services found on the LAN by browsing Config.Browse,
// sorted by type and instance; the caller may keep and modify the slice.
func (r *Responder) Found() []Found {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.found)
	for i := range out {
		out[i].Addrs = slices.Clone(out[i].Addrs)
		out[i].TXT = slices.Clone(out[i].TXT)
	}
	return out
}

// FoundChanged returns a channel that receives a value after what Found
// returns has changed (not for mere refreshes). Changes close together are
// reported once.
func (r *Responder) FoundChanged() <-chan struct{} { return r.signal }

// Run speaks mDNS on the interface until ctx is done, then sends goodbyes
// for every record and returns after its goroutines exited. It opens its
// sockets in the network namespace of the calling thread; Config.Addrs nil
// reads the interface's addresses from the calling goroutine too. It may be
// called once.
func (r *Responder) Run(ctx context.Context) error {
	if !r.ran.CompareAndSwap(false, true) {
		return ErrAlreadyRun
	}
	ifi, err := findInterface(r.cfg.Interface)
	if err != nil {
		return err
	}
	conns, err := listen(ifi)
	if err != nil {
		return err
	}
	if len(conns) < 2 {
		r.cfg.Logger.Info("mdns without ipv6", "interface", ifi.Name)
	}
	packets := make(chan inPacket, queueLen)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer closeAll(conns)
	var fams family
	for _, c := range conns {
		fams |= c.fam
		wg.Go(func() { c.read(ifi.Index, packets, &r.m) })
	}
	host := r.cfg.Hostname + "." + local
	core := newCore(r.cfg.Logger, host, r.cfg.Browse, r.cfg.MaxFound, fams, &r.m)
	send := func(out []outgoing) {
		for _, o := range out {
			r.send(conns, ifi, o)
		}
		r.publish(core)
	}
	// An Update before Run is covered by the first zone.
	select {
	case <-r.update:
	default:
	}
	core.start(r.cfg.Now(), r.zone(ifi, host))
	r.cfg.Logger.Info("mdns started", "interface", ifi.Name, "host", host, "records", len(core.zone.records))
	ticker := time.NewTicker(tickEvery)
	defer ticker.Stop()
	nextAddrs := r.cfg.Now().Add(addrsEvery)
	for {
		select {
		case <-ctx.Done():
			send(core.stop())
			return nil
		case p := <-packets:
			send(core.handle(r.cfg.Now(), p.b, p.src, p.multicast, p.fam))
		case <-r.update:
			send(core.update(r.cfg.Now(), r.zone(ifi, host)))
		case <-ticker.C:
			now := r.cfg.Now()
			if !now.Before(nextAddrs) {
				nextAddrs = now.Add(addrsEvery)
				send(core.update(now, r.zone(ifi, host)))
			}
			send(core.tick(now))
		}
	}
}

// zone builds the records from the current addresses and services.
func (r *Responder) zone(ifi *net.Interface, host string) *zone {
	var addrs []netip.Addr
	if r.cfg.Addrs != nil {
		addrs = r.cfg.Addrs()
	} else {
		addrs = interfaceAddrs(ifi)
	}
	var services []Service
	if r.cfg.Services != nil {
		services = r.cfg.Services()
	}
	z, errs := buildZone(host, addrs, services)
	for _, err := range errs {
		r.cfg.Logger.Warn("mdns service skipped", "err", err)
	}
	r.m.records.Store(int64(len(z.records)))
	return z
}

// publish makes the core's found services visible to Found.
func (r *Responder) publish(c *core) {
	r.m.cached.Store(int64(c.cache.n))
	if !c.foundChanged {
		return
	}
	c.foundChanged = false
	r.mu.Lock()
	r.found = c.found
	r.mu.Unlock()
	r.m.found.Store(int64(len(c.found)))
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

func (r *Responder) send(conns []*conn, ifi *net.Interface, o outgoing) {
	b, err := o.msg.Pack()
	if err != nil {
		r.m.sendErrors.Add(1)
		r.cfg.Logger.Warn("mdns pack failed", "err", err)
		return
	}
	for _, c := range conns {
		var to *net.UDPAddr
		switch {
		case o.to.IsValid() && o.to.Addr().Unmap().Is4() == (c.fam == fam4):
			to = net.UDPAddrFromAddrPort(o.to)
		case !o.to.IsValid() && o.fams&c.fam != 0:
			to = &net.UDPAddr{IP: c.group.AsSlice(), Port: mdnsPort}
			if c.fam == fam6 {
				to.Zone = ifi.Name
			}
		default:
			continue
		}
		if _, err := c.pc.WriteTo(b, to); err != nil {
			r.m.sendErrors.Add(1)
			r.cfg.Logger.Debug("mdns send failed", "to", to, "err", err)
			continue
		}
		r.m.sent.Add(1)
	}
}

// inPacket is a packet for the run loop.
type inPacket struct {
	b         []byte
	src       netip.AddrPort
	multicast bool
	fam       family
}

// conn is the socket of one family, bound to port 5353 and joined to the
// group on the interface.
type conn struct {
	fam   family
	group netip.Addr
	pc    net.PacketConn
	p4    *ipv4.PacketConn
	p6    *ipv6.PacketConn
}

// read passes the packets that arrived on interface index to packets until
// the socket is closed.
func (c *conn) read(index int, packets chan<- inPacket, m *counters) {
	buf := make([]byte, maxRecv)
	for {
		var (
			n       int
			src     net.Addr
			ifIndex int
			dst     net.IP
			err     error
		)
		if c.p4 != nil {
			var cm *ipv4.ControlMessage
			n, cm, src, err = c.p4.ReadFrom(buf)
			if cm != nil {
				ifIndex, dst = cm.IfIndex, cm.Dst
			}
		} else {
			var cm *ipv6.ControlMessage
			n, cm, src, err = c.p6.ReadFrom(buf)
			if cm != nil {
				ifIndex, dst = cm.IfIndex, cm.Dst
			}
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if ifIndex != index {
			m.foreign.Add(1)
			continue
		}
		ua, ok := src.(*net.UDPAddr)
		if !ok {
			continue
		}
		p := inPacket{b: slices.Clone(buf[:n]), src: ua.AddrPort(), multicast: dst.IsMulticast(), fam: c.fam}
		p.src = netip.AddrPortFrom(p.src.Addr().Unmap(), p.src.Port())
		select {
		case packets <- p:
		default:
			m.queueFull.Add(1)
		}
	}
}

func closeAll(conns []*conn) {
	for _, c := range conns {
		c.pc.Close()
	}
}

// findInterface returns the named interface, or the first one that is up,
// not loopback, multicast-capable and has an IPv4 address.
func findInterface(name string) (*net.Interface, error) {
	if name != "" {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("finding mdns interface %s: %w", name, err)
		}
		return ifi, nil
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces for mdns: %w", err)
	}
	for i := range ifs {
		ifi := &ifs[i]
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagLoopback != 0 || ifi.Flags&net.FlagMulticast == 0 {
			continue
		}
		if slices.ContainsFunc(interfaceAddrs(ifi), netip.Addr.Is4) {
			return ifi, nil
		}
	}
	return nil, fmt.Errorf("%w: Interface empty and no interface is up with multicast and IPv4", ErrInvalidConfig)
}

// interfaceAddrs returns the usable addresses of ifi.
func interfaceAddrs(ifi *net.Interface) []netip.Addr {
	as, err := ifi.Addrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && usableAddr(ip.Unmap()) {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

// reuse lets other mDNS stacks on the same host bind port 5353 too.
func reuse(network, address string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}
	})
	return errors.Join(err, serr)
}

// listen opens the IPv4 socket (required) and the IPv6 one (when the
// interface has IPv6) on ifi.
func listen(ifi *net.Interface) ([]*conn, error) {
	lc := net.ListenConfig{Control: reuse}
	c4, err := listen4(lc, ifi)
	if err != nil {
		return nil, err
	}
	conns := []*conn{c4}
	if c6, err := listen6(lc, ifi); err == nil {
		conns = append(conns, c6)
	}
	return conns, nil
}

func listen4(lc net.ListenConfig, ifi *net.Interface) (*conn, error) {
	pc, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", mdnsPort))
	if err != nil {
		return nil, fmt.Errorf("listening for mdns on ipv4: %w", err)
	}
	p := ipv4.NewPacketConn(pc)
	err = errors.Join(
		p.JoinGroup(ifi, &net.UDPAddr{IP: group4.AsSlice()}),
		p.SetMulticastInterface(ifi),
		p.SetMulticastTTL(255), // RFC 6762 §11
		p.SetTTL(255),
		p.SetMulticastLoopback(false),
		p.SetControlMessage(ipv4.FlagInterface|ipv4.FlagDst, true),
	)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("joining the mdns group on %s: %w", ifi.Name, err)
	}
	return &conn{fam: fam4, group: group4, pc: pc, p4: p}, nil
}

func listen6(lc net.ListenConfig, ifi *net.Interface) (*conn, error) {
	pc, err := lc.ListenPacket(context.Background(), "udp6", fmt.Sprintf("[::]:%d", mdnsPort))
	if err != nil {
		return nil, fmt.Errorf("listening for mdns on ipv6: %w", err)
	}
	p := ipv6.NewPacketConn(pc)
	err = errors.Join(
		p.JoinGroup(ifi, &net.UDPAddr{IP: group6.AsSlice()}),
		p.SetMulticastInterface(ifi),
		p.SetMulticastHopLimit(255),
		p.SetHopLimit(255),
		p.SetMulticastLoopback(false),
		p.SetControlMessage(ipv6.FlagInterface|ipv6.FlagDst, true),
	)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("joining the mdns group on %s: %w", ifi.Name, err)
	}
	return &conn{fam: fam6, group: group6, pc: pc, p6: p}, nil
}
