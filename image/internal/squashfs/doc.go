// Package squashfs writes SquashFS 4.0 filesystems, byte-for-byte
// reproducibly, in pure Go.
//
// The root slots of a box are SquashFS images read by the Linux kernel, and
// the image builder must produce identical images from identical inputs.
// go-diskfs's squashfs writer cannot be used for that: it follows symlinks
// when listing extended attributes, resolves symlinks relative to the current
// directory and stamps time.Now into the image. [Write] instead takes the
// whole tree in memory and derives every byte from its entries and [Options]:
// all inodes carry Options.ModTime and are owned by uid 0 / gid 0, directory
// entries are sorted byte-wise, and inodes are numbered and laid out in a fixed
// order (depth first, children before their directory, as mksquashfs does).
//
// Layout, following Documentation/filesystems/squashfs.rst and
// fs/squashfs/squashfs_fs.h: superblock, data blocks of every file, fragment
// blocks (the tails of all files packed together), inode table, directory
// table, fragment table, id table, zero padding to a multiple of 4096 bytes.
// Data and metadata blocks are zlib compressed (stored as-is when that does
// not make them smaller). Basic inodes are used where they suffice; extended
// ones for files of 4 GiB and more and for large directories, which also get
// a directory index so the kernel's lookups skip ahead.
//
// It does not write extended attributes, hard links, device nodes, FIFOs or
// sockets, sparse files, an NFS export table, or compressors other than zlib
// (gokrazy kernels enable only zlib), it does not deduplicate identical files,
// and it does not read SquashFS images.
package squashfs
