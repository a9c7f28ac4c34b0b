package fat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"slices"
	"sync"
	"testing"
)

// smallFiles go into the smallest image ReadFile accepts; all of them land
// in its first 64 KiB, which the fuzz target mutates.
var smallFiles = map[string][]byte{
	"cmdline.txt":                 []byte("console=ttyS0 root=/dev/vda2\n"),
	"vmlinuz":                     random(50, 10000),
	"empty":                       {},
	"dir/sub/long file name.txt":  []byte("long"),
	"dir/sub/emoji-🙂.txt":         []byte("surrogates"),
	"dir/Ünïcode":                 []byte("unicode"),
	"overlays/vc4-kms-v3d.dtbo":   []byte("dtbo 1"),
	"overlays/vc4-kms-v3d-2.dtbo": []byte("dtbo 2"),
}

var smallImage = sync.OnceValues(func() (memImage, error) {
	var files []File
	for p, data := range smallFiles {
		files = append(files, File{Path: p, Data: data})
	}
	img := make(memImage, minSize)
	return img, Write(img, 0, minSize, files, Options{})
})

// cloneSmallImage returns a copy of the small image to corrupt.
func cloneSmallImage(t testing.TB) memImage {
	t.Helper()
	img, err := smallImage()
	if err != nil {
		t.Fatal(err)
	}
	return slices.Clone(img)
}

// rootEntry returns the offset of the short entry with the raw short name
// in the root directory of the small image.
func rootEntry(t testing.TB, img memImage, short string) int64 {
	t.Helper()
	l := writeLayout(minSize / sectorSize)
	for off := l.rootStart; off < l.dataStart; off += dirEntrySize {
		if string(img[off:off+11]) == short {
			return off
		}
	}
	t.Fatalf("no root entry %q", short)
	return 0
}

// setFAT sets the FAT entry of cluster c relative to the first cluster of
// the root entry with the raw short name.
func setFAT(short string, rel int64, v uint16) func(testing.TB, memImage) {
	return func(t testing.TB, img memImage) {
		l := writeLayout(minSize / sectorSize)
		first := int64(binary.LittleEndian.Uint16(img[rootEntry(t, img, short)+26:]))
		binary.LittleEndian.PutUint16(img[l.fatStart+(first+rel)*2:], v)
	}
}

// setEntry overwrites bytes of the root entry with the raw short name.
func setEntry(short string, off int64, b ...byte) func(testing.TB, memImage) {
	return func(t testing.TB, img memImage) {
		copy(img[rootEntry(t, img, short)+off:], b)
	}
}

// setBoot overwrites bytes of the boot sector.
func setBoot(off int, b ...byte) func(testing.TB, memImage) {
	return func(_ testing.TB, img memImage) { copy(img[off:], b) }
}

// errAny accepts any error.
var errAny = errors.New("any error")

