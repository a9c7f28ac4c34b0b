package ext4

import "errors"

var (
	// ErrTooSmall means the size is below [MinSize].
	ErrTooSmall = errors.New("filesystem too small")
	// ErrTooLarge means the size is above [MaxSize].
	ErrTooLarge = errors.New("filesystem too large")
	// ErrInvalid means an argument or option is out of range.
	ErrInvalid = errors.New("invalid argument")
)
