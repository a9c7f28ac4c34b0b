// Package image turns a board profile and the cloudbox sources into a
// bootable disk image, in pure Go and without root: the partition table
// gokrazy's init expects (GPT, plus the hybrid MBR the Raspberry Pi needs), a
// FAT16 boot partition with the kernel and firmware, root slot A as squashfs
// with gokrazy's init, its helpers and cloudboxd, an empty root slot B for the
// first update, and an ext4 /perm.
//
// The same inputs (sources, toolchain, go.sum-pinned kernel and firmware,
// Config and SOURCE_DATE_EPOCH) give a byte-identical image. The builder is a
// library so tests drive it in process; cmd/cloudbox is a thin CLI over it.
// It does not flash devices or talk to boxes.
package image
