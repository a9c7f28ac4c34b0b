package proxy

import "errors"

// Sentinel errors. Errors returned by this package wrap them, so callers
// can test with errors.Is.
var (
	// ErrAlreadyRun is returned by a second call of [Proxy.Run].
	ErrAlreadyRun = errors.New("proxy: Run called twice")

	// ErrBadCredential is returned for a credential that is malformed,
	// forged (the signature does not verify) or signed by an unknown box.
	ErrBadCredential = errors.New("proxy: bad credential")

	// ErrExpired is returned for a credential past its expiry.
	ErrExpired = errors.New("proxy: credential expired")

	// ErrNotFederated is returned for a credential from a box this gateway
	// does not serve, or that is not valid for this gateway.
	ErrNotFederated = errors.New("proxy: credential not accepted by this gateway")

	// ErrDeniedDestination is returned when a destination address or port
	// is not allowed by the access rules.
	ErrDeniedDestination = errors.New("proxy: destination not allowed")

	// ErrQuotaExceeded is returned when a user's daily quota is used up.
	ErrQuotaExceeded = errors.New("proxy: daily quota exceeded")

	// errConnLimit is returned when a user has too many connections open.
	errConnLimit = errors.New("proxy: too many connections for this user")
)
