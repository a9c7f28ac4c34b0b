//go:build !linux

package stream

import "net"

// setSocketBuffers enlarges the receive and send buffers of the shared
// ICE socket as far as the system allows.
func setSocketBuffers(c net.PacketConn, size int) {
	if uc, ok := c.(*net.UDPConn); ok {
		uc.SetReadBuffer(size)
		uc.SetWriteBuffer(size)
	}
}
