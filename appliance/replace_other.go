//go:build !linux

package appliance

import "errors"

// execBinary is not supported off Linux: routers run Linux.
func execBinary(string) error {
	return errors.New("replacing the process is not supported on this system")
}
