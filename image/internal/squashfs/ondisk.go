package squashfs

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
)

// On-disk constants of SquashFS 4.0 (fs/squashfs/squashfs_fs.h).
const (
	magic          = 0x73717368 // "hsqs"
	superblockSize = 96
	zlibID         = 1 // ZLIB_COMPRESSION

	metaSize         = 8192    // SQUASHFS_METADATA_SIZE: uncompressed bytes per metadata block
	metaUncompressed = 1 << 15 // SQUASHFS_COMPRESSED_BIT: metadata block stored as-is
	dataUncompressed = 1 << 24 // SQUASHFS_COMPRESSED_BIT_BLOCK: data block stored as-is

	noFragment = 0xFFFFFFFF         // SQUASHFS_INVALID_FRAG
	noXattr    = 0xFFFFFFFF         // SQUASHFS_INVALID_XATTR
	noTable    = 0xFFFFFFFFFFFFFFFF // SQUASHFS_INVALID_BLK: table absent

	flagAlwaysFragments = 1 << 5 // SQUASHFS_ALWAYS_FRAG: tails of large files are fragments too
	flagNoXattrs        = 1 << 9 // SQUASHFS_NO_XATTR

	maxDirHeaderEntries = 256 // SQUASHFS_DIR_COUNT
	maxNameLen          = 255 // NAME_MAX; the format allows 256
	maxTargetLen        = 4095
	fragmentEntrySize   = 16 // struct squashfs_fragment_entry
)

// Inode types (squashfs.rst 3.2). Directory entries always carry the
// basic type, even for extended inodes.
const (
	typeDir      = 1
	typeFile     = 2
	typeSymlink  = 3
	typeLongDir  = 8
	typeLongFile = 9
)

// compressor zlib-compresses blocks, reusing its buffers.
type compressor struct {
	buf bytes.Buffer
	zw  *zlib.Writer
}

func newCompressor() *compressor {
	c := &compressor{}
	c.zw = zlib.NewWriter(&c.buf)
	return c
}

// compress returns a copy of p compressed and true, or p itself and false when
// compressing does not make it smaller (the kernel rejects a "compressed"
// block larger than its uncompressed size).
func (c *compressor) compress(p []byte) ([]byte, bool, error) {
	c.buf.Reset()
	c.zw.Reset(&c.buf)
	if _, err := c.zw.Write(p); err != nil {
		return nil, false, err
	}
	if err := c.zw.Close(); err != nil {
		return nil, false, err
	}
	if c.buf.Len() >= len(p) {
		return p, false, nil
	}
	return bytes.Clone(c.buf.Bytes()), true, nil
}

// block is a data or fragment block (squashfs.rst 3.4).
type block struct {
	raw  []byte // uncompressed contents
	out  []byte // contents as stored
	size uint32 // on-disk size word: len(out), | dataUncompressed when stored as-is
}

// compressBlocks fills in out and size of every block, on all CPUs. The result
// does not depend on scheduling.
func compressBlocks(blocks []block) error {
	workers := min(runtime.GOMAXPROCS(0), len(blocks))
	errs := make([]error, workers)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			c := newCompressor()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(blocks) {
					return
				}
				b := &blocks[i]
				out, compressed, err := c.compress(b.raw)
				if err != nil {
					errs[w] = err
					return
				}
				b.out, b.size = out, uint32(len(out))
				if !compressed {
					b.size |= dataUncompressed
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// metaWriter packs a table into metadata blocks (squashfs.rst 3.2): a
// little-endian uint16 header (length, | metaUncompressed when stored as-is)
// followed by at most metaSize bytes of data. Records may span blocks.
type metaWriter struct {
	c      *compressor
	out    []byte   // finished blocks with their headers
	buf    []byte   // the block being filled, shorter than metaSize
	starts []uint64 // offset in out of each finished block
	err    error    // first compression error
}

// pos returns where the next byte written goes: the offset of its metadata
// block from the start of the table, and its offset inside that block once
// uncompressed. Together they form an inode reference (block<<16 | offset).
func (m *metaWriter) pos() (block uint64, offset int) {
	return uint64(len(m.out)), len(m.buf)
}

// uncompressed returns how many uncompressed bytes were written so far.
func (m *metaWriter) uncompressed() int {
	return len(m.starts)*metaSize + len(m.buf)
}

// blockStart returns the offset from the start of the table of the metadata
// block holding uncompressed byte i*metaSize, which must be written already.
func (m *metaWriter) blockStart(i int) uint64 {
	if i < len(m.starts) {
		return m.starts[i]
	}
	return uint64(len(m.out))
}

func (m *metaWriter) write(p []byte) {
	m.buf = append(m.buf, p...)
	for len(m.buf) >= metaSize {
		m.flush(m.buf[:metaSize])
		m.buf = append(m.buf[:0], m.buf[metaSize:]...)
	}
}

func (m *metaWriter) flush(p []byte) {
	m.starts = append(m.starts, uint64(len(m.out)))
	out, compressed, err := m.c.compress(p)
	if err != nil {
		if m.err == nil {
			m.err = err
		}
		return
	}
	size := uint16(len(out))
	if !compressed {
		size |= metaUncompressed
	}
	m.out = binary.LittleEndian.AppendUint16(m.out, size)
	m.out = append(m.out, out...)
}

// finish writes the last, partial block and returns the table. Compression
// errors are in m.err.
func (m *metaWriter) finish() []byte {
	if len(m.buf) > 0 {
		m.flush(m.buf)
		m.buf = nil
	}
	return m.out
}

// superblock is struct squashfs_super_block (fs/squashfs/squashfs_fs.h).
type superblock struct {
	inodes, mtime, blockSize, fragments uint32
	flags                               uint16
	root, bytesUsed, idTable            uint64
	inodeTable, dirTable, fragmentTable uint64
}

func (s *superblock) marshal() []byte {
	le := binary.LittleEndian
	b := make([]byte, 0, superblockSize)
	b = le.AppendUint32(b, magic)
	b = le.AppendUint32(b, s.inodes)
	b = le.AppendUint32(b, s.mtime)
	b = le.AppendUint32(b, s.blockSize)
	b = le.AppendUint32(b, s.fragments)
	b = le.AppendUint16(b, zlibID)
	b = le.AppendUint16(b, uint16(bits.Len32(s.blockSize)-1))
	b = le.AppendUint16(b, s.flags)
	b = le.AppendUint16(b, 1) // number of ids
	b = le.AppendUint16(b, 4) // version 4.0
	b = le.AppendUint16(b, 0)
	b = le.AppendUint64(b, s.root)
	b = le.AppendUint64(b, s.bytesUsed)
	b = le.AppendUint64(b, s.idTable)
	b = le.AppendUint64(b, noTable) // xattr id table
	b = le.AppendUint64(b, s.inodeTable)
	b = le.AppendUint64(b, s.dirTable)
	b = le.AppendUint64(b, s.fragmentTable)
	b = le.AppendUint64(b, noTable) // export (inode lookup) table
	return b
}
