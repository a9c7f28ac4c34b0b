// Package vault keeps a box's files on other boxes of the community so that
// they survive the loss of any box, including the owner's.
//
// The owner encrypts each file with a random key of its own
// (XChaCha20-Poly1305), splits the ciphertext with Reed-Solomon erasure
// coding into N shares of which any K rebuild it
// (github.com/klauspost/reedsolomon), and stores each share on a different
// box that offers vault space. A manifest signed with the owner's node key
// names the shares' holders and the SHA-256 of every share, so that a
// corrupt, forged or swapped share is detected and left out before the
// reconstruction. Holders see only ciphertext: reading needs a capability
// (Cap), which carries the file's key; the owner holds it and may give it
// to others, who can then read but not change the file.
//
// The owner side is Vault: Put, Get, and Run, which repairs a file whose
// holder left the community's catalog by rebuilding the missing shares and
// placing them on other boxes. The holder side is Store, whose Handler
// serves other boxes over the overlay within the space its owner offers.
//
// The package does not find boxes or authenticate them: the caller passes
// the community's vault boxes (from the service catalog), the members' node
// keys (from the roster), and a function that names the member a request
// comes from (the overlay's source address). Files are held in memory while
// they are stored and read, so MaxFileSize bounds them.
package vault
