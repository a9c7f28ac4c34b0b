package ext4

import (
	"cmp"
	"crypto/sha256"
	"fmt"
	"io"
	"math"
	"slices"
	"time"
)

const (
	// MinSize is the smallest size Format accepts: 8 MiB, the size at which
	// mke2fs also starts to give ext4 a 4 MiB journal.
	MinSize = 8 << 20
	// MaxSize is the largest size Format accepts: without the 64bit feature
	// block numbers are 32 bits, so just under 16 TiB.
	MaxSize = math.MaxUint32 * blockSize
)

// Options are the inputs that, with the size, determine every byte Format
// writes. The zero value is valid.
type Options struct {
	// UUID is the filesystem UUID (blkid's UUID=). Zero means one derived
	// from Label and the size with SHA-256, never a random one.
	UUID [16]byte
	// HashSeed seeds the directory index hash. Zero means one derived from
	// the UUID with SHA-256.
	HashSeed [16]byte
	// Time is stored as creation, write and last-check time of the
	// filesystem and as the times of its root, lost+found and journal
	// inodes. Zero means the Unix epoch. It must lie between 1970 and 2446;
	// e2fsck complains if it is in the future.
	Time time.Time
	// Label is the volume name (blkid's LABEL=), at most 16 bytes. Empty
	// means none.
	Label string
}

const (
	blockSize       = 4096
	blocksPerGroup  = 8 * blockSize // one block bitmap block per group
	inodeSize       = 256
	extraIsize      = 32 // i_extra_isize: up to and including i_projid
	inodesPerBlock  = blockSize / inodeSize
	inodeRatio      = 16384 // bytes per inode, as mke2fs's ext4 default
	descSize        = 32    // group descriptor size without 64bit
	rootIno         = 2
	journalIno      = 8
	lostFoundIno    = 11 // also s_first_ino
	lostFoundBlocks = 4
	maxTime         = 3<<32 + math.MaxInt32 // latest time the inode epoch bits hold

	compatHasJournal = 0x4
	compatExtAttr    = 0x8
	compatDirIndex   = 0x20

	incompatFiletype = 0x2
	incompatExtents  = 0x40

	roCompatSparseSuper = 0x1
	roCompatLargeFile   = 0x2
	roCompatHugeFile    = 0x8
	roCompatDirNlink    = 0x20
	roCompatExtraIsize  = 0x40

	extentsFl = 0x80000 // EXT4_EXTENTS_FL
)

// Format writes an empty ext4 filesystem of size bytes, rounded down to whole
// 4096-byte blocks, at byte offset off of w. It assumes the region is zero,
// as in a fresh sparse file, and writes only the blocks that are not: the
// superblock and its backups, group descriptors, bitmaps, the first inode
// table block, the directory blocks and the journal superblock, well under
// 1 MiB for 4 GiB. If the last block group is too small for its own metadata,
// the filesystem ends before it, like mke2fs does.
func Format(w io.WriterAt, off, size int64, opts Options) error {
	if off < 0 {
		return fmt.Errorf("formatting at offset %d: %w", off, ErrInvalid)
	}
	if size < MinSize {
		return fmt.Errorf("formatting %d bytes, need at least %d: %w", size, MinSize, ErrTooSmall)
	}
	if size > MaxSize || off > math.MaxInt64-size {
		return fmt.Errorf("formatting %d bytes at offset %d, at most %d: %w", size, off, int64(MaxSize), ErrTooLarge)
	}
	if len(opts.Label) > 16 {
		return fmt.Errorf("label %q is longer than 16 bytes: %w", opts.Label, ErrInvalid)
	}
	if opts.Time.IsZero() {
		opts.Time = time.Unix(0, 0)
	}
	if s := opts.Time.Unix(); s < 0 || s > maxTime {
		return fmt.Errorf("time %v is outside 1970 to 2446: %w", opts.Time, ErrInvalid)
	}
	if opts.UUID == ([16]byte{}) {
		sum := sha256.Sum256(fmt.Appendf(nil, "cloudbox ext4 uuid\x00%s\x00%d", opts.Label, size))
		copy(opts.UUID[:], sum[:])
		opts.UUID[6] = opts.UUID[6]&0x0f | 0x80 // RFC 9562 version 8 (custom)
		opts.UUID[8] = opts.UUID[8]&0x3f | 0x80 // RFC 9562 variant
	}
	if opts.HashSeed == ([16]byte{}) {
		sum := sha256.Sum256(append([]byte("cloudbox ext4 hash seed\x00"), opts.UUID[:]...))
		copy(opts.HashSeed[:], sum[:])
	}

	l := newLayout(uint32(size / blockSize))
	bw := blockWriter{w: w, off: off}
	for _, b := range l.writes(opts) {
		if err := bw.write(b.nr, b.off, b.data); err != nil {
			return err
		}
	}
	return nil
}

// layout is the geometry of a filesystem.
type layout struct {
	blocks    uint32 // blocks in the filesystem
	groups    uint32
	ipg       uint32 // inodes per group
	itb       uint32 // inode table blocks per group
	gdtBlocks uint32 // group descriptor table blocks
	journal   uint32 // journal blocks
}

