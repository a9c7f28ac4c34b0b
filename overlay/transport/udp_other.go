//go:build !linux

package transport

import "golang.zx2c4.com/wireguard/conn"

// newUDPBind returns the Bind's default inner Bind: wireguard-go's own.
func newUDPBind() conn.Bind { return conn.NewStdNetBind() }
