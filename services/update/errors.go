package update

import "errors"

// Reasons a release is refused. Errors returned by Verify, CheckApplicable,
// Store and Agent wrap one of them, with the detail.
var (
	// ErrUntrusted means no trusted key, or fewer than the threshold,
	// signed the manifest.
	ErrUntrusted = errors.New("release not signed by enough trusted release keys")
	// ErrMalformed means a manifest, signature file or trust file is not
	// valid.
	ErrMalformed = errors.New("malformed release")
	// ErrNotApplicable means a valid release is not for this box: another
	// board or channel, not newer than the running version, or the running
	// version is below the release's minimum.
	ErrNotApplicable = errors.New("release not applicable to this box")
	// ErrChunkMismatch means a chunk's bytes do not match its hash.
	ErrChunkMismatch = errors.New("chunk does not match its hash")
	// ErrIncomplete means chunks of a release are still missing.
	ErrIncomplete = errors.New("release incomplete")
	// ErrNotFound means the store does not hold the release or chunk.
	ErrNotFound = errors.New("not found")
)
