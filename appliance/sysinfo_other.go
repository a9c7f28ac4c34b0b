//go:build !unix

package appliance

// diskSpace is only implemented on Unix systems.
func diskSpace(string) (total, free uint64, ok bool) { return 0, 0, false }
