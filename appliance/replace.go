package appliance

import "errors"

// ReplaceError is returned by Run when a router's update (routerinstall.go)
// asks cloudboxd to replace itself with the binary at Path, on trial or
// back to the committed one; ReplaceProcess does it.
type ReplaceError struct{ Path string }

func (e *ReplaceError) Error() string { return "cloudboxd replaces itself with " + e.Path }

// ReplaceProcess returns err, unless it is a *ReplaceError: then it
// replaces the process with that binary, with the same arguments and
// environment (procd keeps supervising the same process), and returns
// only why that failed.
func ReplaceProcess(err error) error {
	var re *ReplaceError
	if !errors.As(err, &re) {
		return err
	}
	return execBinary(re.Path)
}
