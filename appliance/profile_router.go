//go:build router

package appliance

// storageInProfile is false in the router profile: a router's flash holds
// no shared folders or vault shares, and WebDAV, the erasure coding and
// the vault's HTTP client cost about 1 MB of a mipsle cloudboxd. The
// storage code checks this constant where it checks for a disabled
// storage, so the compiler drops the rest; the API answers 503 as on a box
// started with storage disabled.
const storageInProfile = false

// panelInProfile is false in the router profile: its plain pages have no
// style sheet or scripts (panel_exec_router.go).
const panelInProfile = false

// profileOmits are the panel pages of what the router profile leaves out:
// live streams, calls and storage are not in the navigation.
var profileOmits = []string{"/streams", "/calls", "/storage"}
