package dnsproxy

import "errors"

var (
	// ErrInvalidConfig means a Config field has a value New cannot use; the
	// error names the field.
	ErrInvalidConfig = errors.New("invalid dns server config")
	// ErrInvalidZone means a Zone passed to SetZone (or built from Config)
	// has a record that cannot be served; the error names the field.
	ErrInvalidZone = errors.New("invalid zone")
	// ErrAlreadyRun means Run was called a second time on the same Server.
	ErrAlreadyRun = errors.New("dns server already run")
	// ErrNoUpstream means no upstream resolver gave a usable answer.
	ErrNoUpstream = errors.New("no upstream answered")
)

// Errors of the wire parser. They are not exported: the server counts and
// drops malformed queries and hands unusual ones to miekg/dns.
var (
	// errShort means the packet ends inside a field.
	errShort = errors.New("dns message too short")
	// errMalformed means a field has a value no valid query has.
	errMalformed = errors.New("malformed dns message")
	// errNotQuery means the packet is a response (QR set); it is never
	// answered, so that two servers cannot loop.
	errNotQuery = errors.New("dns message is a response")
	// errUnusual means the packet may be valid but is not the common shape
	// the fast parser handles (one question, at most an OPT record); the
	// slow path parses it with miekg/dns.
	errUnusual = errors.New("dns message needs the full parser")
)
