package squashfs

import "errors"

var (
	// ErrInvalidPath means an entry's path is empty, absolute, or has a name
	// that is empty, ".", "..", longer than 255 bytes or contains NUL.
	ErrInvalidPath = errors.New("invalid path")
	// ErrDuplicate means two entries have the same path.
	ErrDuplicate = errors.New("duplicate path")
	// ErrNotDir means an entry's parent is listed as a file or symlink.
	ErrNotDir = errors.New("parent is not a directory")
	// ErrUnsupported means an entry is not a regular file, directory or
	// symlink, or carries fields its type does not use.
	ErrUnsupported = errors.New("unsupported entry")
	// ErrInvalidOption means an [Options] field is out of range.
	ErrInvalidOption = errors.New("invalid option")
)
