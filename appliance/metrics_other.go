//go:build !linux

package appliance

// residentMemory is only implemented on Linux.
func residentMemory() (uint64, bool) { return 0, false }
