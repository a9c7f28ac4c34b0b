package appliance

import "errors"

// Errors of the overlay API, mapped to HTTP statuses by the handler.
var (
	// errOverlayNotRunning means the overlay does not run: the box is not
	// a member, is joining, or the overlay failed.
	errOverlayNotRunning = errors.New("the overlay is not running")

	// errNotAdmin means the operation needs the community root key, which
	// this box does not hold.
	errNotAdmin = errors.New("this box does not hold the community's root key; revoke from the box that founded the community")

	// errNoSuchMember means no member has the given node ID.
	errNoSuchMember = errors.New("no such member")

	// errRevokeSelf means a box was asked to revoke itself.
	errRevokeSelf = errors.New("a box cannot revoke itself")
)
