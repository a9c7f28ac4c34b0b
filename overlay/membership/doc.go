// Package membership decides who belongs to a community of boxes: which node
// keys are members, under which name, overlay addresses and groups, proven
// by certificates that any member can check offline. It also covers how a new
// box joins with an invitation when no central server and no Internet are
// reachable, how certificates are renewed and revoked, and how this state is
// kept on disk.
//
// It does not talk to the network, spread anything by gossip, choose free
// addresses or decide when to renew: the overlay engine does, with the
// functions here. It trusts nothing it is handed except the Community the
// caller passes in.
//
// # Trust
//
// A community is named by its ed25519 root key ([Community]); its ID and its
// IPv6 /48 are derived from that key. A member holds a [Membership] chain in
// one of two forms:
//
//   - a [Certificate] signed by the root key (what [Renew] issues), or
//   - a Certificate signed by an invitation key, together with the
//     [Delegation] in which the root key allowed that invitation key to issue
//     one certificate: this name, IPv4 address and groups, starting before
//     the invitation expires and ending at most MaxDelegatedValidity after.
//
// The second form is how a box joins while only ordinary members are
// reachable: an administrator (a holder of the root key) makes an
// [Invitation], a one-time bearer token carrying the delegation and the
// invitation's private key; the new box parses it ([ParseInvitation]) and
// signs its own certificate ([Invitation.Issue]); the first member it
// reaches accepts it with [Redemptions.Redeem] while the invitation has not
// expired and records which node key used it. Members pass such records on
// ([Redemptions.Merge]), so a second node key presenting the same invitation
// is refused with ErrInviteUsed. Root-key holders later renew the certificate
// with [Renew], dropping the delegation; [NeedsRenewal] says when.
//
// [VerifyMembership] checks a chain at a given time against the community
// and a [RevocationList], a root-signed list of revoked node keys,
// certificate serials and invitation IDs, replaced as a whole by the list
// with the next sequence number ([Revoke]).
//
// Every function that depends on the time takes it as an argument, and every
// function that needs randomness takes an io.Reader (nil means crypto/rand).
//
// # Encodings
//
// All encodings are binary, big-endian and canonical: the parsers accept
// exactly the bytes the encoders produce for a valid value, reject trailing
// bytes, and allocate in proportion to their input, never to a length field. Each starts with a
// four-byte magic and a version byte, 1. A str8 is a one-byte length and that
// many bytes of UTF-8; names are 1 to 63 bytes without control characters or
// surrounding spaces. groups is a count byte (at most 16) and that many str8
// of 1 to 32 characters [a-z0-9-] in strictly ascending order. Times are
// uint64 Unix seconds up to the end of 9999. Signatures are ed25519 (RFC
// 8032) over every byte before them.
//
// Certificate, at most 764 bytes:
//
//	"CBC1" 1 | community id [10] | serial [8] | name str8 | node key [32]
//	| ipv4 [4] | groups | not before u64 | not after u64 | issuer key [32]
//	| signature [64]
//
// Delegation, at most 732 bytes:
//
//	"CBD1" 1 | community id [10] | invite id [16] | invite key [32]
//	| name str8 | ipv4 [4] | groups | expires u64 | signature [64]
//
// Membership, at most 1505 bytes; a delegation length of 0 means the root
// key signed the certificate:
//
//	"CBM1" 1 | u16 length, delegation | u16 length, certificate
//
// Invitation, at most 1177 bytes, shown as "cloudbox-invite:" and the
// bytes in unpadded base64url (RFC 4648, section 5):
//
//	"CBI1" 1 | community name str8 | root key [32] | ipv4 prefix [4]
//	| prefix length u8 | u16 length, delegation | invite key seed [32]
//	| u8 count (at most 16) × (family u8 4 or 6 | address [4 or 16] | port u16)
//
// RevocationList, at most 64 KiB; entries sorted by kind, then id:
//
//	"CBR1" 1 | community id [10] | sequence u64 | issued at u64
//	| u16 count × (kind u8 | id [32 node key, 8 serial, 16 invite]
//	| reason str8 of 0 to 64 bytes) | signature [64]
//
// Redemptions, at most 4 MiB; records sorted by invite id, each a
// membership with a delegation:
//
//	"CBU1" 1 | u32 count × (u16 length, membership)
//
// # Files
//
// A [Store] keeps one file per item in its directory, each written
// atomically (temporary file, fsync, rename, fsync of the directory) with
// mode 0600 in a directory created with mode 0700:
//
//	community.json   the community: {"version": 1, "name", "id", "root_key"
//	                 (standard base64), "ipv4_prefix", "ipv6_prefix"}; id and
//	                 ipv6_prefix must match the root key
//	membership.bin   this box's Membership
//	root.key         the root key as PKCS #8 PEM, only on administrators' boxes
//	revocations.bin  the newest RevocationList
//	redemptions.bin  the Redemptions known to this box
//
// A file that does not parse is reported with its path, wrapping
// ErrMalformed, and left in place for an administrator to look at.
package membership
