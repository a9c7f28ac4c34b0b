package fat

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

// gokrazyExtents restates, step by step, how gokrazy's on-device reader
// (github.com/gokrazy/internal/fat Reader.Extents and ModTime, version
// v0.0.0-20240629150625-a0f1dee26ef5) finds a file, quirks included:
//
//   - it reads the BPB at fixed offsets and puts the root directory at
//     (reserved sectors + sectors per FAT) * bytes per sector, ignoring the
//     number of FATs;
//   - in every directory it scans as many entries as the root has, skipping
//     only entries starting with 0x00 and not stopping at the end marker;
//   - it compares path elements with the 8.3 short name only: "NAME.EXT"
//     lower-cased against the lower-cased short name it derives from the
//     element, or byte-for-byte against the element;
//   - it assumes files and directories are contiguous.
func gokrazyExtents(r io.ReaderAt, path string) (offset, length int64, mod time.Time, err error) {
	bpb := make([]byte, 24)
	if _, err := r.ReadAt(bpb, 0); err != nil {
		return 0, 0, time.Time{}, err
	}
	sectorSize := binary.LittleEndian.Uint16(bpb[11:])
	sectorsPerCluster := bpb[13]
	reserved := binary.LittleEndian.Uint16(bpb[14:])
	rootEntries := binary.LittleEndian.Uint16(bpb[17:])
	fatSectors := binary.LittleEndian.Uint16(bpb[22:])

	dirOffset := int64(reserved+fatSectors) * int64(sectorSize)
	rootSectors := (int64(rootEntries)*32 + int64(sectorSize) - 1) / int64(sectorSize)
	dataOffset := dirOffset + rootSectors*int64(sectorSize)

	for _, component := range strings.Split(path[1:], "/") {
		for i := 0; i < int(rootEntries); i++ {
			e := make([]byte, 32)
			if _, err := r.ReadAt(e, dirOffset+int64(i*32)); err != nil {
				return 0, 0, time.Time{}, err
			}
			if e[0] == 0 {
				continue
			}
			name := string(e[:8])
			if idx := bytes.IndexByte(e[:8], ' '); idx > -1 {
				name = string(e[:idx])
			}
			if e[8] != ' ' {
				name += "." + string(e[8:11]) // all three bytes, spaces included
			}
			primary, ext := gokrazyShortName(component)
			shortName := strings.TrimSpace(primary)
			if ext != "" { // always true: ext is "   " when there is none
				shortName += "." + strings.TrimSpace(ext)
			}
			if strings.ToLower(name) != strings.ToLower(shortName) && name != component {
				continue
			}
			firstCluster := binary.LittleEndian.Uint16(e[26:])
			offset := dataOffset + int64(firstCluster-2)*int64(sectorsPerCluster)*int64(sectorSize)
			if e[11] == attrDir {
				dirOffset = offset
				break
			}
			t, d := binary.LittleEndian.Uint16(e[22:]), binary.LittleEndian.Uint16(e[24:])
			mod := time.Date(1980+int(d>>9&0x7F), time.Month(d>>5&0x0F), int(d&0x1F),
				int(t>>11&0x1F), int(t>>5&0x3F), int(t&0x1F)*2, 0, time.UTC)
			return offset, int64(binary.LittleEndian.Uint32(e[28:])), mod, nil
		}
	}
	return 0, 0, time.Time{}, fmt.Errorf("%q not found", path)
}

// gokrazyShortName is the short name gokrazy's reader expects for a path
// element: upper-cased, spaces and leading dots dropped, split at the last
// dot, truncated to 8.3 and given the tail "~1" when truncated.
func gokrazyShortName(name string) (primary, ext string) {
	basis := strings.TrimLeft(strings.ReplaceAll(strings.ToUpper(name), " ", ""), ".")
	fit := true
	primary, ext = basis, "   "
	if idx := strings.LastIndex(basis, "."); idx > -1 {
		primary, ext = basis[:idx], basis[idx+1:]
		if len(ext) > 3 {
			ext, fit = ext[:3], false
		}
		ext += strings.Repeat(" ", 3-len(ext))
	}
	if len(primary) > 8 {
		primary, fit = primary[:8], false
	}
	if !fit {
		tail := "~" + strconv.Itoa(1)
		primary = primary[:min(len(primary), 8-len(tail))] + tail
	}
	return primary + strings.Repeat(" ", 8-len(primary)), ext
}

func TestGokrazyReaderFindsFiles(t *testing.T) {
	mod := time.Date(2024, 2, 29, 23, 59, 58, 0, time.UTC)
	files := append(piBootFiles(), nestedFiles()[:4]...)
	files = append(files,
		File{Path: "RECOVERY.000", Data: []byte("recovery")},
		File{Path: "pieeprom.sig", Data: []byte("0123abcd\n")},
	)
	content := make(map[string][]byte)
	for _, f := range files {
		content["/"+f.Path] = f.Data
	}
	for _, size := range []int64{100 << 20, 16 << 20} {
		img := make(memImage, size)
		if err := Write(img, 0, size, files, Options{ModTime: mod}); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{
			"/cmdline.txt", // read by gokrazy at boot and when switching root partitions
			"/vmlinuz",     // located by gok when writing the MBR for BIOS boot
			"/config.txt",
			"/RECOVERY.000", // EEPROM update checks
			"/pieeprom.sig",
			"/EFI/BOOT/BOOTX64.EFI",
			"/loader/entries/gokrazy.conf", // a nested file with a generated short name
		} {
			t.Run(fmt.Sprintf("%dMiB%s", size>>20, path), func(t *testing.T) {
				offset, length, gotMod, err := gokrazyExtents(img, path)
				if err != nil {
					t.Fatal(err)
				}
				want := content[path]
				if length != int64(len(want)) {
					t.Fatalf("length %d, want %d", length, len(want))
				}
				if !bytes.Equal(img[offset:offset+length], want) {
					t.Errorf("bytes at offset %d differ from the file content", offset)
				}
				if !gotMod.Equal(mod) {
					t.Errorf("modification time %v, want %v", gotMod, mod)
				}
			})
		}
	}
}
