package proxy

import (
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// Coalescing of bulk reads (see copyReady): a read of at least
// coalesceMin bytes means a transfer is under way, and the copy keeps
// reading for at most coalesceWait, yielding in between, until it holds
// coalesceTarget bytes. Interactive traffic (smaller reads) is never held.
const (
	coalesceMin    = 8 << 10
	coalesceTarget = 64 << 10
	coalesceWait   = 20 * time.Microsecond
)

// copyReady waits, holding no buffer, until src has bytes (or its end, an
// error, or its read deadline), then moves one read of at most n bytes to
// dst. ok is always true on Linux.
//
// The reads and writes are raw system calls on the non-blocking sockets:
// they never block, and as plain system calls a large loopback write
// outlasted the runtime's 20 µs syscall tick, so that its monitor handed
// the processor to another thread and back (measured: 15,000 thread
// switches/s on the proxy's core against Squid's 2,000; a fifth less CPU
// per byte without them).
//
// A proxy that forwards every piece as it arrives makes the two ends do
// more work per byte: with a core to spare it drained the origin's socket
// in 16–32 KiB reads, and the client then took more, smaller segments and
// more wake-ups. Waiting up to coalesceWait for a fuller buffer gave 8–11 %
// more tunnel throughput with the client and origin on one core
// (bench-proxy's CONNECT test).
func copyReady(dst, src *net.TCPConn, n int64) (w int64, err error, ok bool) {
	rc, err := src.SyscallConn()
	if err != nil {
		return 0, err, true
	}
	wc, err := dst.SyscallConn()
	if err != nil {
		return 0, err, true
	}
	var bp *[]byte
	var r int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		if bp == nil {
			bp = tunnelBufPool.Get().(*[]byte)
		}
		buf := (*bp)[:min(int64(len(*bp)), n)]
		r0, e := rawRead(fd, buf)
		for e == syscall.EINTR {
			r0, e = rawRead(fd, buf)
		}
		switch {
		case e == syscall.EAGAIN:
			tunnelBufPool.Put(bp) // wait for readability holding no buffer
			bp = nil
			return false
		case e != 0:
			rerr = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", e)}
			return true
		case r0 == 0:
			rerr = io.EOF
			return true
		}
		r = r0
		if r >= coalesceMin && r < coalesceTarget && r < len(buf) {
			r = coalesce(fd, buf, r)
		}
		return true
	})
	if bp != nil {
		defer tunnelBufPool.Put(bp)
	}
	if err != nil {
		return 0, err, true
	}
	if r > 0 {
		buf := (*bp)[:r]
		var werr error
		err = wc.Write(func(fd uintptr) bool {
			for len(buf) > 0 {
				k, e := rawWrite(fd, buf)
				switch {
				case e == syscall.EAGAIN:
					return false // wait for room
				case e == syscall.EINTR:
					continue
				case e != 0:
					werr = &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", e)}
					return true
				}
				w += int64(k)
				buf = buf[k:]
			}
			return true
		})
		if err == nil {
			err = werr
		}
		if err != nil {
			return w, err, true
		}
	}
	return int64(r), rerr, true
}

// coalesce reads more from fd into buf after the r bytes already there,
// for at most coalesceWait, until it holds coalesceTarget bytes or buf is
// full, and returns the new count. An end or error stays in the socket
// for the next read to see.
func coalesce(fd uintptr, buf []byte, r int) int {
	until := time.Now().Add(coalesceWait)
	for r < coalesceTarget && r < len(buf) && time.Now().Before(until) {
		runtime.Gosched() // the other direction and other tunnels run meanwhile
		k, e := rawRead(fd, buf[r:])
		switch {
		case e == syscall.EAGAIN || e == syscall.EINTR:
			continue
		case e != 0 || k == 0:
			return r
		}
		r += k
	}
	return r
}

// rawRead and rawWrite are read(2) and write(2) without the scheduler's
// system call bookkeeping: only for non-blocking descriptors.
func rawRead(fd uintptr, b []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}

func rawWrite(fd uintptr, b []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}
