// Package state keeps the persistent identity of a cloudbox node: its X25519
// key pair, the node name chosen on first start and the creation time. The
// identity lives in one file, node.json, in the state directory
// (/perm/cloudbox on a box).
//
// On-disk format, version 1, mode 0600 in a directory of mode 0700:
//
//	{
//	  "version": 1,
//	  "name": "kitchen-box",
//	  "created": "2026-01-02T15:04:05Z",
//	  "private_key": "<standard base64 of the 32-byte X25519 private key>"
//	}
//
// Every field is required and checked on load; unknown fields and trailing
// data are rejected. The node ID is not stored: it is derived from the public
// key (see [Node.ID]), so it cannot disagree with the key.
//
// The file is written atomically (temporary file in the same directory, fsync,
// rename, fsync of the directory), so a power cut leaves either the old or the
// new file. A file that cannot be loaded is never overwritten: [Open] renames
// it to node.json.corrupt-<UTC timestamp>, logs a warning and creates a new
// identity. An I/O error (permissions, a full disk, a missing /perm) is not
// corruption: it is returned and nothing is moved or created.
//
// The package does not lock the directory: one process owns it. It does not
// know what the key is used for; the overlay receives it from package
// appliance.
package state
