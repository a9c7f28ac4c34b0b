// Package update moves signed releases of cloudbox through the community's
// mesh: every box is a mirror.
//
// A release is a manifest (board, version, channel, the artifacts — the
// root squashfs and the boot files — each split into content-addressed
// chunks) plus ed25519 signatures over the manifest's exact bytes. A box
// accepts a release only when at least Trust.Threshold of the community's
// trusted release keys signed it, it is for the box's board and channel,
// and its version is newer than the running one (or the release is a signed
// downgrade). Nothing in the verification reads the wall clock.
//
// The Agent keeps releases in a chunk store, announces what it holds, fetches
// missing chunks from the peers that hold them (several at once, each chunk
// verified against its hash before it is stored, so an interrupted transfer
// resumes where it stopped) and serves its chunks to the others. Chunks the
// box already holds — those of the release it runs — are not fetched again.
//
// The package does not write disks or reboot: Config.Apply is the hook the
// appliance uses for that. It does not discover peers either: Config.Peers
// says who holds what (the appliance reads the service catalog).
package update
