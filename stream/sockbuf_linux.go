package stream

import (
	"net"
	"syscall"
)

// setSocketBuffers enlarges the receive and send buffers of the shared
// ICE socket, which carries every session of the box: with the default
// (about 200 KiB) a burst of ingest and feedback overflows it whenever the
// server is briefly busy. As root (a box) the kernel's limits do not
// apply (SO_RCVBUFFORCE); otherwise they cap the size.
func setSocketBuffers(c net.PacketConn, size int) {
	uc, ok := c.(*net.UDPConn)
	if !ok {
		return
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return
	}
	forced := false
	rc.Control(func(fd uintptr) {
		e1 := syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, size)
		e2 := syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUFFORCE, size)
		forced = e1 == nil && e2 == nil
	})
	if !forced {
		uc.SetReadBuffer(size)
		uc.SetWriteBuffer(size)
	}
}
