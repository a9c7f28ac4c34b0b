package boards

// The kernel and firmware modules are data: each holds an empty Go package
// next to its payload. Importing them keeps their versions pinned in go.mod
// and their hashes in go.sum, so an image is built from exactly the kernel
// that was reviewed.
import (
	_ "github.com/gokrazy/firmware"
	_ "github.com/gokrazy/kernel.amd64"
	_ "github.com/gokrazy/kernel.arm64"
	_ "github.com/gokrazy/kernel.rpi"
)
