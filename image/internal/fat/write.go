package fat

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"slices"
	"strings"
	"time"
)

// File is a regular file to store in the file system.
type File struct {
	// Path is the slash-separated path from the root, for example
	// "cmdline.txt" or "overlays/vc4-kms-v3d.dtbo", without a leading slash.
	// Directories on the way are created. Each element is at most 255 UTF-16
	// units, does not end in a dot or space, and contains no control
	// characters nor any of "*/:<>?\|. Like FAT itself, paths are
	// case-insensitive: "a.txt" and "A.TXT" are duplicates.
	Path string

	// Data is the content of the file. Empty data gives an empty file, which
	// has no clusters. Write neither modifies nor retains it.
	Data []byte
}

// Options tunes the file system. The zero value is ready to use.
type Options struct {
	// ModTime is recorded as the creation, access and modification time of
	// every file and directory, in UTC with FAT's 2-second resolution. Times
	// before 1980, including the zero time, are stored as 1980-01-01 00:00:00.
	ModTime time.Time

	// Label is the volume label: at most 11 ASCII letters, digits, spaces or
	// any of $%'-_@~`!(){}^#&, stored upper-cased. Empty means no label
	// ("NO NAME" in the boot sector, no label entry in the root directory).
	Label string

	// VolumeID is the volume serial number, which Linux shows as the
	// file system UUID ("XXXX-XXXX"). Zero means a CRC-32 of the names and
	// contents of the files, so that it stays deterministic.
	VolumeID uint32
}

// Write writes a FAT16 file system of size bytes holding files to w, starting
// at byte offset off (the partition start in a disk image; it must be a
// multiple of 512 and is recorded as the number of hidden sectors).
//
// Write only writes the boot sector, the FAT, directories and file data: the
// region [off, off+size) of w must already be zero, as in a freshly created
// (sparse) file. The output depends only on the arguments, not on the order of
// files. Every file and directory occupies one contiguous run of clusters.
//
// size must give between 4085 and 65524 clusters, that is roughly
// 8 MiB + 4 KiB to 2 GiB: clusters are 2 KiB up to about 128 MiB and grow
// (4 KiB up to 256 MiB, and so on to 32 KiB) above.
func Write(w io.WriterAt, off, size int64, files []File, opts Options) error {
	if off < 0 || off%sectorSize != 0 || off/sectorSize > math.MaxUint32 {
		return fmt.Errorf("%w: offset %d is not a multiple of %d below 2 TiB", ErrSize, off, sectorSize)
	}
	if size <= 0 || size%sectorSize != 0 {
		return fmt.Errorf("%w: %d bytes is not a positive multiple of %d", ErrSize, size, sectorSize)
	}
	l := writeLayout(size / sectorSize)
	if l.clusters < minClusters || l.clusters > maxClusters {
		return fmt.Errorf("%w: %d bytes give %d clusters, FAT16 needs %d to %d: use a size between 8 MiB + 4 KiB and 2 GiB",
			ErrSize, size, l.clusters, minClusters, maxClusters)
	}
	label, hasLabel, err := volumeLabel(opts.Label)
	if err != nil {
		return err
	}
	root, err := buildTree(files)
	if err != nil {
		return err
	}

	next, err := allocate(root, hasLabel, l.clusterSize)
	if err != nil {
		return err
	}
	if used := next - 2; used > l.clusters {
		return fmt.Errorf("%w: files and directories need %d KiB, the file system holds %d KiB",
			ErrNoSpace, used*l.clusterSize/1024, l.clusters*l.clusterSize/1024)
	}

	fw := fsWriter{w: w, off: off, l: l}
	fw.date, fw.time = dosDateTime(opts.ModTime)
	volumeID := opts.VolumeID
	if volumeID == 0 {
		volumeID = contentID(root)
	}
	if err := fw.writeAt(bootSector(l, uint32(off/sectorSize), volumeID, label), 0); err != nil {
		return fmt.Errorf("writing boot sector: %w", err)
	}
	if err := fw.writeAt(fatBytes(root, next), l.fatStart); err != nil {
		return fmt.Errorf("writing FAT: %w", err)
	}
	var rootDir []byte
	if hasLabel {
		rootDir = appendShortEntry(rootDir, label, attrVolumeID, 0, 0, fw.date, fw.time)
	}
	if err := fw.writeAt(fw.appendChildren(rootDir, root), l.rootStart); err != nil {
		return fmt.Errorf("writing root directory: %w", err)
	}
	return root.walk(func(n, parent *node) error {
		b := n.data
		if n.isDir {
			b = appendShortEntry(nil, packShort(".", ""), attrDir, n.cluster, 0, fw.date, fw.time)
			b = appendShortEntry(b, packShort("..", ""), attrDir, parent.cluster, 0, fw.date, fw.time)
			b = fw.appendChildren(b, n)
		}
		if err := fw.writeAt(b, l.clusterOffset(n.cluster)); err != nil {
			return fmt.Errorf("writing %q: %w", n.name, err)
		}
		return nil
	})
}

