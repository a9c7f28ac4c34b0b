package squashfs

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"slices"
	"strings"
	"time"
)

// Entry is a regular file, directory or symlink to write.
type Entry struct {
	// Path is slash-separated and relative, without leading slash, e.g.
	// "etc/ssl/ca-bundle.pem". The root directory is implicit; parents that
	// are not listed are created with mode 0755.
	Path string
	// Mode holds the permission bits (and fs.ModeSetuid, fs.ModeSetgid,
	// fs.ModeSticky) plus fs.ModeDir for a directory or fs.ModeSymlink for a
	// symlink; neither means a regular file. Symlinks always get mode 0777,
	// as on Linux.
	Mode fs.FileMode
	// Data is the contents of a regular file; nil is an empty file. Write
	// does not modify or retain it.
	Data []byte
	// Target is a symlink's target, stored verbatim: it may be absolute,
	// relative or dangling, but not empty.
	Target string
}

// Options configures [Write]. The zero value works.
type Options struct {
	// ModTime is the mtime of every inode and the superblock's creation
	// time, in whole seconds. Zero means the Unix epoch. It must lie between
	// 1970 and 2106 (unsigned 32-bit seconds).
	ModTime time.Time
	// BlockSize is the data block size in bytes: a power of two from 4 KiB
	// to 1 MiB, and at least the page size of the kernel that reads the
	// image. Zero means 128 KiB, mksquashfs's default.
	BlockSize int
}

