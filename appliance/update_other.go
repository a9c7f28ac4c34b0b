//go:build !linux

package appliance

// runningRootDevice returns "": boxes run Linux.
func runningRootDevice() string { return "" }
