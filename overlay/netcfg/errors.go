package netcfg

import "errors"

var (
	// ErrUnsupported means this platform has no implementation.
	ErrUnsupported = errors.New("interface configuration is only implemented on Linux")
	// ErrNoInterface means no interface has the configured name.
	ErrNoInterface = errors.New("no such interface")
)