var readTests = []struct {
	name    string
	path    string
	corrupt func(testing.TB, memImage)
	want    []byte // when wantErr is nil
	wantErr error
}{
	{name: "file", path: "cmdline.txt", want: smallFiles["cmdline.txt"]},
	{name: "leading slash", path: "/cmdline.txt", want: smallFiles["cmdline.txt"]},
	{name: "case-insensitive long name", path: "Dir/SUB/Long File Name.TXT", want: smallFiles["dir/sub/long file name.txt"]},
	{name: "short name", path: "DIR/SUB/LONGFI~1.TXT", want: smallFiles["dir/sub/long file name.txt"]},
	{name: "generated short name", path: "overlays/VC4-KM~2.DTB", want: smallFiles["overlays/vc4-kms-v3d.dtbo"]},
	{name: "surrogate pair", path: "dir/sub/emoji-🙂.txt", want: smallFiles["dir/sub/emoji-🙂.txt"]},
	{name: "unicode", path: "dir/Ünïcode", want: smallFiles["dir/Ünïcode"]},
	{name: "several clusters", path: "vmlinuz", want: smallFiles["vmlinuz"]},
	{name: "empty", path: "empty", want: []byte{}},

	{name: "missing", path: "missing", wantErr: ErrNotFound},
	{name: "missing nested", path: "dir/missing/x", wantErr: fs.ErrNotExist},
	{name: "file as directory", path: "cmdline.txt/x", wantErr: ErrNotFound},
	{name: "directory", path: "dir", wantErr: errAny},
	{name: "dot dot", path: "dir/../cmdline.txt", wantErr: ErrInvalidPath},
	{name: "empty path", path: "", wantErr: ErrInvalidPath},
	{name: "root", path: "/", wantErr: ErrInvalidPath},

	{name: "no boot signature", path: "vmlinuz", corrupt: setBoot(510, 0, 0), wantErr: ErrCorrupt},
	{name: "zero bytes per sector", path: "vmlinuz", corrupt: setBoot(11, 0, 0), wantErr: ErrCorrupt},
	{name: "odd sectors per cluster", path: "vmlinuz", corrupt: setBoot(13, 3), wantErr: ErrCorrupt},
	{name: "huge clusters", path: "vmlinuz", corrupt: setBoot(13, 128), wantErr: ErrCorrupt},
	{name: "no FATs", path: "vmlinuz", corrupt: setBoot(16, 0), wantErr: ErrCorrupt},
	{name: "FAT32 layout", path: "vmlinuz", corrupt: setBoot(22, 0, 0), wantErr: ErrCorrupt},
	{name: "FAT12 cluster count", path: "vmlinuz", corrupt: setBoot(19, 0x00, 0x20), wantErr: ErrCorrupt},
	{name: "FAT too small", path: "vmlinuz", corrupt: setBoot(22, 1, 0), wantErr: ErrCorrupt},
	{name: "more clusters than the FAT holds", path: "vmlinuz", corrupt: setBoot(19, 0xFF, 0xFF), wantErr: ErrCorrupt},
	{name: "free cluster in chain", path: "vmlinuz", corrupt: setFAT("vmlinuz    ", 1, 0), wantErr: ErrCorrupt},
	{name: "cluster loop back", path: "vmlinuz", corrupt: func(t testing.TB, img memImage) {
		first := binary.LittleEndian.Uint16(img[rootEntry(t, img, "vmlinuz    ")+26:])
		setFAT("vmlinuz    ", 2, first)(t, img)
	}, wantErr: ErrCorrupt},
	{name: "cluster out of range", path: "vmlinuz", corrupt: setFAT("vmlinuz    ", 1, 0xFFF0), wantErr: ErrCorrupt},
	{name: "bad cluster", path: "vmlinuz", corrupt: setFAT("vmlinuz    ", 1, 0xFFF7), wantErr: ErrCorrupt},
	{name: "chain too short", path: "vmlinuz", corrupt: setFAT("vmlinuz    ", 1, 0xFFFF), wantErr: ErrCorrupt},
	{name: "first cluster 1", path: "vmlinuz", corrupt: setEntry("vmlinuz    ", 26, 1, 0), wantErr: ErrCorrupt},
	{name: "data without cluster", path: "vmlinuz", corrupt: setEntry("vmlinuz    ", 26, 0, 0), wantErr: ErrCorrupt},
	{name: "size beyond the limit", path: "vmlinuz", corrupt: setEntry("vmlinuz    ", 28, 0xFF, 0xFF, 0xFF, 0xFF), wantErr: errAny},
	{name: "size beyond the chain", path: "vmlinuz", corrupt: setEntry("vmlinuz    ", 28, 0, 0, 0, 1), wantErr: ErrCorrupt},
	{name: "directory without cluster", path: "dir/Ünïcode", corrupt: setEntry("dir        ", 26, 0, 0), wantErr: ErrCorrupt},
	{name: "free cluster in directory", path: "dir/sub/long file name.txt", corrupt: setFAT("dir        ", 0, 0), wantErr: ErrCorrupt},
	{name: "directory cluster loop", path: "dir/missing", corrupt: func(t testing.TB, img memImage) {
		first := binary.LittleEndian.Uint16(img[rootEntry(t, img, "dir        ")+26:])
		setFAT("dir        ", 0, first)(t, img)
	}, wantErr: ErrCorrupt},
	{name: "end marker first", path: "cmdline.txt", corrupt: func(t testing.TB, img memImage) {
		l := writeLayout(minSize / sectorSize)
		img[l.rootStart] = 0
	}, wantErr: ErrNotFound},
}