// node is a file or directory of the tree Write builds.
type node struct {
	name     string
	short    [11]byte
	longName []uint16 // UTF-16; nil when the short name is the name
	data     []byte   // regular files
	isDir    bool
	children []*node          // directories, sorted by name
	byKey    map[string]*node // directories: children by upper-cased name
	cluster  int64            // first cluster; 0 for empty files and the root
	clusters int64
}

// entries returns the number of directory entries n takes in its parent.
func (n *node) entries() int64 {
	return 1 + int64(len(n.longName)+12)/13
}

// walk calls fn for every descendant of n in pre-order, with children in
// name order.
func (n *node) walk(fn func(n, parent *node) error) error {
	for _, c := range n.children {
		if err := fn(c, n); err != nil {
			return err
		}
		if err := c.walk(fn); err != nil {
			return err
		}
	}
	return nil
}

// buildTree turns files into a tree of nodes with sorted children and
// unique short names.
func buildTree(files []File) (*node, error) {
	root := &node{isDir: true, byKey: map[string]*node{}}
	for _, f := range files {
		if !fs.ValidPath(f.Path) || f.Path == "." {
			return nil, fmt.Errorf("%w %q: want a slash-separated relative path like \"dir/name.txt\"", ErrInvalidPath, f.Path)
		}
		dir := root
		elems := strings.Split(f.Path, "/")
		for i, elem := range elems {
			if err := checkName(elem); err != nil {
				return nil, fmt.Errorf("%w %q: %v", ErrInvalidPath, f.Path, err)
			}
			key := strings.ToUpper(elem)
			child, last := dir.byKey[key], i == len(elems)-1
			switch {
			case child == nil:
				child = &node{name: elem, data: f.Data}
				if !last {
					child = &node{name: elem, isDir: true, byKey: map[string]*node{}}
				}
				dir.byKey[key] = child
				dir.children = append(dir.children, child)
			case last:
				return nil, fmt.Errorf("%w %q: duplicate (names are case-insensitive)", ErrInvalidPath, f.Path)
			case !child.isDir:
				return nil, fmt.Errorf("%w %q: %q is a file", ErrInvalidPath, f.Path, strings.Join(elems[:i+1], "/"))
			}
			dir = child
		}
	}
	prepare := func(n *node) error {
		slices.SortFunc(n.children, func(a, b *node) int { return strings.Compare(a.name, b.name) })
		return assignShortNames(n)
	}
	if err := prepare(root); err != nil {
		return nil, err
	}
	return root, root.walk(func(n, _ *node) error {
		if !n.isDir {
			return nil
		}
		return prepare(n)
	})
}

// allocate gives every file and directory below root a contiguous run of
// clusters, in pre-order with children sorted by name, and returns the first
// cluster left free. It checks that directories can hold their entries.
func allocate(root *node, hasLabel bool, clusterSize int64) (next int64, err error) {
	rootUsed := int64(0)
	if hasLabel {
		rootUsed++
	}
	for _, c := range root.children {
		rootUsed += c.entries()
	}
	if rootUsed > rootEntries {
		return 0, fmt.Errorf("%w: the root directory needs %d entries, it has %d: move files into subdirectories",
			ErrNoSpace, rootUsed, rootEntries)
	}
	next = 2
	err = root.walk(func(n, _ *node) error {
		size := int64(len(n.data))
		if n.isDir {
			entries := int64(2) // "." and ".."
			for _, c := range n.children {
				entries += c.entries()
			}
			if entries > maxDirEntries {
				return fmt.Errorf("%w: directory %q needs %d entries, at most %d are allowed",
					ErrNoSpace, n.name, entries, maxDirEntries)
			}
			size = entries * dirEntrySize
		}
		n.clusters = (size + clusterSize - 1) / clusterSize
		if n.clusters > 0 {
			n.cluster = next
			next += n.clusters
		}
		return nil
	})
	return next, err
}

