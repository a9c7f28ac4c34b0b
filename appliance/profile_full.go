//go:build !router

package appliance

// storageInProfile is whether cloudboxd has the storage component (shared
// folders over WebDAV, the vault): the full profile has it.
const storageInProfile = true

// panelInProfile is whether cloudboxd has the HTML panel's templates,
// style sheet and scripts: the full profile has them.
const panelInProfile = true

// profileOmits are the panel pages the profile leaves out: none.
var profileOmits []string
