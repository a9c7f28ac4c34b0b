//go:build !linux

package transport

import "syscall"

// reuseAddr does nothing: elsewhere one process per host binds the LAN
// discovery port.
func reuseAddr(network, address string, c syscall.RawConn) error { return nil }
