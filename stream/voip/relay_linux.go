package voip

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The Linux relay engine: non-blocking UDP sockets in one epoll set, served
// by one goroutine with plain recvfrom/sendto (no per-packet allocation,
// no goroutine per socket), the way rtpengine's userspace path works.

// relaySocket is the platform part of a leg.
type relaySocket struct {
	fd int
	v6 bool // AF_INET6 socket (dual stack)
}

// rawAddr is a destination in sockaddr form, ready for sendto.
type rawAddr struct {
	buf [unix.SizeofSockaddrInet6]byte
	len uint32
}

func toRaw(ap netip.AddrPort, v6 bool) rawAddr {
	var r rawAddr
	if !ap.IsValid() {
		return r
	}
	a := ap.Addr()
	if !v6 {
		if !a.Unmap().Is4() {
			return r // an IPv4 socket cannot reach it
		}
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&r.buf[0]))
		sa.Family = unix.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
		sa.Addr = a.Unmap().As4()
		r.len = unix.SizeofSockaddrInet4
		return r
	}
	sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&r.buf[0]))
	sa.Family = unix.AF_INET6
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
	sa.Addr = a.As16()
	r.len = unix.SizeofSockaddrInet6
	return r
}

func fromRaw(r *rawAddr) netip.AddrPort {
	switch binary.NativeEndian.Uint16(r.buf[:2]) {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&r.buf[0]))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&r.buf[0]))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]))
	}
	return netip.AddrPort{}
}

type relayEngine struct {
	r    *Relay
	epfd int
	wake int // eventfd: Close and pending removals

	// mu guards the following.
	mu      sync.Mutex
	legs    map[int32]*relayLeg // by fd
	pending []*relayLeg         // removed, to be closed by the loop
	running bool
	stopped bool
	done    chan struct{} // closed when run returns
}

func newRelayEngine(r *Relay) (*relayEngine, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	return &relayEngine{r: r, epfd: epfd, wake: wake, legs: make(map[int32]*relayLeg), done: make(chan struct{})}, nil
}

// open binds a non-blocking UDP socket to port.
func (e *relayEngine) open(port uint16) (relaySocket, error) {
	addr := e.r.cfg.Addr
	v6 := !addr.IsValid() || (addr.Is6() && !addr.Is4In6())
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return relaySocket{}, fmt.Errorf("socket: %w", err)
	}
	var sa unix.Sockaddr
	if v6 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
		s6 := &unix.SockaddrInet6{Port: int(port)}
		if addr.IsValid() {
			s6.Addr = addr.As16()
		}
		sa = s6
	} else {
		sa = &unix.SockaddrInet4{Port: int(port), Addr: addr.Unmap().As4()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EADDRINUSE) {
			return relaySocket{}, fmt.Errorf("binding port %d: %w", port, errPortInUse)
		}
		return relaySocket{}, fmt.Errorf("binding port %d: %w", port, err)
	}
	return relaySocket{fd: fd, v6: v6}, nil
}

func (e *relayEngine) closeSocket(s relaySocket) { unix.Close(s.fd) }

func (e *relayEngine) add(l *relayLeg) {
	e.mu.Lock()
	e.legs[int32(l.sock.fd)] = l
	e.mu.Unlock()
	_ = unix.EpollCtl(e.epfd, unix.EPOLL_CTL_ADD, l.sock.fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(l.sock.fd)})
}

// remove takes l out of the set; its socket is closed by the loop (so that
// a reused descriptor number never meets a stale event), or right away
// when no loop runs.
func (e *relayEngine) remove(l *relayLeg) {
	e.mu.Lock()
	if !e.running {
		delete(e.legs, int32(l.sock.fd))
		e.mu.Unlock()
		_ = unix.EpollCtl(e.epfd, unix.EPOLL_CTL_DEL, l.sock.fd, nil)
		unix.Close(l.sock.fd)
		return
	}
	e.pending = append(e.pending, l)
	first := len(e.pending) == 1
	e.mu.Unlock()
	if first {
		e.signal()
	}
}

func (e *relayEngine) signal() {
	var one = [8]byte{1}
	_, _ = unix.Write(e.wake, one[:])
}

func (e *relayEngine) reap() {
	e.mu.Lock()
	p := e.pending
	e.pending = nil
	for _, l := range p {
		delete(e.legs, int32(l.sock.fd))
	}
	e.mu.Unlock()
	for _, l := range p {
		_ = unix.EpollCtl(e.epfd, unix.EPOLL_CTL_DEL, l.sock.fd, nil)
		unix.Close(l.sock.fd)
	}
}

func (e *relayEngine) run(ctx context.Context) error {
	e.mu.Lock()
	if e.running || e.stopped {
		e.mu.Unlock()
		return errEngineClosed
	}
	e.running = true
	e.mu.Unlock()
	defer close(e.done)
	defer func() {
		e.mu.Lock()
		e.running = false
		e.mu.Unlock()
		e.reap()
	}()
	stop := context.AfterFunc(ctx, func() {
		e.mu.Lock()
		e.stopped = true
		e.mu.Unlock()
		e.signal()
	})
	defer stop()

	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, 2048)
	var from rawAddr
	for {
		n, err := unix.EpollWait(e.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for _, ev := range events[:n] {
			if int(ev.Fd) == e.wake {
				var b [8]byte
				_, _ = unix.Read(e.wake, b[:])
				continue
			}
			e.mu.Lock()
			l := e.legs[ev.Fd]
			e.mu.Unlock()
			if l == nil || l.done.Load() {
				continue
			}
			for range 64 { // drain, but let other sockets have a turn
				from.len = uint32(len(from.buf))
				m, _, errno := syscall.Syscall6(unix.SYS_RECVFROM, uintptr(l.sock.fd),
					uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0,
					uintptr(unsafe.Pointer(&from.buf[0])), uintptr(unsafe.Pointer(&from.len)))
				if errno != 0 {
					break // EAGAIN, or an ICMP error reported on the socket
				}
				peer, dst, ok := e.r.forwardTarget(l, fromRaw(&from), int(m))
				if !ok {
					continue
				}
				_, _, _ = syscall.Syscall6(unix.SYS_SENDTO, uintptr(peer.sock.fd),
					uintptr(unsafe.Pointer(&buf[0])), m, 0,
					uintptr(unsafe.Pointer(&dst.buf[0])), uintptr(dst.len))
			}
		}
		e.mu.Lock()
		stopped, more := e.stopped, len(e.pending) > 0
		e.mu.Unlock()
		if more {
			e.reap()
		}
		if stopped {
			return nil
		}
	}
}

// close stops the loop, waits for it and closes every socket.
func (e *relayEngine) close() error {
	e.mu.Lock()
	e.stopped = true
	running := e.running
	e.mu.Unlock()
	if running {
		e.signal()
		<-e.done
	}
	e.mu.Lock()
	e.running = false
	legs := e.legs
	e.legs = map[int32]*relayLeg{}
	e.pending = nil
	e.mu.Unlock()
	for fd := range legs {
		unix.Close(int(fd))
	}
	return errors.Join(unix.Close(e.epfd), unix.Close(e.wake))
}
