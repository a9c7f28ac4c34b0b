//go:build !linux

package proxy

import "net"

// copyReady is Linux only; elsewhere tunnels copy through a pooled buffer.
func copyReady(dst, src *net.TCPConn, n int64) (int64, error, bool) {
	return 0, nil, false
}

// limitUnsent is Linux only.
func limitUnsent(*net.TCPConn) {}
