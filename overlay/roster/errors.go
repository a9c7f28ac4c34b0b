package roster

import "errors"

// Errors returned by this package, always wrapped with what failed; test for
// them with errors.Is. Errors about certificates, invitations and revocation
// lists wrap the sentinels of package membership (membership.ErrExpired,
// membership.ErrRevoked, membership.ErrInviteUsed, ...).
var (
	// ErrMalformed means a snapshot or a join request does not follow the
	// encoding described in the package comment, or exceeds its limits.
	ErrMalformed = errors.New("malformed roster message")

	// ErrTooLarge means a snapshot would exceed MaxSnapshotSize.
	ErrTooLarge = errors.New("snapshot too large")

	// ErrFull means the roster holds Config.MaxMembers members, or the
	// record would push its encoding past the size budget of a snapshot.
	ErrFull = errors.New("roster is full")

	// ErrNoRootKey means an operation needs the community root key and
	// Config.RootKey is nil.
	ErrNoRootKey = errors.New("this box does not hold the community root key")

	// ErrNoBootstrap means Join was given no bootstrap member.
	ErrNoBootstrap = errors.New("no bootstrap member to join through")

	// ErrRefused means a member refused to admit this box (HTTP 403): the
	// invitation or the certificate expired, was revoked, or does not
	// verify. The error text carries the member's reason.
	ErrRefused = errors.New("member refused the join")

	// ErrRunning means Run was called while it already runs.
	ErrRunning = errors.New("roster anti-entropy is already running")

	// ErrRateLimited means a member asked us to slow down (HTTP 429).
	ErrRateLimited = errors.New("too many join attempts")
)
