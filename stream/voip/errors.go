package voip

import "errors"

// Errors returned by the package.
var (
	// ErrClosed is returned by calls on a closed Server, Relay or room.
	ErrClosed = errors.New("voip: closed")
	// ErrNoPorts is returned when the relay's port range is exhausted.
	ErrNoPorts = errors.New("voip: no free relay ports")
	// ErrMalformed is wrapped by parsers for input they cannot read.
	ErrMalformed = errors.New("voip: malformed input")
)
