package fat

import (
	"encoding/binary"
	"time"
)

// Layout of the file systems written by Write. gokrazy's reader depends on
// the sector size and on there being exactly one FAT: it locates the root
// directory at reserved sectors + fatSectors. Clusters are 2 KiB, or larger
// when a file system of more than about 128 MiB would otherwise exceed
// FAT16's cluster count; the reserved sectors pad the boot sector to one
// cluster, as gokrazy does.
const (
	sectorSize           = 512
	minSectorsPerCluster = 4
	maxSectorsPerCluster = 64 // 32 KiB, FAT16's largest portable cluster
	numFATs              = 1
	rootEntries          = 512
	dirEntrySize         = 32
	rootDirSectors       = rootEntries * dirEntrySize / sectorSize
	mediaFixedDisk       = 0xF8
)

// FAT16 limits (Microsoft FAT specification, "FAT type determination"):
// fewer clusters make a FAT12 file system, more a FAT32 one.
const (
	minClusters   = 4085
	maxClusters   = 65524
	endOfChain    = 0xFFFF
	maxDirEntries = 65536 // a directory may not exceed 2 MiB
)

// Directory entry attributes.
const (
	attrVolumeID = 0x08
	attrDir      = 0x10
	attrArchive  = 0x20
	attrLongName = 0x0F // read-only | hidden | system | volume ID
)

// lfnOffsets are the byte offsets of the 13 UTF-16 code units stored in one
// long file name directory entry.
var lfnOffsets = [13]int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30}

// layout locates the regions of a file system. Offsets are in bytes from the
// start of the file system.
type layout struct {
	totalSectors int64
	fatSectors   int64
	clusterSize  int64
	fatStart     int64
	rootStart    int64
	rootEntries  int64
	dataStart    int64
	clusters     int64 // data clusters, numbered from 2
}

// clusterOffset returns the byte offset of cluster c.
func (l layout) clusterOffset(c int64) int64 {
	return l.dataStart + (c-2)*l.clusterSize
}

// writeLayout returns the layout Write uses for a file system of the given
// number of sectors: the smallest clusters that keep the count within
// FAT16's limit.
func writeLayout(sectors int64) layout {
	spc := int64(minSectorsPerCluster)
	for {
		l := writeLayoutWith(sectors, spc)
		if l.clusters <= maxClusters || spc >= maxSectorsPerCluster {
			return l
		}
		spc *= 2
	}
}

// writeLayoutWith returns the layout for spc sectors per cluster. The FAT
// is sized for the largest cluster count the sectors could hold and rounded
// up so that the data area starts cluster-aligned.
func writeLayoutWith(sectors, spc int64) layout {
	sectorsPerCluster, reservedSectors := spc, spc
	meta := reservedSectors + rootDirSectors
	upper := max((sectors-meta)/sectorsPerCluster, 0)
	fatSectors := ((upper+2)*2 + sectorSize - 1) / sectorSize
	// The FAT and root directory together end on a cluster boundary.
	fatSectors = (fatSectors+rootDirSectors+sectorsPerCluster-1)/sectorsPerCluster*sectorsPerCluster - rootDirSectors
	l := layout{
		totalSectors: sectors,
		fatSectors:   fatSectors,
		clusterSize:  spc * sectorSize,
		fatStart:     reservedSectors * sectorSize,
		rootStart:    (reservedSectors + numFATs*fatSectors) * sectorSize,
		rootEntries:  rootEntries,
	}
	l.dataStart = l.rootStart + rootDirSectors*sectorSize
	l.clusters = max((sectors-l.dataStart/sectorSize)/sectorsPerCluster, 0)
	return l
}

// dosDateTime encodes t (in UTC) as FAT date and time fields, clamped to the
// range FAT can store: 1980-01-01 00:00:00 to 2107-12-31 23:59:58.
func dosDateTime(t time.Time) (date, tim uint16) {
	t = t.UTC()
	switch {
	case t.Year() < 1980:
		return 1<<5 | 1, 0
	case t.Year() > 2107:
		t = time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)
	}
	date = uint16(t.Year()-1980)<<9 | uint16(t.Month())<<5 | uint16(t.Day())
	tim = uint16(t.Hour())<<11 | uint16(t.Minute())<<5 | uint16(t.Second()/2)
	return date, tim
}

// appendShortEntry appends a short (8.3) directory entry. The creation,
// access and modification times are all set to date and tim.
func appendShortEntry(b []byte, name [11]byte, attr byte, cluster int64, size int, date, tim uint16) []byte {
	var e [dirEntrySize]byte
	copy(e[:11], name[:])
	e[11] = attr
	binary.LittleEndian.PutUint16(e[14:], tim)
	binary.LittleEndian.PutUint16(e[16:], date)
	binary.LittleEndian.PutUint16(e[18:], date)
	binary.LittleEndian.PutUint16(e[22:], tim)
	binary.LittleEndian.PutUint16(e[24:], date)
	binary.LittleEndian.PutUint16(e[26:], uint16(cluster))
	binary.LittleEndian.PutUint32(e[28:], uint32(size))
	return append(b, e[:]...)
}

// appendLongEntries appends the long file name entries for name (UTF-16,
// at most 255 units) that precede the short entry named short.
func appendLongEntries(b []byte, name []uint16, short [11]byte) []byte {
	n := (len(name) + 12) / 13
	units := make([]uint16, n*13)
	for i := range units {
		switch {
		case i < len(name):
			units[i] = name[i]
		case i > len(name):
			units[i] = 0xFFFF // padding after the terminating NUL
		}
	}
	sum := shortChecksum(short[:])
	for ord := n; ord >= 1; ord-- {
		var e [dirEntrySize]byte
		e[0] = byte(ord)
		if ord == n {
			e[0] |= 0x40 // last long entry, stored first
		}
		e[11] = attrLongName
		e[13] = sum
		for i, off := range lfnOffsets {
			binary.LittleEndian.PutUint16(e[off:], units[(ord-1)*13+i])
		}
		b = append(b, e[:]...)
	}
	return b
}

// shortChecksum is the checksum of an 11-byte short name that long file name
// entries carry to tie them to their short entry.
func shortChecksum(name []byte) byte {
	var sum byte
	for _, c := range name[:11] {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	return sum
}
