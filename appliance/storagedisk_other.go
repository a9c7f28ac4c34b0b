//go:build !linux

package appliance

// blockInfo is unknown off Linux.
func blockInfo(string) (usb, removable bool) { return false, false }
