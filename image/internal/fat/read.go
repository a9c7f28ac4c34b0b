package fat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"unicode/utf16"
)

// Limits that bound the memory ReadFile uses on untrusted input.
const (
	maxFileSize    = 256 << 20 // bytes
	maxClusterSize = 64 << 10  // bytes
	readChunk      = 1 << 20   // bytes read (and allocated) at a time
)

// ReadFile returns the content of the file at path (slash-separated, an
// optional leading slash) in the FAT16 file system starting at byte offset
// off of r. Path elements match long or short names, ignoring case.
//
// The file system is treated as untrusted: structural problems give errors
// wrapping ErrCorrupt, cluster chains are followed with loop and range
// checks, and files larger than 256 MiB are refused. A missing file gives an
// error wrapping ErrNotFound (and fs.ErrNotExist).
func ReadFile(r io.ReaderAt, off int64, path string) ([]byte, error) {
	b, err := readFile(r, off, path)
	if err != nil {
		return nil, fmt.Errorf("reading %s from FAT file system at offset %d: %w", path, off, err)
	}
	return b, nil
}

func readFile(r io.ReaderAt, off int64, path string) ([]byte, error) {
	name := strings.TrimPrefix(path, "/")
	if !fs.ValidPath(name) || name == "." {
		return nil, fmt.Errorf("%w %q", ErrInvalidPath, path)
	}
	if off < 0 {
		return nil, fmt.Errorf("negative offset")
	}
	fr := fsReader{r: r, off: off}
	if err := fr.open(); err != nil {
		return nil, err
	}
	e := dirent{attr: attrDir} // the root directory
	elems := strings.Split(name, "/")
	for i, elem := range elems {
		if e.attr&attrDir == 0 {
			return nil, fmt.Errorf("%s is not a directory: %w", strings.Join(elems[:i], "/"), ErrNotFound)
		}
		var err error
		if e, err = fr.lookup(e, elem); err != nil {
			return nil, err
		}
	}
	if e.attr&attrDir != 0 {
		return nil, fmt.Errorf("%s is a directory", name)
	}
	return fr.readData(e)
}

// fsReader reads one FAT16 file system.
type fsReader struct {
	r   io.ReaderAt
	off int64
	l   layout
	fat []byte // the first FAT, entries 0 to l.clusters+1
}

