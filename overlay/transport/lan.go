package transport

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// LANConfig configures LAN discovery (RunLAN).
type LANConfig struct {
	// Port is the UDP port announces are sent to and received on; all
	// boxes of a LAN must agree on it. 0 means DefaultLANPort.
	Port uint16

	// Interval is how often the box announces itself; it also announces
	// at start. 0 means DefaultLANInterval.
	Interval time.Duration

	// Skip names an interface never announced on, the overlay's own.
	// Empty skips none. Loopback and interfaces that are down or cannot
	// multicast are always skipped.
	Skip string

	// Interfaces lists the candidate interfaces. Nil means
	// net.Interfaces.
	Interfaces func() ([]net.Interface, error)
}

var (
	lanGroup4 = netip.MustParseAddr("224.0.0.1") // all systems, RFC 1112 section 4
	lanGroup6 = netip.MustParseAddr("ff02::1")   // all nodes, RFC 4291 section 2.7.1
)

// RunLAN announces this box on its LANs and hands the announces it hears to
// HandleAnnounce, until ctx is done; then it closes its sockets, waits for
// its goroutines and returns nil. It returns an error only when it cannot
// listen at all. Announces go out while the Bind is open. Run it at most
// once at a time.
func (b *Bind) RunLAN(ctx context.Context, cfg LANConfig) error {
	port := cmp.Or(cfg.Port, DefaultLANPort)
	interval := cmp.Or(cfg.Interval, DefaultLANInterval)
	ifaces := cfg.Interfaces
	if ifaces == nil {
		ifaces = net.Interfaces
	}
	lc := net.ListenConfig{Control: reuseAddr}
	c4, err4 := lc.ListenPacket(ctx, "udp4", fmt.Sprintf("0.0.0.0:%d", port))
	c6, err6 := lc.ListenPacket(ctx, "udp6", fmt.Sprintf("[::]:%d", port))
	if err4 != nil && err6 != nil {
		return fmt.Errorf("listening for lan announces on port %d: %w", port, errors.Join(err4, err6))
	}
	var p4 *ipv4.PacketConn
	var p6 *ipv6.PacketConn
	var wg sync.WaitGroup
	if err4 == nil {
		p4 = ipv4.NewPacketConn(c4)
		p4.SetMulticastLoopback(false)
		p4.SetMulticastTTL(1)
		wg.Go(func() { b.readAnnounces(c4) })
	} else {
		b.log.Debug("no ipv4 lan discovery", "err", err4)
	}
	if err6 == nil {
		p6 = ipv6.NewPacketConn(c6)
		p6.SetMulticastLoopback(false)
		p6.SetMulticastHopLimit(1)
		wg.Go(func() { b.readAnnounces(c6) })
	} else {
		b.log.Debug("no ipv6 lan discovery", "err", err6)
	}
	t := time.NewTicker(interval)
	for {
		b.announce(ifaces, cfg.Skip, port, p4, p6)
		select {
		case <-t.C:
			continue
		case <-ctx.Done():
		}
		break
	}
	t.Stop()
	if c4 != nil {
		c4.Close()
	}
	if c6 != nil {
		c6.Close()
	}
	wg.Wait()
	return nil
}

// readAnnounces reads announces until c is closed.
func (b *Bind) readAnnounces(c net.PacketConn) {
	buf := make([]byte, 2*AnnounceLen) // longer ones are malformed anyway
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				b.log.Debug("reading lan announces failed", "err", err)
			}
			return
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		b.HandleAnnounce(ua.AddrPort().Addr(), buf[:n])
	}
}

// announce sends one announce per interface and address family.
func (b *Bind) announce(ifaces func() ([]net.Interface, error), skip string, port uint16, p4 *ipv4.PacketConn, p6 *ipv6.PacketConn) {
	wgPort := b.Port()
	if wgPort == 0 {
		return
	}
	list, err := ifaces()
	if err != nil {
		b.log.Debug("listing interfaces failed", "err", err)
		return
	}
	pkt := AppendAnnounce(make([]byte, 0, AnnounceLen), b.public, wgPort)
	dst4 := &net.UDPAddr{IP: lanGroup4.AsSlice(), Port: int(port)}
	for _, ifi := range list {
		const need = net.FlagUp | net.FlagMulticast
		if ifi.Flags&need != need || ifi.Flags&net.FlagLoopback != 0 || ifi.Name == skip {
			continue
		}
		v4, v6 := addressFamilies(&ifi)
		if p4 != nil && v4 {
			b.sendAnnounce(func() error {
				_, err := p4.WriteTo(pkt, &ipv4.ControlMessage{IfIndex: ifi.Index}, dst4)
				return err
			}, ifi.Name, lanGroup4)
		}
		if p6 != nil && v6 {
			dst6 := &net.UDPAddr{IP: lanGroup6.AsSlice(), Port: int(port), Zone: ifi.Name}
			b.sendAnnounce(func() error {
				_, err := p6.WriteTo(pkt, nil, dst6)
				return err
			}, ifi.Name, lanGroup6)
		}
	}
}

func (b *Bind) sendAnnounce(send func() error, iface string, group netip.Addr) {
	if err := send(); err != nil {
		b.stats.sendErrors.Add(1)
		b.log.Debug("sending lan announce failed", "interface", iface, "group", group, "err", err)
		return
	}
	b.stats.lanOut.Add(1)
}

// addressFamilies reports whether ifi has an IPv4 address and an IPv6 one.
func addressFamilies(ifi *net.Interface) (v4, v6 bool) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return false, false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if n.IP.To4() != nil {
				v4 = true
			} else {
				v6 = true
			}
		}
	}
	return v4, v6
}
