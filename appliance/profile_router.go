//go:build router

package appliance

// storageInProfile is false in the router profile: a router's flash holds
// no shared folders or vault shares, and WebDAV, the erasure coding and
// the vault's HTTP client cost about 1 MB of a mipsle cloudboxd. The
// storage code checks this constant where it checks for a disabled
// storage, so the compiler drops the rest; the API answers 503 as on a box
// started with storage disabled.
const storageInProfile = false

// updateInProfile is false in the router profile: its agent writes a
// gokrazy root slot, and a router updates by installing a package (not
// built yet, see README). Gated like storage: the compiler drops the
// agent, its release reader and archive/tar.
const updateInProfile = false

// errUpdateProfile is the update component's problem on a router.
const errUpdateProfile = "updates over the mesh are not in the router profile yet: install a new package with opkg"

// panelInProfile is false in the router profile: its plain pages have no
// style sheet or scripts (panel_exec_router.go).
const panelInProfile = false
