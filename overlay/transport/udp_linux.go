package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
)

// newUDPBind returns the Bind's default inner Bind: udpBind.
func newUDPBind() conn.Bind { return &udpBind{mark: -1} }

// udpBind is a conn.Bind on one UDP socket, with recvmmsg/sendmmsg and UDP
// GRO/GSO like wireguard-go's StdNetBind, that allocates nothing per
// packet. StdNetBind allocates an endpoint (and its address) for every
// datagram it receives: at a few hundred thousand packets a second that
// garbage runs the GC several times a second, and every cycle empties
// wireguard-go's sync.Pools of 64 KiB buffers, which are then allocated
// again, zeroed and made resident. Here received source addresses map to
// cached endpoints, and the syscall scratch space is reused.
//
// The socket is dual stack (IPv6 with IPv4-mapped addresses) where the host
// has IPv6, else IPv4: one socket, so one receiving goroutine in WireGuard
// and one set of its per-reader buffers instead of two. Unlike StdNetBind
// it does not keep a sticky source address (IP_PKTINFO): replies leave from
// the address the kernel's routes choose.
type udpBind struct {
	// mu guards the following; the packet path reads conn through the
	// snapshot in udpSocket.
	mu   sync.Mutex
	sock *udpSocket // nil while closed
	mark int        // SO_MARK to apply on Open, -1 for none

	sends chan *udpSend // free send scratch, see getSend
}

// udpSocket is one open socket; it is immutable but for gso.
type udpSocket struct {
	conn *net.UDPConn
	rc   syscall.RawConn
	v6   bool        // AF_INET6: IPv4 peers as mapped addresses
	gro  bool        // UDP_GRO is on
	gso  atomic.Bool // UDP_SEGMENT works (cleared when the device refuses it)
}

const (
	// udpBatch is the batch size: conn.IdealBatchSize.
	udpBatch = conn.IdealBatchSize
	// groMaxSegments is the most datagrams the kernel coalesces into one
	// (UDP_GRO_CNT_MAX), and the most we coalesce with GSO.
	groMaxSegments = 64
	// gsoMaxBytes is the largest UDP payload of a GSO send.
	gsoMaxBytes = 65507
	// udpSocketBuffer is the socket buffer size asked for, as StdNetBind.
	udpSocketBuffer = 7 << 20
	// endpointCacheMax bounds the endpoints a reader keeps per source
	// address; spoofed sources could otherwise grow the cache without end.
	endpointCacheMax = 4096
)

// oobSpace is the control message room per datagram: one int (UDP_GRO on
// receive, UDP_SEGMENT on send; the kernel sends a 2-byte segment size
// but accepts and reports ints).
var oobSpace = unix.CmsgSpace(4)

var _ conn.Bind = (*udpBind)(nil)

// Open implements conn.Bind.
func (b *udpBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sock != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	if b.sends == nil {
		b.sends = make(chan *udpSend, 8)
	}
	// "udp" on the unspecified address is one dual-stack IPv6 socket
	// where IPv6 works, an IPv4 socket where it does not.
	pc, err := (&net.ListenConfig{}).ListenPacket(context.Background(), "udp", ":"+strconv.Itoa(int(port)))
	if err != nil {
		return nil, 0, fmt.Errorf("opening UDP port %d: %w", port, err)
	}
	uc := pc.(*net.UDPConn)
	rc, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return nil, 0, fmt.Errorf("opening UDP port %d: %w", port, err)
	}
	s := &udpSocket{conn: uc, rc: rc}
	var serr error
	err = rc.Control(func(fd uintptr) {
		sa, err := unix.Getsockname(int(fd))
		if err != nil {
			serr = err
			return
		}
		_, s.v6 = sa.(*unix.SockaddrInet6)
		setBuffers(int(fd))
		s.gro = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
		_, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		s.gso.Store(err == nil)
		if b.mark >= 0 {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, b.mark)
		}
	})
	if err = errors.Join(err, serr); err != nil {
		uc.Close()
		return nil, 0, fmt.Errorf("configuring UDP port %d: %w", port, err)
	}
	b.sock = s
	r := newUDPReader(s)
	return []conn.ReceiveFunc{r.receive}, uint16(uc.LocalAddr().(*net.UDPAddr).Port), nil
}

// setBuffers asks for large socket buffers, beyond the sysctl limits when
// privileged, as StdNetBind does; failures leave the defaults.
func setBuffers(fd int) {
	for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[0], udpSocketBuffer) != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[1], udpSocketBuffer)
		}
	}
}

// Close implements conn.Bind. Receive functions return net.ErrClosed.
func (b *udpBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sock == nil {
		return nil
	}
	err := b.sock.conn.Close()
	b.sock = nil
	return err
}