// Write writes a SquashFS 4.0 filesystem holding entries to w and returns the
// number of bytes written: the filesystem padded with zeros to a multiple of
// 4096 bytes. Entries may come in any order; the output depends only on their
// contents and opts. Write compresses on all CPUs and holds the compressed
// data in memory until it writes w.
func Write(w io.Writer, entries []Entry, opts Options) (int64, error) {
	bs := opts.BlockSize
	if bs == 0 {
		bs = 128 << 10
	}
	if bs < 4<<10 || bs > 1<<20 || bs&(bs-1) != 0 {
		return 0, fmt.Errorf("block size %d: %w: want a power of two from 4096 to 1048576", bs, ErrInvalidOption)
	}
	var mtime int64
	if !opts.ModTime.IsZero() {
		mtime = opts.ModTime.Unix()
	}
	if mtime < 0 || mtime > math.MaxUint32 {
		return 0, fmt.Errorf("modification time %v: %w: want 1970 to 2106", opts.ModTime, ErrInvalidOption)
	}
	root, err := buildTree(entries)
	if err != nil {
		return 0, err
	}

	b := &builder{blockSize: bs, mtime: uint32(mtime)}
	b.plan(root)
	b.flushFragment()
	blocks := append(b.blocks, b.fragments...)
	if err := compressBlocks(blocks); err != nil {
		return 0, fmt.Errorf("compressing data: %w", err)
	}
	data, frags := blocks[:len(b.blocks)], blocks[len(b.blocks):]

	// Lay out data (squashfs.rst 3.4): each file's blocks in inode order,
	// then the fragment blocks, right after the superblock.
	off := uint64(superblockSize)
	for _, f := range b.files {
		f.start = off
		for _, bl := range data[f.first : f.first+f.nblocks] {
			off += uint64(len(bl.out))
		}
	}
	// Fragment table (squashfs.rst 3.5): start and size word of each fragment
	// block.
	c := newCompressor()
	fragTab := metaWriter{c: c}
	for _, bl := range frags {
		fragTab.write(le.AppendUint32(le.AppendUint32(le.AppendUint64(nil, off), bl.size), 0))
		off += uint64(len(bl.out))
	}
	b.inodeTab.c, b.dirTab.c = c, c
	b.writeDir(root, b.count+1, data) // mksquashfs gives root the parent inodes+1
	idTab := metaWriter{c: c}         // id table (squashfs.rst 3.6)
	idTab.write(make([]byte, 4))      // the one id: 0, for uid and gid
	inodeTable, dirTable, fragMeta, idMeta := b.inodeTab.finish(), b.dirTab.finish(), fragTab.finish(), idTab.finish()
	if err := errors.Join(b.inodeTab.err, b.dirTab.err, fragTab.err, idTab.err); err != nil {
		return 0, fmt.Errorf("compressing metadata: %w", err)
	}

	// Tables follow the data in the order of squashfs.rst 3 (no compression
	// options, export or xattr table). The fragment and id tables are indexed
	// by a list of their metadata blocks' positions, which the superblock
	// points to.
	sb := superblock{
		inodes:    b.count,
		mtime:     uint32(mtime),
		blockSize: uint32(bs),
		fragments: uint32(len(frags)),
		flags:     flagNoXattrs | flagAlwaysFragments,
		root:      root.ref,
	}
	sb.inodeTable = off
	sb.dirTable = sb.inodeTable + uint64(len(inodeTable))
	fragMetaStart := sb.dirTable + uint64(len(dirTable))
	sb.fragmentTable = fragMetaStart + uint64(len(fragMeta))
	var fragIndex []byte
	for _, s := range fragTab.starts {
		fragIndex = le.AppendUint64(fragIndex, fragMetaStart+s)
	}
	idMetaStart := sb.fragmentTable + uint64(len(fragIndex))
	sb.idTable = idMetaStart + uint64(len(idMeta))
	idIndex := le.AppendUint64(nil, idMetaStart)
	sb.bytesUsed = sb.idTable + uint64(len(idIndex))

	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 1<<20)
	parts := [][]byte{sb.marshal()}
	for _, bl := range blocks {
		parts = append(parts, bl.out)
	}
	parts = append(parts, inodeTable, dirTable, fragMeta, fragIndex, idMeta, idIndex,
		make([]byte, (4096-sb.bytesUsed%4096)%4096))
	for _, p := range parts {
		if _, err := bw.Write(p); err != nil {
			return cw.n, fmt.Errorf("writing squashfs: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return cw.n, fmt.Errorf("writing squashfs: %w", err)
	}
	return cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// node is a file, directory or symlink in the tree being written.
type node struct {
	name     string
	mode     fs.FileMode
	data     []byte
	target   string
	children []*node // directories only, sorted by name byte-wise
	number   uint32  // inode number, from 1
	ref      uint64  // inode reference: metadata block << 16 | offset

	// Regular files only.
	first, nblocks   int    // full data blocks, in builder.blocks
	fragment, fragAt uint32 // fragment block index and offset of the tail
	start            uint64 // position of the first data block
}

// buildTree validates entries and arranges them in a tree.
func buildTree(entries []Entry) (*node, error) {
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	root := &node{mode: fs.ModeDir | 0o755}
	nodes := map[string]*node{"": root}
	add := func(parent *node, path string, n *node) {
		n.name = path[strings.LastIndexByte(path, '/')+1:]
		nodes[path] = n
		parent.children = append(parent.children, n)
	}
	// A parent's path is a prefix of its children's, so it sorts first:
	// directories are created implicitly only when they are not listed.
	for _, e := range sorted {
		if err := validate(e); err != nil {
			return nil, fmt.Errorf("entry %q: %w", e.Path, err)
		}
		parent := root
		for i := range len(e.Path) {
			if e.Path[i] != '/' {
				continue
			}
			dir, ok := nodes[e.Path[:i]]
			if !ok {
				dir = &node{mode: fs.ModeDir | 0o755}
				add(parent, e.Path[:i], dir)
			}
			if !dir.mode.IsDir() {
				return nil, fmt.Errorf("entry %q: %w: %q", e.Path, ErrNotDir, e.Path[:i])
			}
			parent = dir
		}
		if _, ok := nodes[e.Path]; ok {
			return nil, fmt.Errorf("entry %q: %w", e.Path, ErrDuplicate)
		}
		add(parent, e.Path, &node{mode: e.Mode, data: e.Data, target: e.Target})
	}
	var sortDir func(*node)
	sortDir = func(d *node) {
		slices.SortFunc(d.children, func(a, b *node) int { return strings.Compare(a.name, b.name) })
		for _, c := range d.children {
			sortDir(c)
		}
	}
	sortDir(root)
	return root, nil
}

func validate(e Entry) error {
	if e.Path == "" {
		return fmt.Errorf("%w: empty", ErrInvalidPath)
	}
	for name := range strings.SplitSeq(e.Path, "/") {
		switch {
		case name == "":
			return fmt.Errorf("%w: empty name (leading, trailing or double slash)", ErrInvalidPath)
		case name == "." || name == "..":
			return fmt.Errorf("%w: name %q", ErrInvalidPath, name)
		case len(name) > maxNameLen:
			return fmt.Errorf("%w: name of %d bytes, want at most %d", ErrInvalidPath, len(name), maxNameLen)
		case strings.IndexByte(name, 0) >= 0:
			return fmt.Errorf("%w: name contains NUL", ErrInvalidPath)
		}
	}
	const known = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky | fs.ModeDir | fs.ModeSymlink
	isLink := e.Mode&fs.ModeSymlink != 0
	switch {
	case e.Mode&^known != 0 || isLink && e.Mode.IsDir():
		return fmt.Errorf("%w: mode %v", ErrUnsupported, e.Mode)
	case len(e.Data) > 0 && !e.Mode.IsRegular():
		return fmt.Errorf("%w: data on a directory or symlink", ErrUnsupported)
	case e.Target != "" && !isLink:
		return fmt.Errorf("%w: symlink target on mode %v", ErrUnsupported, e.Mode)
	case isLink && (e.Target == "" || len(e.Target) > maxTargetLen || strings.IndexByte(e.Target, 0) >= 0):
		return fmt.Errorf("%w: symlink target must be 1 to %d bytes without NUL", ErrInvalidPath, maxTargetLen)
	}
	return nil
}

// builder holds the state of one Write.
type builder struct {
	blockSize int
	mtime     uint32

	count     uint32  // inodes numbered so far
	files     []*node // regular files in inode order
	blocks    []block // full data blocks of all files
	fragments []block // fragment blocks
	frag      []byte  // the fragment block being filled

	inodeTab, dirTab metaWriter
}

// plan numbers the inodes depth first, children before their directory (the
// order writeDir writes them in), splits files into blocks and packs their
// tails into fragment blocks.
func (b *builder) plan(d *node) {
	for _, c := range d.children {
		switch {
		case c.mode.IsDir():
			b.plan(c)
			continue
		case c.mode.IsRegular():
			b.planFile(c)
		}
		b.count++
		c.number = b.count
	}
	b.count++
	d.number = b.count
}

func (b *builder) planFile(f *node) {
	b.files = append(b.files, f)
	bs := b.blockSize
	f.first, f.nblocks = len(b.blocks), len(f.data)/bs
	for i := range f.nblocks {
		b.blocks = append(b.blocks, block{raw: f.data[i*bs : (i+1)*bs]})
	}
	f.fragment = noFragment
	tail := f.data[f.nblocks*bs:]
	if len(tail) == 0 {
		return
	}
	if len(b.frag)+len(tail) > bs {
		b.flushFragment()
	}
	f.fragment, f.fragAt = uint32(len(b.fragments)), uint32(len(b.frag))
	b.frag = append(b.frag, tail...)
}

func (b *builder) flushFragment() {
	if len(b.frag) > 0 {
		b.fragments = append(b.fragments, block{raw: b.frag})
		b.frag = nil
	}
}

var le = binary.LittleEndian

// inodeHeader returns struct squashfs_base_inode (squashfs.rst 3.2):
// type, mode, uid and gid index (0: root), mtime, inode number. The mode
// holds only the permission bits (SQUASHFS_MODE, as mksquashfs writes it):
// the type comes from the inode type, and Linux 6.18 refuses to read an inode
// whose mode has file type bits set.
func (b *builder) inodeHeader(typ uint16, n *node) []byte {
	mode := uint16(n.mode.Perm())
	if n.mode&fs.ModeSymlink != 0 {
		mode = 0o777
	}
	for _, bit := range []struct {
		fs   fs.FileMode
		unix uint16
	}{{fs.ModeSetuid, 0o4000}, {fs.ModeSetgid, 0o2000}, {fs.ModeSticky, 0o1000}} {
		if n.mode&bit.fs != 0 && n.mode&fs.ModeSymlink == 0 {
			mode |= bit.unix
		}
	}
	p := make([]byte, 0, 64)
	p = le.AppendUint16(p, typ)
	p = le.AppendUint16(p, mode)
	p = le.AppendUint32(p, 0) // uid and gid index
	p = le.AppendUint32(p, b.mtime)
	return le.AppendUint32(p, n.number)
}

// putInode appends an inode to the inode table and records its reference.
func (b *builder) putInode(n *node, p []byte) {
	blk, off := b.inodeTab.pos()
	n.ref = blk<<16 | uint64(off)
	b.inodeTab.write(p)
}

// basicFileLimit is the largest size and data position of a basic file
// inode. Tests lower it to exercise extended ones without 4 GiB of data.
var basicFileLimit uint64 = math.MaxUint32

// writeFile writes a struct squashfs_reg_inode, or squashfs_lreg_inode when
// the size or position does not fit 32 bits, followed by the on-disk sizes of
// its full blocks (the tail is in a fragment).
func (b *builder) writeFile(f *node, data []block) {
	size := uint64(len(f.data))
	var p []byte
	if size > basicFileLimit || f.start > basicFileLimit {
		p = b.inodeHeader(typeLongFile, f)
		p = le.AppendUint64(p, f.start)
		p = le.AppendUint64(p, size)
		p = le.AppendUint64(p, 0) // sparse bytes
		p = le.AppendUint32(p, 1) // nlink
		p = le.AppendUint32(p, f.fragment)
		p = le.AppendUint32(p, f.fragAt)
		p = le.AppendUint32(p, noXattr)
	} else {
		p = b.inodeHeader(typeFile, f)
		p = le.AppendUint32(p, uint32(f.start))
		p = le.AppendUint32(p, f.fragment)
		p = le.AppendUint32(p, f.fragAt)
		p = le.AppendUint32(p, uint32(size))
	}
	for _, bl := range data[f.first : f.first+f.nblocks] {
		p = le.AppendUint32(p, bl.size)
	}
	b.putInode(f, p)
}

// writeSymlink writes a struct squashfs_symlink_inode.
func (b *builder) writeSymlink(l *node) {
	p := b.inodeHeader(typeSymlink, l)
	p = le.AppendUint32(p, 1) // nlink
	p = le.AppendUint32(p, uint32(len(l.target)))
	b.putInode(l, append(p, l.target...))
}

// writeDir writes the inodes of d's children (recursively), then d's listing
// in the directory table, then d's inode.
//
// A listing (squashfs.rst 3.3) is a sequence of headers, each followed by up
// to 256 entries whose inodes share one metadata block; an entry holds its
// inode's offset in that block, its inode number as a signed 16-bit delta
// from the header's, its basic type and its name.
func (b *builder) writeDir(d *node, parent uint32, data []block) {
	subdirs := 0
	for _, c := range d.children {
		switch {
		case c.mode.IsDir():
			b.writeDir(c, d.number, data)
			subdirs++
		case c.mode&fs.ModeSymlink != 0:
			b.writeSymlink(c)
		default:
			b.writeFile(c, data)
		}
	}

	type header struct {
		at   int // offset in listing
		name string
	}
	var listing []byte
	var headers []header
	for i := 0; i < len(d.children); {
		blk, base := uint32(d.children[i].ref>>16), d.children[i].number
		j := i
		for j < len(d.children) && j-i < maxDirHeaderEntries &&
			uint32(d.children[j].ref>>16) == blk && d.children[j].number-base <= math.MaxInt16 {
			j++
		}
		headers = append(headers, header{len(listing), d.children[i].name})
		listing = le.AppendUint32(listing, uint32(j-i-1)) // count - 1
		listing = le.AppendUint32(listing, blk)
		listing = le.AppendUint32(listing, base)
		for _, c := range d.children[i:j] {
			typ := uint16(typeFile)
			switch {
			case c.mode.IsDir():
				typ = typeDir
			case c.mode&fs.ModeSymlink != 0:
				typ = typeSymlink
			}
			listing = le.AppendUint16(listing, uint16(c.ref))
			listing = le.AppendUint16(listing, uint16(c.number-base))
			listing = le.AppendUint16(listing, typ)
			listing = le.AppendUint16(listing, uint16(len(c.name)-1))
			listing = append(listing, c.name...)
		}
		i = j
	}
	start, offset := b.dirTab.pos()
	u0 := b.dirTab.uncompressed()
	b.dirTab.write(listing)

	// A listing longer than a metadata block gets a directory index
	// (squashfs.rst 3.3): for the first header in each further metadata
	// block, its offset in the listing, the position of that block and the
	// header's first name. Lookups start from the last index entry whose name
	// sorts before the one sought.
	var index []byte
	count := 0
	if len(listing) > metaSize {
		last := u0 / metaSize
		for _, h := range headers {
			blk := (u0 + h.at) / metaSize
			if blk == last {
				continue
			}
			last = blk
			index = le.AppendUint32(index, uint32(h.at))
			index = le.AppendUint32(index, uint32(b.dirTab.blockStart(blk)))
			index = le.AppendUint32(index, uint32(len(h.name)-1))
			index = append(index, h.name...)
			count++
		}
	}

	size := len(listing) + 3 // the kernel counts "." and ".." as 3 bytes
	var p []byte
	if count == 0 && size <= math.MaxUint16 { // struct squashfs_dir_inode
		p = b.inodeHeader(typeDir, d)
		p = le.AppendUint32(p, uint32(start))
		p = le.AppendUint32(p, uint32(2+subdirs)) // nlink
		p = le.AppendUint16(p, uint16(size))
		p = le.AppendUint16(p, uint16(offset))
		p = le.AppendUint32(p, parent)
	} else { // struct squashfs_ldir_inode
		p = b.inodeHeader(typeLongDir, d)
		p = le.AppendUint32(p, uint32(2+subdirs)) // nlink
		p = le.AppendUint32(p, uint32(size))
		p = le.AppendUint32(p, uint32(start))
		p = le.AppendUint32(p, parent)
		p = le.AppendUint16(p, uint16(count))
		p = le.AppendUint16(p, uint16(offset))
		p = le.AppendUint32(p, noXattr)
		p = append(p, index...)
	}
	b.putInode(d, p)
}