// open parses the boot sector (Microsoft FAT specification, "Boot Sector
// and BPB") and loads the FAT.
func (fr *fsReader) open() error {
	b := make([]byte, 512)
	if err := fr.readAt(b, 0); err != nil {
		return fmt.Errorf("reading boot sector: %w", err)
	}
	le := binary.LittleEndian
	bytesPerSector := int64(le.Uint16(b[11:]))
	perCluster := int64(b[13])
	reserved := int64(le.Uint16(b[14:]))
	fats := int64(b[16])
	rootEntries := int64(le.Uint16(b[17:]))
	total := int64(le.Uint16(b[19:]))
	if total == 0 {
		total = int64(le.Uint32(b[32:]))
	}
	fatSectors := int64(le.Uint16(b[22:]))
	switch {
	case b[510] != 0x55 || b[511] != 0xAA:
		return fmt.Errorf("%w: no boot sector signature", ErrCorrupt)
	case bytesPerSector < 512 || bytesPerSector > 4096 || bytesPerSector&(bytesPerSector-1) != 0:
		return fmt.Errorf("%w: %d bytes per sector", ErrCorrupt, bytesPerSector)
	case perCluster == 0 || perCluster&(perCluster-1) != 0 || perCluster*bytesPerSector > maxClusterSize:
		return fmt.Errorf("%w: %d sectors per cluster", ErrCorrupt, perCluster)
	case reserved == 0 || fats == 0 || rootEntries == 0:
		return fmt.Errorf("%w: %d reserved sectors, %d FATs, %d root entries", ErrCorrupt, reserved, fats, rootEntries)
	case fatSectors == 0:
		return fmt.Errorf("%w: no 16-bit FAT size, the file system is not FAT12 or FAT16", ErrCorrupt)
	}
	rootSectors := (rootEntries*dirEntrySize + bytesPerSector - 1) / bytesPerSector
	dataSector := reserved + fats*fatSectors + rootSectors
	if total <= dataSector {
		return fmt.Errorf("%w: %d sectors, %d before the data area", ErrCorrupt, total, dataSector)
	}
	fr.l = layout{
		totalSectors: total,
		fatSectors:   fatSectors,
		clusterSize:  perCluster * bytesPerSector,
		fatStart:     reserved * bytesPerSector,
		rootStart:    (reserved + fats*fatSectors) * bytesPerSector,
		rootEntries:  rootEntries,
		dataStart:    dataSector * bytesPerSector,
		clusters:     (total - dataSector) / perCluster,
	}
	if c := fr.l.clusters; c < minClusters || c > maxClusters {
		return fmt.Errorf("%w: %d clusters, which is not FAT16", ErrCorrupt, c)
	}
	fr.fat = make([]byte, (fr.l.clusters+2)*2)
	if int64(len(fr.fat)) > fatSectors*bytesPerSector {
		return fmt.Errorf("%w: %d clusters do not fit a FAT of %d sectors", ErrCorrupt, fr.l.clusters, fatSectors)
	}
	if err := fr.readAt(fr.fat, fr.l.fatStart); err != nil {
		return fmt.Errorf("reading FAT: %w", err)
	}
	return nil
}