// SetMark implements conn.Bind.
func (b *udpBind) SetMark(mark uint32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mark = int(mark)
	if b.sock == nil {
		return nil
	}
	var serr error
	err := b.sock.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
	})
	if err = errors.Join(err, serr); err != nil {
		return fmt.Errorf("setting socket mark: %w", err)
	}
	return nil
}

// BatchSize implements conn.Bind.
func (b *udpBind) BatchSize() int { return udpBatch }

// ParseEndpoint implements conn.Bind.
func (b *udpBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, fmt.Errorf("parsing endpoint %q: %w", s, err)
	}
	return &conn.StdNetEndpoint{AddrPort: ap}, nil
}

func (b *udpBind) socket() *udpSocket {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sock
}

// udpReader is the scratch space of the one goroutine that calls a
// ReceiveFunc.
type udpReader struct {
	s     *udpSocket
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for IPv4 too
	oob   []byte
	eps   map[netip.AddrPort]*conn.StdNetEndpoint
	// The syscall's arguments and results; readFn is bound once, so that
	// RawConn.Read does not allocate a closure per call.
	nmsg, got int
	errno     syscall.Errno
	readFn    func(fd uintptr) bool
}

func newUDPReader(s *udpSocket) *udpReader {
	r := &udpReader{
		s:     s,
		hdrs:  make([]unix.Mmsghdr, udpBatch),
		iovs:  make([]unix.Iovec, udpBatch),
		names: make([]unix.RawSockaddrInet6, udpBatch),
		oob:   make([]byte, udpBatch*oobSpace),
		eps:   make(map[netip.AddrPort]*conn.StdNetEndpoint),
	}
	r.readFn = r.read
	return r
}

// read runs recvmmsg on the non-blocking socket; false asks the poller to
// wait.
func (r *udpReader) read(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(r.nmsg), 0, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		r.got, r.errno = int(n), e
		return true
	}
}

// receive implements conn.ReceiveFunc. With GRO it reads up to
// len(bufs)/groMaxSegments datagrams into the last slots and splits them
// into the slots from the first on.
func (r *udpReader) receive(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	readAt, m := 0, min(len(bufs), len(r.hdrs))
	if r.s.gro {
		m = max(1, m/groMaxSegments)
		readAt = len(bufs) - m
	}
	for i := range m {
		buf := bufs[readAt+i]
		r.iovs[i] = unix.Iovec{Base: unsafe.SliceData(buf)}
		r.iovs[i].SetLen(len(buf))
		h := &r.hdrs[i].Hdr
		*h = unix.Msghdr{
			Name:    (*byte)(unsafe.Pointer(&r.names[i])),
			Namelen: unix.SizeofSockaddrInet6,
			Iov:     &r.iovs[i],
			Control: &r.oob[i*oobSpace],
		}
		h.SetIovlen(1)
		h.SetControllen(oobSpace)
	}
	r.nmsg = m
	if err := r.s.rc.Read(r.readFn); err != nil {
		return 0, err
	}
	if r.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", r.errno)
	}
	n := 0
	for i := range r.got {
		size := int(r.hdrs[i].Len)
		if size == 0 {
			continue
		}
		ep := r.endpoint(&r.names[i])
		if ep == nil {
			continue
		}
		seg := groSize(r.oob[i*oobSpace : i*oobSpace+int(r.hdrs[i].Hdr.Controllen)])
		if seg <= 0 || seg >= size {
			seg = size
		}
		src := bufs[readAt+i][:size]
		for off := 0; off < size; off += seg {
			// A slot may take a segment only once its own datagram has
			// been split: never a later one's.
			if n > readAt+i {
				break
			}
			if n == readAt+i && off == 0 {
				sizes[n] = min(seg, size) // already in place
			} else {
				sizes[n] = copy(bufs[n], src[off:min(off+seg, size)])
			}
			eps[n] = ep
			n++
		}
	}
	return n, nil
}

// endpoint returns the cached endpoint of a received source address.
func (r *udpReader) endpoint(sa *unix.RawSockaddrInet6) *conn.StdNetEndpoint {
	var ap netip.AddrPort
	switch sa.Family {
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		ap = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		ap = netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(p[0])<<8|uint16(p[1]))
	default:
		return nil
	}
	ep := r.eps[ap]
	if ep == nil {
		if len(r.eps) >= endpointCacheMax {
			clear(r.eps)
		}
		ep = &conn.StdNetEndpoint{AddrPort: ap}
		r.eps[ap] = ep
	}
	return ep
}

// groSize returns the segment size of a UDP_GRO control message in oob,
// or 0.
func groSize(oob []byte) int {
	hdr := unix.CmsgLen(0)
	for len(oob) >= hdr {
		c := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(c.Len)
		if l < hdr || l > len(oob) {
			return 0
		}
		if c.Level == unix.IPPROTO_UDP && c.Type == unix.UDP_GRO && l >= hdr+4 {
			return int(*(*int32)(unsafe.Pointer(&oob[hdr])))
		}
		oob = oob[min(unix.CmsgSpace(l-hdr), len(oob)):]
	}
	return 0
}

