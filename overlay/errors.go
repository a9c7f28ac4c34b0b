package overlay

import "errors"

var (
	// ErrRunning means Run was called while the Engine already runs.
	ErrRunning = errors.New("overlay engine is already running")
	// ErrClosed means the Engine was closed.
	ErrClosed = errors.New("overlay engine is closed")
	// ErrUnsupported means this platform cannot run the overlay.
	ErrUnsupported = errors.New("the overlay needs Linux")
)