// volumeLabel returns the boot sector label for s and whether the root
// directory needs a label entry.
func volumeLabel(s string) ([11]byte, bool, error) {
	if s == "" {
		return packShort("NO NAME", ""), false, nil
	}
	up := upperASCII(s)
	ok := len(up) <= 11 && up[0] != ' '
	for _, c := range []byte(up) {
		ok = ok && (c == ' ' || isShortChar(c))
	}
	if !ok {
		return [11]byte{}, false, fmt.Errorf("invalid volume label %q: use up to 11 letters, digits, spaces or any of $%%'-_@~`!(){}^#&", s)
	}
	label := packShort("", "")
	copy(label[:], up)
	return label, true, nil
}

// contentID returns a volume ID derived from the names and data in the tree.
func contentID(root *node) uint32 {
	h := crc32.NewIEEE()
	root.walk(func(n, _ *node) error {
		h.Write(n.short[:])
		h.Write([]byte(n.name))
		h.Write(n.data)
		return nil
	})
	return h.Sum32()
}

// bootSector returns the boot sector with the BIOS parameter block
// (Microsoft FAT specification, "Boot Sector and BPB").
func bootSector(l layout, hiddenSectors, volumeID uint32, label [11]byte) []byte {
	b := make([]byte, sectorSize)
	copy(b, []byte{0xEB, 0x3C, 0x90}) // jmp to the boot code at 0x3E
	copy(b[3:], "cloudbox")           // OEM name
	binary.LittleEndian.PutUint16(b[11:], sectorSize)
	b[13] = byte(l.clusterSize / sectorSize)
	binary.LittleEndian.PutUint16(b[14:], uint16(l.fatStart/sectorSize))
	b[16] = numFATs
	binary.LittleEndian.PutUint16(b[17:], rootEntries)
	if l.totalSectors <= math.MaxUint16 {
		binary.LittleEndian.PutUint16(b[19:], uint16(l.totalSectors))
	} else {
		binary.LittleEndian.PutUint32(b[32:], uint32(l.totalSectors))
	}
	b[21] = mediaFixedDisk
	binary.LittleEndian.PutUint16(b[22:], uint16(l.fatSectors))
	binary.LittleEndian.PutUint16(b[24:], 32) // sectors per track, unused
	binary.LittleEndian.PutUint16(b[26:], 64) // heads, unused
	binary.LittleEndian.PutUint32(b[28:], hiddenSectors)
	b[36] = 0x80 // drive number
	b[38] = 0x29 // extended boot signature: the next three fields are valid
	binary.LittleEndian.PutUint32(b[39:], volumeID)
	copy(b[43:54], label[:])
	copy(b[54:62], "FAT16   ")
	copy(b[62:], []byte{0xCD, 0x18, 0xEB, 0xFE}) // boot code: int 0x18 (not bootable), hang
	b[510], b[511] = 0x55, 0xAA
	return b
}

// fatBytes returns the used part of the FAT: entries for clusters below next.
func fatBytes(root *node, next int64) []byte {
	fat := make([]byte, next*2)
	binary.LittleEndian.PutUint16(fat[0:], 0xFF00|mediaFixedDisk)
	binary.LittleEndian.PutUint16(fat[2:], endOfChain) // clean, no I/O errors
	root.walk(func(n, _ *node) error {
		for c := n.cluster; c < n.cluster+n.clusters; c++ {
			v := uint16(c + 1)
			if c == n.cluster+n.clusters-1 {
				v = endOfChain
			}
			binary.LittleEndian.PutUint16(fat[c*2:], v)
		}
		return nil
	})
	return fat
}

// fsWriter writes the regions of one file system.
type fsWriter struct {
	w    io.WriterAt
	off  int64
	l    layout
	date uint16
	time uint16
}

func (fw *fsWriter) writeAt(b []byte, off int64) error {
	if len(b) == 0 {
		return nil
	}
	_, err := fw.w.WriteAt(b, fw.off+off)
	return err
}

// appendChildren appends the directory entries for the children of dir.
func (fw *fsWriter) appendChildren(b []byte, dir *node) []byte {
	for _, c := range dir.children {
		if c.longName != nil {
			b = appendLongEntries(b, c.longName, c.short)
		}
		attr := byte(attrArchive)
		if c.isDir {
			attr = attrDir
		}
		b = appendShortEntry(b, c.short, attr, c.cluster, len(c.data), fw.date, fw.time)
	}
	return b
}
