// Package fat writes and reads the FAT16 file system of a cloudbox image's
// boot partition.
//
// It exists because that partition is read on the device by gokrazy's minimal
// FAT reader (github.com/gokrazy/internal/fat), which copes only with what
// gokrazy's own writer produces, and panics or misses files otherwise. The
// reader takes the BPB fields at fixed offsets, expects 512-byte sectors, 4
// sectors per cluster and a single FAT (it puts the root directory right
// after the reserved sectors and one FAT), finds files by their 8.3 short
// name and assumes they are contiguous. Write produces exactly that layout,
// stores every file in one run of clusters, and gives names without an
// extension ("vmlinuz") a short name in their original case, because gokrazy
// compares those case-sensitively; other valid 8.3 names are upper-cased
// ("CMDLINE.TXT"). Long file name entries carry the real names for Linux,
// mtools and firmware. The output is byte-for-byte deterministic, so the same
// inputs give the same image.
//
// ReadFile extracts a file, such as the kernel or cmdline.txt, from any FAT16
// file system. It treats the image as untrusted: it checks the BPB, follows
// cluster chains with loop and range checks, and caps file and directory
// sizes.
//
// The package does not handle FAT12 or FAT32, does not modify existing file
// systems, does not write empty directories, and writes one FAT rather than
// the usual two (see above).
package fat
