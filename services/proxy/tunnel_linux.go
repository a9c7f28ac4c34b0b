package proxy

import (
	"errors"
	"net"
	"syscall"
)

// copyReady waits, holding no buffer, until src has bytes (or its end, an
// error, or its read deadline), then moves one read of at most n bytes to
// dst. ok is always true on Linux.
func copyReady(dst, src *net.TCPConn, n int64) (w int64, err error, ok bool) {
	rc, err := src.SyscallConn()
	if err != nil {
		return 0, err, true
	}
	err = rc.Read(func(fd uintptr) bool {
		// Bytes, the end or an error: the read below reports them the
		// usual way. Nothing yet: wait for readability.
		var b [1]byte
		_, _, e := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return !errors.Is(e, syscall.EAGAIN)
	})
	if err != nil {
		return 0, err, true
	}
	w, err = readOnce(dst, src, n)
	return w, err, true
}

// readOnce reads once from src into a pooled buffer of at most n bytes and
// writes what it read to dst.
func readOnce(dst, src *net.TCPConn, n int64) (int64, error) {
	bp := tunnelBufPool.Get().(*[]byte)
	defer tunnelBufPool.Put(bp)
	buf := *bp
	if int64(len(buf)) > n {
		buf = buf[:n]
	}
	r, rerr := src.Read(buf)
	if r > 0 {
		w, werr := dst.Write(buf[:r])
		if werr != nil {
			return int64(w), werr
		}
	}
	return int64(r), rerr
}
