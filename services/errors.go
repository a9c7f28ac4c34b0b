package services

import "errors"

var (
	// ErrInvalidService wraps every validation error of [Catalog.Publish].
	ErrInvalidService = errors.New("invalid service")
	// ErrNotFound is returned by [Catalog.Unpublish] for a service that this
	// box does not publish.
	ErrNotFound = errors.New("service not found")
	// ErrBuiltin is returned when a user tries to replace or remove a
	// built-in service of cloudbox.
	ErrBuiltin = errors.New("service is built into cloudbox")
	// ErrTooManyServices is returned when a box would publish more than
	// [MaxEntries] services.
	ErrTooManyServices = errors.New("too many services on this box")
	// ErrDocumentTooLarge is returned when the signed catalog would exceed
	// [MaxDocSize].
	ErrDocumentTooLarge = errors.New("catalog document too large")
	// ErrRunning is returned by a second call to [Catalog.Run].
	ErrRunning = errors.New("catalog already running")
)
