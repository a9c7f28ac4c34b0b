package transport

import "errors"

var (
	// ErrUnknownPeer means a node key is not one of the configured peers.
	ErrUnknownPeer = errors.New("unknown peer")
	// ErrNoPath means the Bind knows no way, direct or relayed, to a peer.
	ErrNoPath = errors.New("no path to peer")
	// ErrMalformed means a packet does not parse.
	ErrMalformed = errors.New("malformed packet")
	// ErrClosed means the Bind is not open.
	ErrClosed = errors.New("bind is closed")
)
