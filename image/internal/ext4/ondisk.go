package ext4

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// On-disk structures, as in the kernel's Documentation/filesystems/ext4/ and
// e2fsprogs' lib/ext2fs/ext2_fs.h and lib/ext2fs/kernel-jbd.h. Offsets are
// written as in those headers' comments.

// superblock returns the 1024-byte primary superblock.
func (l layout) superblock(o Options, freeBlocks, freeInodes uint64) []byte {
	sec := o.Time.Unix()
	sb := make([]byte, 1024)
	le32(sb, 0x00, l.ipg*l.groups) // s_inodes_count
	le32(sb, 0x04, l.blocks)       // s_blocks_count_lo
	// 0x08 s_r_blocks_count_lo: 0, nothing reserved for root (on gokrazy
	// everything runs as root anyway).
	le32(sb, 0x0c, uint32(freeBlocks))
	le32(sb, 0x10, uint32(freeInodes))
	// 0x14 s_first_data_block: 0 for 4096-byte blocks.
	le32(sb, 0x18, 2) // s_log_block_size: 1024 << 2
	le32(sb, 0x1c, 2) // s_log_cluster_size
	le32(sb, 0x20, blocksPerGroup)
	le32(sb, 0x24, blocksPerGroup) // s_clusters_per_group
	le32(sb, 0x28, l.ipg)
	le32(sb, 0x30, uint32(sec)) // s_wtime
	le16(sb, 0x36, 0xffff)      // s_max_mnt_count: -1, no periodic check
	le16(sb, 0x38, 0xef53)      // s_magic
	le16(sb, 0x3a, 1)           // s_state: clean
	le16(sb, 0x3c, 1)           // s_errors: continue
	le32(sb, 0x40, uint32(sec)) // s_lastcheck
	// 0x48 s_creator_os: 0, Linux.
	le32(sb, 0x4c, 1) // s_rev_level: dynamic
	le32(sb, 0x54, lostFoundIno)
	le16(sb, 0x58, inodeSize)
	le32(sb, 0x5c, compatHasJournal|compatExtAttr|compatDirIndex)
	le32(sb, 0x60, incompatFiletype|incompatExtents)
	le32(sb, 0x64, roCompatSparseSuper|roCompatLargeFile|roCompatHugeFile|roCompatDirNlink|roCompatExtraIsize)
	copy(sb[0x68:0x78], o.UUID[:])
	copy(sb[0x78:0x88], o.Label)
	le32(sb, 0xe0, journalIno)
	copy(sb[0xec:0xfc], o.HashSeed[:])
	sb[0xfc] = 1 // s_def_hash_version: half_md4
	sb[0xfd] = 1 // s_jnl_backup_type: s_jnl_blocks holds the inode's blocks
	// s_jnl_blocks at 0x10c is filled in by the caller.
	le32(sb, 0x100, 0x4|0x8) // s_default_mount_opts: user_xattr acl
	le32(sb, 0x108, uint32(sec))
	le16(sb, 0x15c, extraIsize)  // s_min_extra_isize
	le16(sb, 0x15e, extraIsize)  // s_want_extra_isize
	le32(sb, 0x160, 1)           // s_flags: signed directory hash
	sb[0x274] = uint8(sec >> 32) // s_wtime_hi
	sb[0x276] = uint8(sec >> 32) // s_mkfs_time_hi
	sb[0x277] = uint8(sec >> 32) // s_lastcheck_hi
	return sb
}

