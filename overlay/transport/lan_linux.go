package transport

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reuseAddr lets several processes of one host bind the LAN discovery
// port; Linux hands each multicast datagram to all of them.
func reuseAddr(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
