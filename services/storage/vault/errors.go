package vault

import "errors"

// Errors of the package; match them with errors.Is.
var (
	// ErrMalformed means a manifest, share or capability does not parse or
	// breaks the format's limits.
	ErrMalformed = errors.New("malformed")
	// ErrBadSignature means a manifest is not signed by its owner.
	ErrBadSignature = errors.New("manifest signature not valid")
	// ErrUnknownOwner means the owner of a manifest is not a member.
	ErrUnknownOwner = errors.New("owner is not a member of the community")
	// ErrCorruptShare means a share's content does not match the hash in
	// the manifest.
	ErrCorruptShare = errors.New("share does not match its manifest")
	// ErrNoSpace means a holder has no room left in the space its owner
	// offers.
	ErrNoSpace = errors.New("no vault space left")
	// ErrOwnerFull means a holder holds as many of one owner's shares as
	// it lets one box use (StoreConfig.OwnerCap).
	ErrOwnerFull = errors.New("the box's vault space for one owner is full")
	// ErrTooFewBoxes means fewer boxes offer space than a file needs.
	ErrTooFewBoxes = errors.New("too few boxes offer vault space")
	// ErrTooFewShares means fewer than K valid shares could be fetched.
	ErrTooFewShares = errors.New("too few shares readable")
	// ErrTooLarge means a file is larger than MaxFileSize.
	ErrTooLarge = errors.New("file too large for the vault")
	// ErrNotFound means no such file.
	ErrNotFound = errors.New("no such vault file")
	// ErrWrongKey means the capability's key does not decrypt the file.
	ErrWrongKey = errors.New("the capability's key does not open the file")
)
