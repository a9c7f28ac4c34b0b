//go:build !linux

package voip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// The portable relay engine: a goroutine per socket. Boxes run Linux and
// use the epoll engine; this one lets the package build and work
// elsewhere (development machines).

type relaySocket struct {
	c  *net.UDPConn
	v6 bool
}

type rawAddr struct {
	ap  netip.AddrPort
	len uint32 // 0: none
}

func toRaw(ap netip.AddrPort, _ bool) rawAddr {
	if !ap.IsValid() {
		return rawAddr{}
	}
	return rawAddr{ap: ap, len: 1}
}

type relayEngine struct {
	r *Relay

	mu      sync.Mutex
	ctx     context.Context // nil until run
	legs    map[*relayLeg]bool
	stopped bool
	wg      sync.WaitGroup
}

func newRelayEngine(r *Relay) (*relayEngine, error) {
	return &relayEngine{r: r, legs: map[*relayLeg]bool{}}, nil
}

func (e *relayEngine) open(port uint16) (relaySocket, error) {
	addr := e.r.cfg.Addr
	if !addr.IsValid() {
		addr = netip.IPv6Unspecified()
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, port)))
	if err != nil {
		return relaySocket{}, fmt.Errorf("binding port %d: %w (%w)", port, errPortInUse, err)
	}
	return relaySocket{c: c, v6: true}, nil
}

func (e *relayEngine) closeSocket(s relaySocket) { s.c.Close() }

func (e *relayEngine) add(l *relayLeg) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.legs[l] = true
	if e.ctx != nil && !e.stopped {
		e.serve(l)
	}
}

// serve starts l's goroutine; e.mu is held.
func (e *relayEngine) serve(l *relayLeg) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		buf := make([]byte, 2048)
		for {
			n, src, err := l.sock.c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			peer, dst, ok := e.r.forwardTarget(l, netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), n)
			if ok {
				_, _ = peer.sock.c.WriteToUDPAddrPort(buf[:n], dst.ap)
			}
		}
	}()
}

func (e *relayEngine) remove(l *relayLeg) {
	e.mu.Lock()
	delete(e.legs, l)
	e.mu.Unlock()
	l.sock.c.Close()
}

func (e *relayEngine) run(ctx context.Context) error {
	e.mu.Lock()
	if e.ctx != nil || e.stopped {
		e.mu.Unlock()
		return errEngineClosed
	}
	e.ctx = ctx
	for l := range e.legs {
		e.serve(l)
	}
	e.mu.Unlock()
	<-ctx.Done()
	return nil
}

func (e *relayEngine) close() error {
	e.mu.Lock()
	e.stopped = true
	var errs []error
	for l := range e.legs {
		errs = append(errs, l.sock.c.Close())
	}
	e.legs = map[*relayLeg]bool{}
	e.mu.Unlock()
	e.wg.Wait()
	return errors.Join(errs...)
}
