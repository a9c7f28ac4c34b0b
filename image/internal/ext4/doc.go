// Package ext4 writes an empty ext4 filesystem, byte-for-byte reproducibly,
// in pure Go.
//
// The image builder must produce identical disk images from identical inputs
// without root or mkfs tools. The /perm partition of a box has to be ext4,
// and the available Go writers (go-diskfs) use time.Now and random UUIDs and
// hash seeds. [Format] instead derives everything from its [Options]: the same
// size, offset and options always give the same bytes.
//
// The filesystem has a root directory, an empty lost+found (4 blocks, as
// mke2fs makes it) and an internal jbd2 journal (inode 8, one contiguous
// extent in group 0, sized like mke2fs but at most 64 MiB), so the box's
// persistent storage survives power cuts like a mke2fs-made filesystem.
// Layout: 4096-byte blocks, 32768 blocks per group, one 256-byte inode per
// 16 KiB, sparse_super backups, no reserved blocks. Features are the ones
// mke2fs sets for
//
//	mke2fs -t ext4 -O ^resize_inode,^flex_bg,^metadata_csum,^64bit,^orphan_file
//
// namely has_journal ext_attr dir_index filetype extent sparse_super
// large_file huge_file dir_nlink extra_isize.
//
// It does not write files at format time beyond root and lost+found, and it
// does not implement metadata_csum, 64bit (so at most 16 TiB), flex_bg, or
// resize_inode (so the filesystem cannot be grown online; resize2fs can grow it
// offline). The kernel fills the filesystem at run time.
package ext4
