//go:build !router

package appliance

// storageInProfile is whether cloudboxd has the storage component (shared
// folders over WebDAV, the vault): the full profile has it.
const storageInProfile = true

// updateInProfile is whether cloudboxd has the update agent: the full
// profile has it.
const updateInProfile = true

// errUpdateProfile is not shown in the full profile.
const errUpdateProfile = ""

// panelInProfile is whether cloudboxd has the HTML panel's templates,
// style sheet and scripts: the full profile has them.
const panelInProfile = true