// inode returns a 256-byte inode whose data is the n blocks from start, held
// in one extent in i_block.
func inode(mode, links uint16, size uint64, start, n uint32, t time.Time) []byte {
	sec := t.Unix()
	// The extra time fields hold two epoch bits above the signed 32-bit
	// seconds, and the nanoseconds.
	extra := uint32((sec-int64(int32(uint32(sec))))>>32)&3 | uint32(t.Nanosecond())<<2
	in := make([]byte, inodeSize)
	le16(in, 0x00, uint32(mode))
	le32(in, 0x04, uint32(size))
	for _, off := range []int{0x08, 0x0c, 0x10, 0x90} { // a, c, m, crtime
		le32(in, off, uint32(sec))
	}
	le16(in, 0x1a, uint32(links))
	le32(in, 0x1c, n*blockSize/512) // i_blocks_lo
	le32(in, 0x20, extentsFl)
	// i_block: extent header, then one extent.
	le16(in, 0x28, 0xf30a) // eh_magic
	le16(in, 0x2a, 1)      // eh_entries
	le16(in, 0x2c, 4)      // eh_max: (60-12)/12
	// 0x2e eh_depth 0: the extents are leaves.
	// 0x34 ee_block 0: the extent starts at file block 0.
	le16(in, 0x38, n) // ee_len
	le32(in, 0x3c, start)
	le32(in, 0x6c, uint32(size>>32)) // i_size_high
	le16(in, 0x80, extraIsize)
	for _, off := range []int{0x84, 0x88, 0x8c, 0x94} { // c, m, a, crtime extra
		le32(in, off, extra)
	}
	return in
}

type dirent struct {
	ino  uint32
	name string
}

// dirBlock returns a directory block holding the entries, all directories.
// Without entries it is an empty block, as in the tail of lost+found.
func dirBlock(entries ...dirent) []byte {
	b := make([]byte, blockSize)
	if len(entries) == 0 {
		le16(b, 4, blockSize) // rec_len of an unused entry spanning the block
		return b
	}
	off := 0
	for i, e := range entries {
		recLen := 8 + (len(e.name)+3)/4*4
		if i == len(entries)-1 {
			recLen = blockSize - off
		}
		le32(b, off, e.ino)
		le16(b, off+4, uint32(recLen))
		b[off+6] = byte(len(e.name))
		b[off+7] = 2 // file_type: directory
		copy(b[off+8:], e.name)
		off += recLen
	}
	return b
}

// journalSuperblock returns the big-endian jbd2 superblock (version 2, no
// features, empty) of an internal journal of n blocks.
func journalSuperblock(n uint32, uuid [16]byte) []byte {
	b := make([]byte, 1024)
	be := binary.BigEndian
	be.PutUint32(b[0x00:], 0xc03b3998) // h_magic
	be.PutUint32(b[0x04:], 4)          // h_blocktype: superblock v2
	be.PutUint32(b[0x0c:], blockSize)  // s_blocksize
	be.PutUint32(b[0x10:], n)          // s_maxlen
	be.PutUint32(b[0x14:], 1)          // s_first: first log block
	be.PutUint32(b[0x18:], 1)          // s_sequence: first expected commit
	// 0x1c s_start 0: the journal is empty, nothing to replay.
	copy(b[0x30:0x40], uuid[:])
	be.PutUint32(b[0x40:], 1) // s_nr_users
	return b
}

// setBits sets bits [from, to) of the bitmap b.
func setBits(b []byte, from, to uint32) {
	for i := from; i < to; i++ {
		b[i/8] |= 1 << (i % 8)
	}
}

func le16(b []byte, off int, v uint32) { binary.LittleEndian.PutUint16(b[off:], uint16(v)) }
func le32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }

// ceilDiv is a/b rounded up, without overflowing near the type's limit.
func ceilDiv[T uint32 | uint64](a, b T) T {
	if a%b != 0 {
		return a/b + 1
	}
	return a / b
}

// blockWriter writes blocks of a filesystem that starts at byte off of w.
type blockWriter struct {
	w   io.WriterAt
	off int64
}

func (bw blockWriter) write(nr uint32, off int, data []byte) error {
	if _, err := bw.w.WriteAt(data, bw.off+int64(nr)*blockSize+int64(off)); err != nil {
		return fmt.Errorf("writing block %d: %w", nr, err)
	}
	return nil
}
