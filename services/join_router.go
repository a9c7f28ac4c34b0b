//go:build router

package services

import (
	"errors"
	"fmt"
	_ "unsafe" // go:linkname

	"github.com/hashicorp/memberlist"
)

// The router profile joins without (*memberlist.Memberlist).Join. Join
// resolves names with a DNS-over-TCP lookup through miekg/dns's client,
// whose TLS support links crypto/tls, its handshakes, X.509 and the NIST
// curves into cloudboxd (about 1 MB on mipsle), although the catalog only
// ever joins by IP address. For IP addresses Join does nothing but call
// pushPullNode(address, true) on each; the router profile calls it
// directly.
//
// pushPullNode is unexported, hence the linkname. go.mod pins memberlist;
// a version whose pushPullNode has another signature must not be linked
// this way: the catalog's tests, run with -tags router under qemu-user by
// `make test-router` and on the host by the same target, join clusters
// through it and fail if it stops working. The full profile keeps Join.

//go:linkname pushPullNode github.com/hashicorp/memberlist.(*Memberlist).pushPullNode
func pushPullNode(m *memberlist.Memberlist, a memberlist.Address, join bool) error

// join has memberlist push/pull state with each of addrs (a join), as
// Join does for IP addresses. It returns how many answered, and an error
// only when none did.
func join(ml *memberlist.Memberlist, addrs []memberlist.Address) (int, error) {
	var n int
	var errs []error
	for _, a := range addrs {
		if err := pushPullNode(ml, a, true); err != nil {
			errs = append(errs, fmt.Errorf("joining %s at %s: %w", a.Name, a.Addr, err))
			continue
		}
		n++
	}
	if n > 0 {
		return n, nil
	}
	return 0, errors.Join(errs...)
}
