//go:build !router

package appliance

// releaseHashMemory is a no-op in the full profile: the Go runtime gives a
// password hash's 19 MiB back to the OS in its own time (minutes).
func releaseHashMemory() {}
