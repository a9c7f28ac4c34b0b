package netcfg

import "net/netip"

// Config is the wanted state of one interface.
type Config struct {
	// Name is the interface to configure. Required.
	Name string

	// MTU is set on the interface; 0 leaves it unchanged.
	MTU int

	// Addrs are assigned to the interface, each with its prefix length,
	// e.g. 198.18.0.1/15. IPv6 addresses skip duplicate address detection
	// (they are unique by construction and must be usable at once).
	Addrs []netip.Prefix

	// Routes are routed onto the interface in the main table (replacing
	// any route to the same prefix). The prefixes of Addrs get their
	// connected routes from the kernel anyway.
	Routes []netip.Prefix

	// NetNS is an open file descriptor of the network namespace to
	// configure; 0 means the calling process's namespace.
	NetNS int
}
