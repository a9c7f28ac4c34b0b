// Package disco implements the discovery messages that boxes of a community
// exchange to find, measure and punch paths to each other: ping, pong and
// call-me-maybe, modelled on Tailscale's disco protocol.
//
// Every message is sealed with NaCl box (X25519, XSalsa20-Poly1305) between
// the sender's and the receiver's node keys, so only the two of them can read
// it and a forged, tampered or truncated message fails to open. The same
// X25519 node keys serve as WireGuard static keys; nothing else is needed to
// talk disco to a member of the community.
//
// Disco does not provide replay protection for pings: a replayed ping only
// produces a pong, and pongs are accepted only when they echo a transaction
// ID that the receiver generated and is still waiting for. The package does
// not send anything itself; overlay/transport frames, sends and times the
// messages.
package disco
