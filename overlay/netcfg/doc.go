// Package netcfg configures the overlay's network interface through
// rtnetlink: MTU, link up, addresses and routes. It talks to the kernel
// directly (no `ip` binary on the box) and is idempotent, so it can be
// applied again after a change.
//
// It only adds: addresses and routes that are no longer wanted stay until the
// interface goes away (the overlay's TUN device disappears with its process).
// It does not create interfaces, and it works on Linux only; elsewhere Apply
// returns ErrUnsupported.
package netcfg
