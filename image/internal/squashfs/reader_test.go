package squashfs

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// readStats counts features an image used, so tests can check they were
// exercised.
type readStats struct {
	inodes, longDirs, dirIndexes, dirHeaders, fragments, longFiles int
}

// readImage is a strict SquashFS 4.0 reader for the subset Write produces. It
// checks the invariants the kernel and unsquashfs rely on (table order, full
// metadata blocks, sorted names, inode numbers, nlink, parent, directory
// index) and returns every entry by path, with directories marked by
// fs.ModeDir, plus mtime of the superblock.
func readImage(img []byte) (map[string]Entry, readStats, uint32, error) {
	r := &reader{img: img}
	entries, err := r.read()
	return entries, r.stats, r.mtime, err
}

type reader struct {
	img       []byte
	blockSize int
	mtime     uint32
	inodes    metaTable
	dirs      metaTable
	frags     [][2]uint64 // start, size word
	fragCache map[uint32][]byte
	seen      map[uint32]bool
	stats     readStats
	out       map[string]Entry
}

// metaTable is an uncompressed metadata table and the uncompressed offset of
// each block by its position relative to the table start.
type metaTable struct {
	data []byte
	at   map[uint64]int
}

func (r *reader) u16(b []byte, off int) uint16 { return binary.LittleEndian.Uint16(b[off:]) }
func (r *reader) u32(b []byte, off int) uint32 { return binary.LittleEndian.Uint32(b[off:]) }
func (r *reader) u64(b []byte, off int) uint64 { return binary.LittleEndian.Uint64(b[off:]) }

