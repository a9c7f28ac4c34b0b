package appliance

import "errors"

// Errors of the overlay API, mapped to HTTP statuses by the handler.
var (
	// errOverlayNotRunning means the overlay does not run: the box is not
	// a member, is joining, or the overlay failed.
	errOverlayNotRunning = errors.New("the overlay is not running")

	// errOverlayDisabled means the overlay was turned off by configuration.
	errOverlayDisabled = errors.New("the overlay is disabled on this box")

	// errAlreadyMember means a join was asked of a box that is a member
	// or joining already.
	errAlreadyMember = errors.New("this box is already a member of a community or joining one")

	// errNotAdmin means the operation needs the community root key, which
	// this box does not hold.
	errNotAdmin = errors.New("this box does not hold the community's root key; revoke from the box that founded the community")

	// errNoSuchMember means no member has the given node ID.
	errNoSuchMember = errors.New("no such member")

	// errRevokeSelf means a box was asked to revoke itself.
	errRevokeSelf = errors.New("a box cannot revoke itself")
)

// ErrRestart is returned by Run after a restore of a backup or a factory
// reset, which take effect when Run starts again: cloudboxd calls Run
// again at once.
var ErrRestart = errors.New("restart requested")
