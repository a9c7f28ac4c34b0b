package stream

import "errors"

// Sentinel errors. Errors returned by the Server wrap them, so that the
// HTTP layer can map them to status codes.
var (
	// ErrNotFound means the stream is not live on this box and no other
	// box offers it.
	ErrNotFound = errors.New("stream not found")
	// ErrExists means a stream of that name already has a source.
	ErrExists = errors.New("stream already live")
	// ErrBadOffer means the SDP offer is malformed or offers nothing
	// this server can use.
	ErrBadOffer = errors.New("bad SDP offer")
	// ErrUnsupportedCodec means a codec cannot be passed through to
	// browsers (AAC, H.264 with B-frames, ...).
	ErrUnsupportedCodec = errors.New("codec not playable in browsers")
	// ErrBadName means a stream name is not valid.
	ErrBadName = errors.New("invalid stream name")
	// ErrClosed means the server is not running.
	ErrClosed = errors.New("stream server closed")
	// ErrTooMany means a limit of the server (viewers, streams) is reached.
	ErrTooMany = errors.New("too many sessions")

	// errStopped is returned by pulls that ended because the hub closed.
	errStopped = errors.New("stopped")
)