func newLayout(blocks uint32) layout {
	l := layout{blocks: blocks}
	for {
		l.groups = ceilDiv(l.blocks, blocksPerGroup)
		inodes := uint64(l.blocks) * blockSize / inodeRatio
		l.ipg = uint32(ceilDiv(ceilDiv(inodes, uint64(l.groups)), inodesPerBlock) * inodesPerBlock)
		l.itb = l.ipg / inodesPerBlock
		l.gdtBlocks = ceilDiv(l.groups*descSize, blockSize)
		// Drop a last group that cannot hold its metadata and some data
		// (mke2fs's rule). Never the only group: MinSize leaves room.
		rem := l.blocks % blocksPerGroup
		if l.groups == 1 || rem == 0 || rem >= l.overhead(l.groups-1)+50 {
			break
		}
		l.blocks -= rem
	}
	// mke2fs's ext2fs_default_journal_size, capped so that the journal is
	// one extent (at most 32768 blocks) in group 0.
	switch {
	case l.blocks < 32768:
		l.journal = 1024
	case l.blocks < 256*1024:
		l.journal = 4096
	case l.blocks < 512*1024:
		l.journal = 8192
	default:
		l.journal = 16384
	}
	return l
}

// hasSuper reports whether group g holds a superblock backup (sparse_super).
func (l layout) hasSuper(g uint32) bool {
	if g <= 1 {
		return true
	}
	for _, p := range []uint32{3, 5, 7} {
		n := g
		for n%p == 0 {
			n /= p
		}
		if n == 1 {
			return true
		}
	}
	return false
}

// overhead is the number of metadata blocks at the start of group g.
func (l layout) overhead(g uint32) uint32 {
	n := 2 + l.itb // bitmaps and inode table
	if l.hasSuper(g) {
		n += 1 + l.gdtBlocks
	}
	return n
}

func (l layout) groupBlocks(g uint32) uint32 {
	if g == l.groups-1 {
		return l.blocks - g*blocksPerGroup
	}
	return blocksPerGroup
}

// blockBitmap is the first block after group g's superblock and descriptors;
// the inode bitmap and inode table follow it.
func (l layout) blockBitmap(g uint32) uint32 {
	return g*blocksPerGroup + l.overhead(g) - 2 - l.itb
}

// used is the number of blocks in use at the start of group g: metadata, and
// in group 0 the root and lost+found directories and the journal.
func (l layout) used(g uint32) uint32 {
	if g == 0 {
		return l.overhead(0) + 1 + lostFoundBlocks + l.journal
	}
	return l.overhead(g)
}

// block is a write of data at byte off of block nr.
type block struct {
	nr   uint32
	off  int
	data []byte
}

// writes returns everything Format writes, in ascending order.
func (l layout) writes(o Options) []block {
	rootBlock := l.overhead(0)
	lostFound := rootBlock + 1
	journal := lostFound + lostFoundBlocks

	// Group descriptors and bitmaps.
	gdt := make([]byte, l.groups*descSize)
	var bitmaps []block
	var freeBlocks, freeInodes uint64
	for g := range l.groups {
		bb := make([]byte, blockSize)
		setBits(bb, 0, l.used(g))
		setBits(bb, l.groupBlocks(g), blocksPerGroup)
		ib := make([]byte, blockSize)
		usedInodes, dirs := uint32(0), uint32(0)
		if g == 0 {
			usedInodes, dirs = lostFoundIno, 2
		}
		setBits(ib, 0, usedInodes)
		setBits(ib, l.ipg, 8*blockSize)
		bitmaps = append(bitmaps, block{l.blockBitmap(g), 0, bb}, block{l.blockBitmap(g) + 1, 0, ib})

		free := l.groupBlocks(g) - l.used(g)
		freeBlocks += uint64(free)
		freeInodes += uint64(l.ipg - usedInodes)
		d := gdt[g*descSize:]
		le32(d, 0x00, l.blockBitmap(g))
		le32(d, 0x04, l.blockBitmap(g)+1)
		le32(d, 0x08, l.blockBitmap(g)+2)
		le16(d, 0x0c, free)
		le16(d, 0x0e, l.ipg-usedInodes)
		le16(d, 0x10, dirs)
	}

	jsize := uint64(l.journal) * blockSize
	ib := make([]byte, blockSize) // first inode table block: inodes 1 to 16
	dir := uint16(0o040000)
	copy(ib[(rootIno-1)*inodeSize:], inode(dir|0o755, 3, blockSize, rootBlock, 1, o.Time))
	copy(ib[(journalIno-1)*inodeSize:], inode(0o100600, 1, jsize, journal, l.journal, o.Time))
	copy(ib[(lostFoundIno-1)*inodeSize:], inode(dir|0o700, 2, lostFoundBlocks*blockSize, lostFound, lostFoundBlocks, o.Time))

	sb := l.superblock(o, freeBlocks, freeInodes)
	// s_jnl_blocks: backup of the journal inode's i_block and size.
	jnl := ib[(journalIno-1)*inodeSize:]
	copy(sb[0x10c:0x148], jnl[0x28:0x64])
	le32(sb, 0x148, uint32(jsize>>32))
	le32(sb, 0x14c, uint32(jsize))

	out := append(bitmaps,
		block{0, 1024, sb},
		block{1, 0, gdt},
		block{l.blockBitmap(0) + 2, 0, ib},
		block{rootBlock, 0, dirBlock(dirent{rootIno, "."}, dirent{rootIno, ".."}, dirent{lostFoundIno, "lost+found"})},
		block{lostFound, 0, dirBlock(dirent{lostFoundIno, "."}, dirent{rootIno, ".."})},
		block{journal, 0, journalSuperblock(l.journal, o.UUID)},
	)
	for i := uint32(1); i < lostFoundBlocks; i++ {
		out = append(out, block{lostFound + i, 0, dirBlock()})
	}
	for g := uint32(1); g < l.groups; g++ {
		if l.hasSuper(g) {
			backup := append([]byte(nil), sb...)
			le16(backup, 0x5a, g) // s_block_group_nr
			out = append(out, block{g * blocksPerGroup, 0, backup}, block{g*blocksPerGroup + 1, 0, gdt})
		}
	}
	slices.SortFunc(out, func(a, b block) int { return cmp.Compare(a.nr, b.nr) })
	return out
}
