// Package gpt encodes GUIDs the way the GUID Partition Table stores them and
// reads the primary table of a disk image (UEFI spec 2.10, §5.3). It is what
// the image builder and the VM runner share; it does not repair tables or
// check CRCs when reading.
package gpt

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
)

// SectorSize is the logical sector size of every cloudbox image.
const SectorSize = 512

// Partition type GUIDs (UEFI spec and the Discoverable Partitions
// Specification) used by cloudbox images.
const (
	TypeEFISystem = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
	TypeLinuxData = "0fc63daf-8483-4772-8e79-3d69d8477de4"
	TypeRootAMD64 = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
	TypeRootARM64 = "b921b045-1df0-41c3-af44-4c6f280d3fae"
)

// GUID encodes a textual GUID ("c12a7328-f81f-11d2-ba4b-00a0c93ec93b") in the
// mixed-endian on-disk form: the first three groups little-endian, the rest
// as written. Malformed input yields the zero GUID.
func GUID(s string) [16]byte {
	var out [16]byte
	raw, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(raw) != 16 {
		return out
	}
	out[0], out[1], out[2], out[3] = raw[3], raw[2], raw[1], raw[0]
	out[4], out[5] = raw[5], raw[4]
	out[6], out[7] = raw[7], raw[6]
	copy(out[8:], raw[8:])
	return out
}

// Partition is one GPT entry.
type Partition struct {
	Type     [16]byte
	UUID     [16]byte
	FirstLBA uint64
	LastLBA  uint64 // inclusive
}

// Offset returns the byte offset of the partition.
func (p Partition) Offset() int64 { return int64(p.FirstLBA) * SectorSize }

// maxEntries bounds how many entries Read looks at.
const maxEntries = 16

// Read parses the primary GPT of r: the header at LBA 1 and its entries up to
// the first empty one (at most 16). It checks the signature and the bounds of
// every field it uses.
func Read(r io.ReaderAt) ([]Partition, error) {
	hdr := make([]byte, 92)
	if _, err := r.ReadAt(hdr, SectorSize); err != nil {
		return nil, fmt.Errorf("reading GPT header: %w", err)
	}
	if string(hdr[:8]) != "EFI PART" {
		return nil, errors.New("no GPT signature at LBA 1")
	}
	entriesLBA := binary.LittleEndian.Uint64(hdr[72:])
	count := binary.LittleEndian.Uint32(hdr[80:])
	size := binary.LittleEndian.Uint32(hdr[84:])
	if size < 128 || size > 4096 || count == 0 || entriesLBA < 2 || entriesLBA > 1<<40 {
		return nil, fmt.Errorf("implausible GPT header (entries at LBA %d, %d entries of %d bytes)", entriesLBA, count, size)
	}
	var parts []Partition
	e := make([]byte, size)
	for i := uint32(0); i < count && i < maxEntries; i++ {
		if _, err := r.ReadAt(e, int64(entriesLBA)*SectorSize+int64(i)*int64(size)); err != nil {
			return nil, fmt.Errorf("reading GPT entry %d: %w", i+1, err)
		}
		var p Partition
		copy(p.Type[:], e[:16])
		if p.Type == ([16]byte{}) {
			break
		}
		copy(p.UUID[:], e[16:32])
		p.FirstLBA = binary.LittleEndian.Uint64(e[32:])
		p.LastLBA = binary.LittleEndian.Uint64(e[40:])
		if p.LastLBA < p.FirstLBA || p.LastLBA > 1<<40 {
			return nil, fmt.Errorf("GPT entry %d has bad bounds %d-%d", i+1, p.FirstLBA, p.LastLBA)
		}
		parts = append(parts, p)
	}
	return parts, nil
}
