// Package buildinfo holds the facts about a cloudbox binary that are fixed when
// it is built: the release version and the board it was built for. The image
// builder sets them with -ldflags "-X"; a plain `go build` leaves the defaults.
package buildinfo

// Version is the cloudbox release version, e.g. "v0.1.0". Set at build time
// with -ldflags "-X github.com/cloudbox/cloudbox/internal/buildinfo.Version=v0.1.0".
var Version = "dev"

// Board is the name of the board profile (see package boards) the binary was
// built for, or "host" for a binary built outside an image.
var Board = "host"
