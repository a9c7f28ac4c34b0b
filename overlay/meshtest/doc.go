// Package meshtest holds the acceptance test of the overlay as the daemon
// runs it: real cloudboxd processes, one per network namespace, that found
// a community, redeem invitations through any member, form a full mesh over
// IPv4 and IPv6, relay around a blocked path, survive restarts and lock out
// a revoked member. It has no code of its own; the test needs root and the
// tools ip, ping, nft and iperf3, and fails (never skips) without them.
//
// It lives under overlay/ to use overlay/internal/netnstest, and drives the
// daemon only through its binaries, command line and HTTP API, so it
// imports neither appliance nor cmd.
package meshtest