// readAt reads exactly len(b) bytes at offset off of the file system.
func (fr *fsReader) readAt(b []byte, off int64) error {
	n, err := fr.r.ReadAt(b, fr.off+off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// run is a contiguous range of clusters.
type run struct{ first, n int64 }

// chain returns the runs of the cluster chain starting at first, stopping at
// the end of the chain or after limit clusters, and the number of clusters.
func (fr *fsReader) chain(first, limit int64) ([]run, int64, error) {
	seen := make([]uint64, (fr.l.clusters+2+63)/64)
	var runs []run
	c := first
	for n := int64(0); n < limit; n++ {
		if c < 2 || c >= fr.l.clusters+2 {
			return nil, 0, fmt.Errorf("%w: cluster chain from %d reaches invalid cluster %#x", ErrCorrupt, first, c)
		}
		if seen[c/64]&(1<<(c%64)) != 0 {
			return nil, 0, fmt.Errorf("%w: cluster chain from %d loops at %d", ErrCorrupt, first, c)
		}
		seen[c/64] |= 1 << (c % 64)
		if last := len(runs) - 1; last >= 0 && runs[last].first+runs[last].n == c {
			runs[last].n++
		} else {
			runs = append(runs, run{c, 1})
		}
		c = int64(binary.LittleEndian.Uint16(fr.fat[c*2:]))
		if c >= 0xFFF8 {
			return runs, n + 1, nil
		}
	}
	return runs, limit, nil
}

// readRuns reads size bytes from runs, allocating as data arrives so that a
// lying directory entry cannot make it allocate more than the data read.
func (fr *fsReader) readRuns(runs []run, size int64) ([]byte, error) {
	out := make([]byte, 0, min(size, readChunk))
	for _, r := range runs {
		off, end := fr.l.clusterOffset(r.first), fr.l.clusterOffset(r.first+r.n)
		for ; off < end && int64(len(out)) < size; off += readChunk {
			n := min(end-off, readChunk, size-int64(len(out)))
			out = append(out, make([]byte, n)...)
			if err := fr.readAt(out[int64(len(out))-n:], off); err != nil {
				return nil, fmt.Errorf("reading cluster data: %w", err)
			}
		}
	}
	return out, nil
}

// readData returns the content of the file e.
func (fr *fsReader) readData(e dirent) ([]byte, error) {
	if e.size > maxFileSize {
		return nil, fmt.Errorf("file is %d bytes, more than the limit of %d", e.size, maxFileSize)
	}
	if e.size == 0 {
		return []byte{}, nil
	}
	need := (e.size + fr.l.clusterSize - 1) / fr.l.clusterSize
	runs, n, err := fr.chain(e.cluster, need)
	if err != nil {
		return nil, err
	}
	if n < need {
		return nil, fmt.Errorf("%w: file of %d bytes has only %d clusters", ErrCorrupt, e.size, n)
	}
	return fr.readRuns(runs, e.size)
}

// dirent is a parsed short directory entry.
type dirent struct {
	attr    byte
	cluster int64
	size    int64
}

// lookup finds the entry named elem in the directory dir; dir.cluster 0 is
// the root directory.
func (fr *fsReader) lookup(dir dirent, elem string) (dirent, error) {
	var b []byte
	if dir.cluster == 0 {
		b = make([]byte, fr.l.rootEntries*dirEntrySize)
		if err := fr.readAt(b, fr.l.rootStart); err != nil {
			return dirent{}, fmt.Errorf("reading root directory: %w", err)
		}
	} else {
		runs, _, err := fr.chain(dir.cluster, maxDirEntries*dirEntrySize/fr.l.clusterSize)
		if err != nil {
			return dirent{}, err
		}
		if b, err = fr.readRuns(runs, maxDirEntries*dirEntrySize); err != nil {
			return dirent{}, err
		}
	}
	e, ok := findEntry(b, elem)
	if !ok {
		return dirent{}, fmt.Errorf("%s: %w", elem, ErrNotFound)
	}
	if e.attr&attrDir != 0 && e.cluster == 0 {
		return dirent{}, fmt.Errorf("%w: directory %s has no cluster", ErrCorrupt, elem)
	}
	return e, nil
}

// findEntry searches the directory entries in b for elem, comparing it to
// long names (Microsoft FAT specification, "Long File Name Implementation")
// and short names, ignoring case.
func findEntry(b []byte, elem string) (dirent, bool) {
	var (
		long    [20 * 13]uint16
		pending = -1 // next long entry ordinal expected; 0: complete; -1: none
		units   int
		sum     byte
	)
	for ; len(b) >= dirEntrySize; b = b[dirEntrySize:] {
		e := b[:dirEntrySize]
		switch {
		case e[0] == 0x00: // end of directory
			return dirent{}, false
		case e[0] == 0xE5: // deleted
			pending = -1
			continue
		case e[11]&0x3F == attrLongName:
			ord := int(e[0] & 0x3F)
			switch {
			case e[0]&0x40 != 0 && ord >= 1 && ord <= 20:
				pending, units, sum = ord, ord*13, e[13]
			case ord == 0 || ord != pending || e[13] != sum:
				pending = -1
				continue
			}
			for i, off := range lfnOffsets {
				long[(ord-1)*13+i] = binary.LittleEndian.Uint16(e[off:])
			}
			pending--
			continue
		}
		var name string
		if pending == 0 && shortChecksum(e[:11]) == sum {
			u := long[:units]
			for i, c := range u {
				if c == 0 {
					u = u[:i]
					break
				}
			}
			name = string(utf16.Decode(u))
		}
		pending = -1
		if e[11]&attrVolumeID != 0 {
			continue
		}
		var short [11]byte
		copy(short[:], e)
		if short[0] == 0x05 { // escaped 0xE5
			short[0] = 0xE5
		}
		if strings.EqualFold(elem, name) || strings.EqualFold(elem, displayShort(short)) {
			le := binary.LittleEndian
			return dirent{attr: e[11], cluster: int64(le.Uint16(e[26:])), size: int64(le.Uint32(e[28:]))}, true
		}
	}
	return dirent{}, false
}
