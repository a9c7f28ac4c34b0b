// Package vault keeps a box's files on other boxes of the community so that
// they survive the loss of any box, including the owner's.
//
// The owner cuts each file into stripes (1 MiB by default), encrypts each
// stripe with the file's random key (ChaCha20-Poly1305, the stripe's index
// as nonce), splits it with Reed-Solomon erasure coding into N shards of
// which any K rebuild it (github.com/klauspost/reedsolomon), and streams
// shard i of every stripe to the box holding share i: a file of any size
// (up to MaxFileSize) passes through a few stripes of memory, when it is
// stored, read or repaired. A manifest signed with the owner's node key
// names the shares' holders and, for each share, the SHA-256 of its list
// of shard hashes, so that a corrupt, forged or swapped shard is detected
// as it streams in and left out before the reconstruction. Holders see
// only ciphertext: reading needs a capability (Cap), which carries the
// file's key; the owner holds it and may give it to others, who can then
// read but not change the file.
//
// The owner side is Vault: Put, Open (and Get for small files), Adopt
// (a file of this box's from before a restore), and Run, which repairs a
// file whose holder left the community's catalog by rebuilding the missing
// shares and streaming them to other boxes. The holder side is Store,
// whose Handler serves other boxes over the overlay within the space its
// owner offers, and within a part of it per owner box (OwnerCap).
//
// The package does not find boxes or authenticate them: the caller passes
// the community's vault boxes (from the service catalog), the members' node
// keys (from the roster), and a function that names the member a request
// comes from (the overlay's source address).
package vault