func inflate(p []byte, max int) ([]byte, error) {
	zr, err := zlib.NewReader(bytes.NewReader(p))
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(zr, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(out) > max {
		return nil, fmt.Errorf("block inflates beyond %d bytes", max)
	}
	if len(p) >= len(out) {
		return nil, fmt.Errorf("compressed block of %d bytes is not smaller than its %d bytes of data", len(p), len(out))
	}
	return out, nil
}

func (r *reader) meta(start, end uint64) (metaTable, error) {
	t := metaTable{at: map[uint64]int{}}
	for pos := start; pos < end; {
		if pos+2 > end {
			return t, fmt.Errorf("metadata header at %d beyond table end %d", pos, end)
		}
		if len(t.data)%metaSize != 0 {
			return t, fmt.Errorf("metadata block before %d not full (%d bytes)", pos, len(t.data))
		}
		hdr := r.u16(r.img, int(pos))
		n := uint64(hdr &^ metaUncompressed)
		if n == 0 || n > metaSize || pos+2+n > end {
			return t, fmt.Errorf("metadata block at %d: bad length %d", pos, n)
		}
		p := r.img[pos+2 : pos+2+n]
		if hdr&metaUncompressed == 0 {
			var err error
			if p, err = inflate(p, metaSize); err != nil {
				return t, fmt.Errorf("metadata block at %d: %v", pos, err)
			}
		}
		t.at[pos-start] = len(t.data)
		t.data = append(t.data, p...)
		pos += 2 + n
	}
	return t, nil
}

// ref resolves a block<<16|offset reference.
func (t metaTable) ref(block uint64, offset int) (int, error) {
	base, ok := t.at[block]
	if !ok || base+offset > len(t.data) || offset >= metaSize {
		return 0, fmt.Errorf("bad metadata reference %#x:%d", block, offset)
	}
	return base + offset, nil
}

func (r *reader) read() (map[string]Entry, error) {
	img := r.img
	if len(img) < superblockSize || len(img)%4096 != 0 {
		return nil, fmt.Errorf("image of %d bytes", len(img))
	}
	if r.u32(img, 0) != magic || r.u16(img, 28) != 4 || r.u16(img, 30) != 0 || r.u16(img, 20) != zlibID {
		return nil, fmt.Errorf("bad superblock % x", img[:32])
	}
	r.stats.inodes = int(r.u32(img, 4))
	r.mtime = r.u32(img, 8)
	r.blockSize = int(r.u32(img, 12))
	nfrags := int(r.u32(img, 16))
	if 1<<r.u16(img, 22) != r.blockSize || r.u16(img, 24) != flagNoXattrs|flagAlwaysFragments || r.u16(img, 26) != 1 {
		return nil, fmt.Errorf("bad block log, flags or id count % x", img[12:28])
	}
	root, used, idIndex := r.u64(img, 32), r.u64(img, 40), r.u64(img, 48)
	inodeStart, dirStart, fragIndex := r.u64(img, 64), r.u64(img, 72), r.u64(img, 80)
	if r.u64(img, 56) != noTable || r.u64(img, 88) != noTable {
		return nil, fmt.Errorf("xattr or export table present")
	}
	if used > uint64(len(img)) || uint64(len(img))-used >= 4096 || idIndex+8 != used || bytes.ContainsFunc(img[used:], func(c rune) bool { return c != 0 }) {
		return nil, fmt.Errorf("bytes used %d, id index %d, image %d bytes", used, idIndex, len(img))
	}
	idMeta := r.u64(img, int(idIndex))
	fragMeta := fragIndex
	nfragBlocks := (nfrags*fragmentEntrySize + metaSize - 1) / metaSize
	if nfrags > 0 {
		fragMeta = r.u64(img, int(fragIndex))
	}
	if !(superblockSize <= inodeStart && inodeStart < dirStart && dirStart <= fragMeta && fragMeta <= fragIndex &&
		fragIndex+uint64(8*nfragBlocks) == idMeta && idMeta < idIndex) {
		return nil, fmt.Errorf("tables out of order: inode %d dir %d frag %d/%d id %d/%d", inodeStart, dirStart, fragMeta, fragIndex, idMeta, idIndex)
	}
	ids, err := r.meta(idMeta, idIndex)
	if err != nil || !bytes.Equal(ids.data, []byte{0, 0, 0, 0}) {
		return nil, fmt.Errorf("id table %x: %v", ids.data, err)
	}
	ft, err := r.meta(fragMeta, fragIndex)
	if err != nil {
		return nil, fmt.Errorf("fragment table: %v", err)
	}
	if len(ft.data) != nfrags*fragmentEntrySize {
		return nil, fmt.Errorf("fragment table of %d bytes for %d fragments", len(ft.data), nfrags)
	}
	for i := range nfragBlocks {
		if p := r.u64(img, int(fragIndex)+8*i); ft.at[p-fragMeta] != i*metaSize {
			return nil, fmt.Errorf("fragment index %d points to %d", i, p)
		}
	}
	for i := range nfrags {
		r.frags = append(r.frags, [2]uint64{r.u64(ft.data, 16*i), uint64(r.u32(ft.data, 16*i+8))})
	}
	r.stats.fragments = nfrags
	if r.inodes, err = r.meta(inodeStart, dirStart); err != nil {
		return nil, fmt.Errorf("inode table: %v", err)
	}
	if r.dirs, err = r.meta(dirStart, fragMeta); err != nil {
		return nil, fmt.Errorf("directory table: %v", err)
	}
	r.seen = map[uint32]bool{}
	r.fragCache = map[uint32][]byte{}
	r.out = map[string]Entry{}
	if _, err := r.inode(root, "", uint32(r.stats.inodes)+1, typeDir); err != nil {
		return nil, err
	}
	if len(r.seen) != r.stats.inodes {
		return nil, fmt.Errorf("reached %d inodes, superblock says %d", len(r.seen), r.stats.inodes)
	}
	delete(r.out, "")
	return r.out, nil
}

// inode reads the inode at ref, named path, and returns its number.
func (r *reader) inode(ref uint64, path string, parent uint32, entryType uint16) (uint32, error) {
	at, err := r.inodes.ref(ref>>16, int(ref&0xFFFF))
	if err != nil {
		return 0, fmt.Errorf("%q: %v", path, err)
	}
	p := r.inodes.data[at:]
	if len(p) < 16 {
		return 0, fmt.Errorf("%q: short inode", path)
	}
	typ, mode, number := r.u16(p, 0), r.u16(p, 2), r.u32(p, 12)
	if r.u32(p, 4) != 0 || r.u32(p, 8) != r.mtime || mode&^0o7777 != 0 {
		return 0, fmt.Errorf("%q: ids %#x, mtime %d (want %d) or mode %#o", path, r.u32(p, 4), r.u32(p, 8), r.mtime, mode)
	}
	if number == 0 || number > uint32(r.stats.inodes) || r.seen[number] {
		return 0, fmt.Errorf("%q: inode number %d reused or out of range", path, number)
	}
	r.seen[number] = true
	fm := fs.FileMode(mode & 0o777)
	for _, bit := range []struct {
		unix uint16
		fs   fs.FileMode
	}{{0o4000, fs.ModeSetuid}, {0o2000, fs.ModeSetgid}, {0o1000, fs.ModeSticky}} {
		if mode&bit.unix != 0 {
			fm |= bit.fs
		}
	}
	basic := map[uint16]uint16{typeDir: typeDir, typeLongDir: typeDir, typeFile: typeFile, typeLongFile: typeFile, typeSymlink: typeSymlink}
	if basic[typ] != entryType {
		return 0, fmt.Errorf("%q: inode type %d in an entry of type %d", path, typ, entryType)
	}
	le := binary.LittleEndian
	switch typ {
	case typeDir, typeLongDir:
		var start, size, nlink, par uint32
		var offset, icount int
		var index []byte
		if typ == typeDir {
			start, nlink, size, offset, par = le.Uint32(p[16:]), le.Uint32(p[20:]), uint32(le.Uint16(p[24:])), int(le.Uint16(p[26:])), le.Uint32(p[28:])
		} else {
			nlink, size, start, par = le.Uint32(p[16:]), le.Uint32(p[20:]), le.Uint32(p[24:]), le.Uint32(p[28:])
			icount, offset = int(le.Uint16(p[32:])), int(le.Uint16(p[34:]))
			index = p[40:]
			r.stats.longDirs++
			r.stats.dirIndexes += icount
		}
		if par != parent {
			return 0, fmt.Errorf("%q: parent %d, want %d", path, par, parent)
		}
		r.out[path] = Entry{Path: path, Mode: fs.ModeDir | fm}
		base, err := 0, error(nil)
		if size != 3 { // an empty listing may point past the table's end
			base, err = r.dirs.ref(uint64(start), offset)
		}
		if err != nil || size < 3 || base+int(size)-3 > len(r.dirs.data) {
			return 0, fmt.Errorf("%q: listing at %d:%d size %d: %v", path, start, offset, size, err)
		}
		listing := r.dirs.data[base : base+int(size)-3]
		headers := map[int]string{} // offset in listing -> first name
		subdirs := 0
		var prev string
		for pos := 0; pos < len(listing); {
			r.stats.dirHeaders++
			count, iblock, inum := int(le.Uint32(listing[pos:]))+1, le.Uint32(listing[pos+4:]), le.Uint32(listing[pos+8:])
			if count > maxDirHeaderEntries {
				return 0, fmt.Errorf("%q: header with %d entries", path, count)
			}
			hpos := pos
			pos += 12
			for i := range count {
				if pos+8 > len(listing) {
					return 0, fmt.Errorf("%q: listing truncated", path)
				}
				off, delta, etyp, n := le.Uint16(listing[pos:]), int16(le.Uint16(listing[pos+2:])), le.Uint16(listing[pos+4:]), int(le.Uint16(listing[pos+6:]))+1
				name := string(listing[pos+8 : pos+8+n])
				pos += 8 + n
				if i == 0 {
					headers[hpos] = name
				}
				if name <= prev && prev != "" || strings.ContainsAny(name, "/\x00") {
					return 0, fmt.Errorf("%q: name %q after %q", path, name, prev)
				}
				prev = name
				child := strings.TrimPrefix(path+"/"+name, "/")
				num, err := r.inode(uint64(iblock)<<16|uint64(off), child, number, etyp)
				if err != nil {
					return 0, err
				}
				if num != uint32(int64(inum)+int64(delta)) {
					return 0, fmt.Errorf("%q: entry says inode %d, inode says %d", child, int64(inum)+int64(delta), num)
				}
				if etyp == typeDir {
					subdirs++
				}
			}
		}
		if nlink != uint32(2+subdirs) {
			return 0, fmt.Errorf("%q: nlink %d with %d subdirectories", path, nlink, subdirs)
		}
		for range icount {
			l, blk, n := int(le.Uint32(index)), le.Uint32(index[4:]), int(le.Uint32(index[8:]))+1
			name := string(index[12 : 12+n])
			index = index[12+n:]
			got, ok := r.dirs.at[uint64(blk)]
			if want := (base + l) / metaSize * metaSize; !ok || got != want || headers[l] != name {
				return 0, fmt.Errorf("%q: index entry (%d, %d, %q) does not match header %q at %d", path, l, blk, name, headers[l], base+l)
			}
		}
	case typeFile, typeLongFile:
		var start, size uint64
		var frag, fragAt uint32
		var blocks []byte
		if typ == typeFile {
			start, frag, fragAt, size = uint64(le.Uint32(p[16:])), le.Uint32(p[20:]), le.Uint32(p[24:]), uint64(le.Uint32(p[28:]))
			blocks = p[32:]
		} else {
			start, size, frag, fragAt = le.Uint64(p[16:]), le.Uint64(p[24:]), le.Uint32(p[44:]), le.Uint32(p[48:])
			blocks = p[56:]
			r.stats.longFiles++
			if le.Uint64(p[32:]) != 0 || le.Uint32(p[40:]) != 1 || le.Uint32(p[52:]) != noXattr {
				return 0, fmt.Errorf("%q: sparse %d, nlink %d or xattr %#x", path, le.Uint64(p[32:]), le.Uint32(p[40:]), le.Uint32(p[52:]))
			}
		}
		bs := uint64(r.blockSize)
		n := size / bs
		if frag == noFragment && size%bs != 0 {
			n++
		}
		var data []byte
		for i := range n {
			word := le.Uint32(blocks[4*i:])
			raw, err := r.block(start, word, min(bs, size-i*bs))
			if err != nil {
				return 0, fmt.Errorf("%q block %d: %v", path, i, err)
			}
			data = append(data, raw...)
			start += uint64(word &^ dataUncompressed)
		}
		if frag != noFragment {
			if int(frag) >= len(r.frags) {
				return 0, fmt.Errorf("%q: fragment %d of %d", path, frag, len(r.frags))
			}
			fb, err := r.fragCache[frag], error(nil)
			if fb == nil {
				fb, err = r.block(r.frags[frag][0], uint32(r.frags[frag][1]), 0)
				r.fragCache[frag] = fb
			}
			tail := uint64(fragAt) + size%bs
			if err != nil || tail > uint64(len(fb)) || size%bs == 0 {
				return 0, fmt.Errorf("%q: fragment %d: %v", path, frag, err)
			}
			data = append(data, fb[fragAt:tail]...)
		}
		r.out[path] = Entry{Path: path, Mode: fm, Data: data}
	case typeSymlink:
		if le.Uint32(p[16:]) != 1 || fm != 0o777 {
			return 0, fmt.Errorf("%q: symlink nlink %d mode %v", path, le.Uint32(p[16:]), fm)
		}
		n := int(le.Uint32(p[20:]))
		r.out[path] = Entry{Path: path, Mode: fs.ModeSymlink | fm, Target: string(p[24 : 24+n])}
	default:
		return 0, fmt.Errorf("%q: inode type %d", path, typ)
	}
	return number, nil
}

// block reads a data or fragment block; want is its uncompressed size, or 0
// for a fragment block.
func (r *reader) block(pos uint64, word uint32, want uint64) ([]byte, error) {
	n := uint64(word &^ dataUncompressed)
	if n == 0 || n > uint64(r.blockSize) || pos+n > uint64(len(r.img)) {
		return nil, fmt.Errorf("block at %d of %d bytes", pos, n)
	}
	raw := r.img[pos : pos+n]
	if word&dataUncompressed == 0 {
		var err error
		if raw, err = inflate(raw, r.blockSize); err != nil {
			return nil, err
		}
	}
	if want != 0 && uint64(len(raw)) != want {
		return nil, fmt.Errorf("block of %d bytes, want %d", len(raw), want)
	}
	return raw, nil
}
