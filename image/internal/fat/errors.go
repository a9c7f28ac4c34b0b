package fat

import (
	"errors"
	"io/fs"
)

var (
	// ErrNotFound is wrapped by ReadFile errors when a path component does not
	// exist. errors.Is(err, fs.ErrNotExist) reports true for it as well.
	ErrNotFound error = notFoundError{}

	// ErrCorrupt is wrapped by ReadFile errors when the file system structures
	// (boot sector, FAT, directories) are invalid or inconsistent.
	ErrCorrupt = errors.New("corrupt FAT16 file system")

	// ErrSize is wrapped by Write errors when the size or offset cannot hold a
	// FAT16 file system with 2 KiB clusters.
	ErrSize = errors.New("unsupported file system size")

	// ErrNoSpace is wrapped by Write errors when the files do not fit, in the
	// data area or in a directory.
	ErrNoSpace = errors.New("not enough space")

	// ErrInvalidPath is wrapped by Write errors for paths that are malformed,
	// duplicated, contain characters FAT does not allow, or use a file as a
	// directory, and by ReadFile errors for malformed paths.
	ErrInvalidPath = errors.New("invalid path")
)

type notFoundError struct{}

func (notFoundError) Error() string        { return "file not found" }
func (notFoundError) Is(target error) bool { return target == fs.ErrNotExist }
