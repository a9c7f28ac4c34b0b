package disco

import "errors"

var (
	// ErrShort means the packet is shorter than its header or message.
	ErrShort = errors.New("disco message too short")
	// ErrUnknownType means the message type byte is not one of ours.
	ErrUnknownType = errors.New("unknown disco message type")
	// ErrVersion means the message comes from an incompatible protocol version.
	ErrVersion = errors.New("unsupported disco message version")
	// ErrMalformed means the message has the right type but an invalid body.
	ErrMalformed = errors.New("malformed disco message")
	// ErrAuth means the box did not open: wrong keys, tampered or forged.
	ErrAuth = errors.New("disco message failed authentication")
)