func TestReadFile(t *testing.T) {
	for _, tt := range readTests {
		t.Run(tt.name, func(t *testing.T) {
			img := cloneSmallImage(t)
			if tt.corrupt != nil {
				tt.corrupt(t, img)
			}
			// Place the file system at an offset, as in a disk image.
			disk := append(make(memImage, testOffset), img...)
			got, err := ReadFile(disk, testOffset, tt.path)
			if err != nil {
				t.Logf("ReadFile(%q): %v", tt.path, err)
			}
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("ReadFile(%q): %v", tt.path, err)
			case tt.wantErr == nil && !bytes.Equal(tt.want, got):
				t.Errorf("ReadFile(%q) = %q, want %q", tt.path, got, tt.want)
			case tt.wantErr == nil && got == nil:
				t.Errorf("ReadFile(%q) = nil, want non-nil", tt.path)
			case tt.wantErr != nil && err == nil:
				t.Errorf("ReadFile(%q) succeeded, want error %q", tt.path, tt.wantErr)
			case tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Errorf("ReadFile(%q) error %q does not wrap %q", tt.path, err, tt.wantErr)
			}
		})
	}
}

func TestReadFileTruncated(t *testing.T) {
	img := cloneSmallImage(t)
	for _, n := range []int{0, 100, 600, 4096, 20000, 30000} {
		_, err := ReadFile(img[:n], 0, "vmlinuz")
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("image truncated to %d bytes: error %v, want %v", n, err, io.ErrUnexpectedEOF)
		}
	}
}

// prefixReader is base with its first bytes replaced by prefix.
type prefixReader struct {
	base, prefix []byte
}

func (r prefixReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := memImage(r.base).ReadAt(p, off)
	if off < int64(len(r.prefix)) {
		copy(p[:n], r.prefix[off:])
	}
	return n, err
}

// fuzzPrefix is how much of the image the fuzz input replaces: boot sector,
// FAT, root directory and the first clusters with all small files.
const fuzzPrefix = 64 << 10

// FuzzReadFile reads files from the small image with its first 64 KiB
// replaced by the fuzz input. The inputs are large, so minimizing a new one
// takes up to a minute during which no executions are counted;
// -fuzzminimizetime=2s keeps the fuzzer exploring.
func FuzzReadFile(f *testing.F) {
	img, err := smallImage()
	if err != nil {
		f.Fatal(err)
	}
	l := writeLayout(minSize / sectorSize)
	last := l.clusters + 1
	for binary.LittleEndian.Uint16(img[l.fatStart+last*2:]) == 0 {
		last--
	}
	if end := l.clusterOffset(last + 1); end > fuzzPrefix {
		f.Fatalf("the small image has data up to byte %d, beyond the fuzzed prefix", end)
	}
	for p := range smallFiles {
		f.Add([]byte(img[:fuzzPrefix]), p)
	}
	for _, tt := range readTests {
		c := cloneSmallImage(f)
		if tt.corrupt != nil {
			tt.corrupt(f, c)
		}
		f.Add([]byte(c[:fuzzPrefix]), tt.path)
	}
	f.Fuzz(func(t *testing.T, prefix []byte, path string) {
		prefix = prefix[:min(len(prefix), fuzzPrefix)]
		got, err := ReadFile(prefixReader{base: img, prefix: prefix}, 0, path)
		if err == nil && len(got) > maxFileSize {
			t.Fatalf("ReadFile returned %d bytes, more than the limit", len(got))
		}
		want, ok := smallFiles[path]
		if ok && bytes.Equal(prefix, img[:len(prefix)]) && (err != nil || !bytes.Equal(want, got)) {
			t.Errorf("ReadFile(%q) on the intact image: %v", path, err)
		}
	})
}
