package membership

import "errors"

// Errors returned by this package, always wrapped with what failed; test for
// them with errors.Is.
var (
	// ErrMalformed means bytes, a token or a file do not follow the encoding
	// described in the package comment, or a value is out of range.
	ErrMalformed = errors.New("malformed")

	// ErrBadSignature means a signature does not verify, or a certificate
	// or delegation is signed by a key that may not sign it.
	ErrBadSignature = errors.New("bad signature")

	// ErrExpired means a certificate or an invitation is past its end.
	ErrExpired = errors.New("expired")

	// ErrNotYetValid means a certificate starts in the future, beyond the
	// allowed clock skew.
	ErrNotYetValid = errors.New("not yet valid")

	// ErrRevoked means the revocation list names the node key, the
	// certificate serial or the invitation.
	ErrRevoked = errors.New("revoked")

	// ErrWrongCommunity means a certificate, delegation, revocation list or
	// key belongs to another community.
	ErrWrongCommunity = errors.New("wrong community")

	// ErrMismatch means a certificate issued with an invitation claims a
	// name, address, groups or lifetime that the invitation does not grant.
	ErrMismatch = errors.New("certificate does not match its invitation")

	// ErrOutsidePrefix means an IPv4 address is not inside the community
	// prefix.
	ErrOutsidePrefix = errors.New("address outside the community prefix")

	// ErrInviteUsed means an invitation was already redeemed by another node
	// key. Invitations are single use.
	ErrInviteUsed = errors.New("invitation already used")
)