// udpSend is the scratch space of one Send.
type udpSend struct {
	s    *udpSocket
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	oob  []byte
	name unix.RawSockaddrInet6
	// The syscall's progress; writeFn is bound once.
	off, nmsg int
	errno     syscall.Errno
	writeFn   func(fd uintptr) bool
}

// getSend returns free send scratch. A buffered channel keeps the free
// ones rather than a sync.Pool, which the GC empties.
func (b *udpBind) getSend() *udpSend {
	select {
	case u := <-b.sends:
		return u
	default:
		u := &udpSend{
			hdrs: make([]unix.Mmsghdr, udpBatch),
			iovs: make([]unix.Iovec, udpBatch),
			oob:  make([]byte, udpBatch*oobSpace),
		}
		u.writeFn = u.write
		return u
	}
}

func (b *udpBind) putSend(u *udpSend) {
	u.s = nil
	clear(u.iovs) // drop references to the packets
	select {
	case b.sends <- u:
	default:
	}
}

// write runs sendmmsg until every message is sent.
func (u *udpSend) write(fd uintptr) bool {
	for u.off < u.nmsg {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&u.hdrs[u.off])), uintptr(u.nmsg-u.off), 0, 0, 0)
		switch e {
		case 0:
			u.off += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			u.errno = e
			return true
		}
	}
	return true
}

// Send implements conn.Bind. With GSO, runs of equal-sized packets (the
// last of a run may be shorter) leave as one datagram the kernel or the
// device splits.
func (b *udpBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	s := b.socket()
	if s == nil {
		return net.ErrClosed
	}
	var ap netip.AddrPort
	if e, ok := ep.(*conn.StdNetEndpoint); ok {
		ap = e.AddrPort
	} else {
		ap = addrOf(ep)
	}
	u := b.getSend()
	defer b.putSend(u)
	u.s = s
	namelen, err := u.setName(ap, s.v6)
	if err != nil {
		return err
	}
	for len(bufs) > 0 {
		chunk := bufs[:min(len(bufs), udpBatch)]
		bufs = bufs[len(chunk):]
		gso := s.gso.Load()
		err = u.send(chunk, namelen, gso)
		if gso && errors.Is(err, unix.EIO) {
			// The device cannot checksum segments: no GSO from now on.
			s.gso.Store(false)
			err = u.send(chunk, namelen, false)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// setName writes the destination address for a socket of the family.
func (u *udpSend) setName(ap netip.AddrPort, v6 bool) (uint32, error) {
	port := ap.Port()
	if v6 {
		u.name = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ap.Addr().As16()}
		p := (*[2]byte)(unsafe.Pointer(&u.name.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		return unix.SizeofSockaddrInet6, nil
	}
	a := ap.Addr().Unmap()
	if !a.Is4() {
		return 0, fmt.Errorf("sending to %s: %w", ap, errNoIPv6)
	}
	sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&u.name))
	*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
	p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	return unix.SizeofSockaddrInet4, nil
}

var errNoIPv6 = errors.New("no IPv6 socket")

// send builds the messages for bufs and sends them.
func (u *udpSend) send(bufs [][]byte, namelen uint32, gso bool) error {
	nmsg := 0
	for i := 0; i < len(bufs); {
		// A run: packets of the first one's size, the last maybe shorter.
		j, total := i+1, len(bufs[i])
		if gso {
			for j < len(bufs) && j-i < groMaxSegments && len(bufs[j-1]) == len(bufs[i]) &&
				len(bufs[j]) <= len(bufs[i]) && total+len(bufs[j]) <= gsoMaxBytes {
				total += len(bufs[j])
				j++
			}
		}
		for k := i; k < j; k++ {
			u.iovs[k] = unix.Iovec{Base: unsafe.SliceData(bufs[k])}
			u.iovs[k].SetLen(len(bufs[k]))
		}
		h := &u.hdrs[nmsg].Hdr
		*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&u.name)), Namelen: namelen, Iov: &u.iovs[i]}
		h.SetIovlen(j - i)
		if j-i > 1 {
			oob := u.oob[nmsg*oobSpace : (nmsg+1)*oobSpace]
			c := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
			c.Level, c.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
			c.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Pointer(&oob[unix.CmsgLen(0)])) = uint16(len(bufs[i]))
			h.Control = &oob[0]
			h.SetControllen(unix.CmsgSpace(2))
		}
		nmsg++
		i = j
	}
	u.off, u.nmsg, u.errno = 0, nmsg, 0
	if err := u.s.rc.Write(u.writeFn); err != nil {
		return err
	}
	if u.errno != 0 {
		return os.NewSyscallError("sendmmsg", u.errno)
	}
	return nil
}
