package image

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf16"

	"github.com/cloudbox/cloudbox/boards"
	"github.com/cloudbox/cloudbox/image/internal/gpt"
)

const sectorSize = gpt.SectorSize

// Partition numbers, as gokrazy's init names them.
const (
	partBoot  = 1
	partRootA = 2
	partRootB = 3
	partPerm  = 4
)

// partition is one GPT entry; Start and Sectors are in 512-byte sectors.
type partition struct {
	Num     int
	Type    string
	Name    string
	Start   int64
	Sectors int64
}

func (p partition) Offset() int64 { return p.Start * sectorSize }
func (p partition) Size() int64   { return p.Sectors * sectorSize }

// layout is the disk layout of an image of size bytes: the gokrazy layout of
// shared/docs/gokrazy-image.md §2.1, with /perm filling the disk up to the
// last usable LBA before the backup GPT.
type layout struct {
	Sectors int64 // disk size in sectors
	Parts   [4]partition
	// DiskID is the 32-bit disk identity: the MBR disk signature and the
	// varying part of every partition GUID.
	DiskID uint32
}

func newLayout(b boards.Board, size int64, hostname string) (layout, error) {
	if size < boards.MinImageSize {
		return layout{}, fmt.Errorf("image size %d MiB is too small for board %s: need at least %d MiB", size/boards.MiB, b.Name, boards.MinImageSize/boards.MiB)
	}
	n := size / sectorSize
	rootType := gpt.TypeRootARM64
	if b.GOARCH == "amd64" {
		rootType = gpt.TypeRootAMD64
	}
	first := int64(boards.FirstPartitionOffset / sectorSize)
	boot := int64(boards.BootSize / sectorSize)
	root := int64(boards.RootSize / sectorSize)
	lastUsable := n - 34
	permStart := first + boot + 2*root
	l := layout{
		Sectors: n,
		DiskID:  diskID(b.Name, hostname),
		Parts: [4]partition{
			{partBoot, gpt.TypeEFISystem, "boot", first, boot},
			{partRootA, rootType, "root-a", first + boot, root},
			{partRootB, gpt.TypeLinuxData, "root-b", first + boot + root, root},
			{partPerm, gpt.TypeLinuxData, "perm", permStart, lastUsable - permStart + 1},
		},
	}
	return l, nil
}

// diskID derives the disk identity from the board and hostname, so that the
// same inputs give the same image (reproducible builds) while boxes of
// different names get different PARTUUIDs.
func diskID(board, hostname string) uint32 {
	sum := sha256.Sum256([]byte("cloudbox disk\x00" + board + "\x00" + hostname))
	return binary.BigEndian.Uint32(sum[:4])
}

// PartUUID returns the GPT unique GUID of partition num, as the kernel's
// root=PARTUUID= expects it (lowercase).
func (l layout) PartUUID(num int) string {
	return fmt.Sprintf("c1b0c1b0-0000-4000-8000-%08x00%02x", l.DiskID, num)
}

// RootCmdline is the root= argument for the active slot: the kernel and
// gokrazy's rootdev both resolve PARTUUID of partition 1 plus an offset.
func (l layout) RootCmdline(slot int) string {
	return fmt.Sprintf("root=PARTUUID=%s/PARTNROFF=%d", l.PartUUID(partBoot), slot-partBoot)
}

// writePartitionTable writes LBA 0 (MBR), the primary GPT at LBA 1-33 and the
// backup GPT in the last 33 sectors. With hybrid set, the MBR carries the FAT
// boot partition as a real entry (the Raspberry Pi boot ROM reads only the
// MBR) next to a protective 0xEE entry, as gokrazy does.
func writePartitionTable(w io.WriterAt, l layout, hybrid bool) error {
	entries := make([]byte, 128*128)
	for i, p := range l.Parts {
		e := entries[i*128 : (i+1)*128]
		typ, uuid := gpt.GUID(p.Type), gpt.GUID(l.PartUUID(p.Num))
		copy(e[0:16], typ[:])
		copy(e[16:32], uuid[:])
		binary.LittleEndian.PutUint64(e[32:], uint64(p.Start))
		binary.LittleEndian.PutUint64(e[40:], uint64(p.Start+p.Sectors-1))
		for j, c := range utf16.Encode([]rune(p.Name)) {
			binary.LittleEndian.PutUint16(e[56+2*j:], c)
		}
	}
	entriesCRC := crc32.ChecksumIEEE(entries)
	diskGUID := gpt.GUID(fmt.Sprintf("c1b0c1b0-0000-4000-8000-%08x0000", l.DiskID))

	header := func(current, backup, entriesLBA int64) []byte {
		h := make([]byte, sectorSize)
		copy(h, "EFI PART")
		binary.LittleEndian.PutUint32(h[8:], 0x00010000)
		binary.LittleEndian.PutUint32(h[12:], 92)
		binary.LittleEndian.PutUint64(h[24:], uint64(current))
		binary.LittleEndian.PutUint64(h[32:], uint64(backup))
		binary.LittleEndian.PutUint64(h[40:], 34)
		binary.LittleEndian.PutUint64(h[48:], uint64(l.Sectors-34))
		copy(h[56:72], diskGUID[:])
		binary.LittleEndian.PutUint64(h[72:], uint64(entriesLBA))
		binary.LittleEndian.PutUint32(h[80:], 128)
		binary.LittleEndian.PutUint32(h[84:], 128)
		binary.LittleEndian.PutUint32(h[88:], entriesCRC)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
		return h
	}

	mbr := make([]byte, sectorSize)
	binary.LittleEndian.PutUint32(mbr[440:], l.DiskID)
	if hybrid {
		boot := l.Parts[0]
		mbrEntry(mbr[446:462], 0x80, 0x0c, boot.Start, boot.Sectors)
		mbrEntry(mbr[462:478], 0x00, 0xee, 1, boot.Start-1)
	} else {
		mbrEntry(mbr[446:462], 0x00, 0xee, 1, min(l.Sectors-1, 0xffffffff))
	}
	mbr[510], mbr[511] = 0x55, 0xaa

	writes := []struct {
		lba  int64
		data []byte
	}{
		{0, mbr},
		{1, header(1, l.Sectors-1, 2)},
		{2, entries},
		{l.Sectors - 33, entries},
		{l.Sectors - 1, header(l.Sectors-1, 1, l.Sectors-33)},
	}
	for _, wr := range writes {
		if _, err := w.WriteAt(wr.data, wr.lba*sectorSize); err != nil {
			return fmt.Errorf("writing partition table at LBA %d: %w", wr.lba, err)
		}
	}
	return nil
}

// mbrEntry fills a 16-byte MBR partition entry; CHS fields hold the
// "beyond CHS range" marker FE FF FF, as LBA-only tools write them.
func mbrEntry(e []byte, status, typ byte, start, sectors int64) {
	e[0] = status
	copy(e[1:4], []byte{0xfe, 0xff, 0xff})
	e[4] = typ
	copy(e[5:8], []byte{0xfe, 0xff, 0xff})
	binary.LittleEndian.PutUint32(e[8:], uint32(start))
	binary.LittleEndian.PutUint32(e[12:], uint32(sectors))
}
