package storage

import "errors"

// Errors of the package; match them with errors.Is.
var (
	// ErrQuota means an upload would take an account over its quota.
	ErrQuota = errors.New("quota exceeded")
	// ErrBadPath means a path leaves the folder or is not valid.
	ErrBadPath = errors.New("path not allowed")
	// ErrBadAccount means an account name cannot name a folder.
	ErrBadAccount = errors.New("account name not usable for a folder")
	// ErrNoLink means no such share link.
	ErrNoLink = errors.New("no such share link")
)
