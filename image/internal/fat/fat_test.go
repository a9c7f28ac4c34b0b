package fat

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	// testOffset is where the tests place the file system, as the first
	// partition of a disk image would be.
	testOffset = 4 << 20
	minSize    = 8<<20 + 4<<10 // the smallest size with 4085 clusters
)

// memImage is an in-memory disk image that refuses writes out of bounds.
type memImage []byte

func (m memImage) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, fmt.Errorf("write of %d bytes at %d out of bounds", len(p), off)
	}
	return copy(m[off:], p), nil
}

func (m memImage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(m)) {
		return 0, io.EOF
	}
	n := copy(p, m[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.WriterAt
	n int64
}

func (c *countingWriter) WriteAt(p []byte, off int64) (int, error) {
	c.n += int64(len(p))
	return c.w.WriteAt(p, off)
}

// random returns n deterministic pseudo-random bytes.
func random(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

// piBootFiles resembles a Raspberry Pi boot partition: many overlays with
// long, similar names next to the files gokrazy reads.
func piBootFiles() []File {
	files := []File{
		{Path: "cmdline.txt", Data: []byte("console=serial0,115200 root=/dev/mmcblk0p2\n")},
		{Path: "config.txt", Data: []byte("arm_64bit=1\nenable_uart=1\n")},
		{Path: "vmlinuz", Data: random(1, 3<<20+123)},
		{Path: "bcm2711-rpi-4-b.dtb", Data: random(2, 52000)},
		{Path: "start4.elf", Data: random(3, 2<<20)},
		{Path: "fixup4.dat", Data: random(4, 5400)},
		{Path: "overlays/README", Data: []byte("overlays\n")},
	}
	for i := range 400 {
		files = append(files, File{
			Path: fmt.Sprintf("overlays/vc4-kms-dsi-%03d-panel.dtbo", i),
			Data: random(uint64(100+i), 100+i*37),
		})
	}
	return files
}

// nestedFiles has directories several levels deep, as an EFI system
// partition with systemd-boot would.
func nestedFiles() []File {
	return []File{
		{Path: "EFI/BOOT/BOOTX64.EFI", Data: random(10, 100000)},
		{Path: "EFI/systemd/systemd-bootx64.efi", Data: random(11, 90000)},
		{Path: "loader/loader.conf", Data: []byte("timeout 0\n")},
		{Path: "loader/entries/gokrazy.conf", Data: []byte("title gokrazy\nlinux /vmlinuz\n")},
		{Path: "a/b/c/d/e/f/deep.txt", Data: []byte("deep")},
		{Path: "a/b/empty", Data: nil},
		{Path: "cmdline.txt", Data: []byte("console=ttyS0\n")},
		{Path: "vmlinuz", Data: random(12, 9000)},
	}
}

// longNameFiles exercises long file name entries and short name generation.
func longNameFiles() []File {
	files := []File{
		{Path: strings.Repeat("x", 255), Data: []byte("255")},
		// 124 UTF-16 units; 244 bytes of UTF-8 still fit a Linux file name
		{Path: "dir/" + strings.Repeat("ä", 120) + ".txt", Data: []byte("umlauts")},
		{Path: "exactly13char", Data: []byte("13")},
		{Path: "exactly-26-characters.long", Data: []byte("26")},
		{Path: "Ünïcode file name with spaces.txt", Data: []byte("unicode")},
		{Path: "a.b.c.d", Data: []byte("dots")},
		{Path: ".hidden", Data: []byte("dot")},
		{Path: "Mixed.Case", Data: []byte("mixed")},
		{Path: "UPPER.TXT", Data: []byte("upper")},
		{Path: "plus+sign;semi,comma=eq[1]", Data: []byte("lossy")},
		{Path: "LONGNA~1", Data: []byte("taken short name")},
	}
	for i := range 12 {
		files = append(files, File{Path: fmt.Sprintf("longname%d.txt", i), Data: []byte{byte(i)}})
	}
	return files
}

func TestClusterSize(t *testing.T) {
	for _, tt := range []struct {
		size, cluster int64
	}{
		{minSize, 2 << 10},
		{100 << 20, 2 << 10},
		{128 << 20, 2 << 10},
		{129 << 20, 4 << 10},
		{256 << 20, 4 << 10},
		{257 << 20, 8 << 10},
		{2000 << 20, 32 << 10},
	} {
		l := writeLayout(tt.size / sectorSize)
		if l.clusterSize != tt.cluster || l.clusters < minClusters || l.clusters > maxClusters {
			t.Errorf("%d MiB: %d clusters of %d bytes, want clusters of %d within FAT16's %d to %d",
				tt.size>>20, l.clusters, l.clusterSize, tt.cluster, minClusters, maxClusters)
		}
		if l.dataStart%l.clusterSize != 0 || l.fatStart != l.clusterSize {
			t.Errorf("%d MiB: data at %d, FAT at %d: want both aligned to the %d-byte cluster", tt.size>>20, l.dataStart, l.fatStart, l.clusterSize)
		}
	}
}

var writeTests = []struct {
	name  string
	size  int64
	files []File
	opts  Options
}{
	{name: "empty", size: 16 << 20},
	{
		name: "flat",
		size: 16 << 20,
		files: []File{
			{Path: "cmdline.txt", Data: []byte("console=ttyS0 root=/dev/vda2\n")},
			{Path: "config.txt", Data: []byte("arm_64bit=1\n")},
			{Path: "vmlinuz", Data: random(20, 1<<20)},
			{Path: "empty", Data: []byte{}},
			{Path: "one-cluster", Data: random(21, 2048)},
			{Path: "cluster+1", Data: random(22, 2048+1)},
		},
	},
	{name: "smallest", size: minSize, files: []File{{Path: "cmdline.txt", Data: []byte("x")}}},
	{name: "largest with 2 KiB clusters", size: 128 << 20, files: []File{{Path: "vmlinuz", Data: random(30, 127<<20)}}},
	{name: "4 KiB clusters", size: 256 << 20, files: []File{{Path: "a/vmlinuz", Data: random(31, 1<<20)}, {Path: "b/vmlinuz", Data: random(32, 4097)}}},
	{name: "nested", size: 100 << 20, files: nestedFiles()},
	{name: "raspberry pi", size: 100 << 20, files: piBootFiles()},
	{
		name: "large file",
		size: 100 << 20,
		files: []File{
			{Path: "vmlinuz", Data: random(40, 40<<20)},
			{Path: "cmdline.txt", Data: []byte("console=ttyS0\n")},
		},
	},
	{name: "long names", size: 16 << 20, files: longNameFiles()},
	{
		name:  "options",
		size:  16 << 20,
		files: nestedFiles(),
		opts: Options{
			ModTime:  time.Date(2024, 5, 6, 12, 34, 56, 0, time.UTC),
			Label:    "gokrazy",
			VolumeID: 0x1234ABCD,
		},
	},
}

// tool returns the path of a program from dosfstools or mtools and fails
// the test when it is missing.
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} { // often not in $PATH
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	t.Fatalf("%s not found: install it with `apt-get install dosfstools mtools`", name)
	return ""
}

func fileExists(p string) bool {
	info, err := os.Stat(p)
	return err == nil && !info.IsDir()
}

// writeDisk writes a file system at testOffset of a new sparse disk image
// with 1 MiB of space after the partition, and returns the image's path.
func writeDisk(t *testing.T, size int64, files []File, opts Options) string {
	t.Helper()
	disk := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(testOffset + size + 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := Write(f, testOffset, size, files, opts); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return disk
}

// extractPartition copies [testOffset, testOffset+size) of disk into a new
// sparse file for fsck.vfat, which cannot check at an offset.
func extractPartition(t *testing.T, disk string, size int64) string {
	t.Helper()
	in, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	part := filepath.Join(t.TempDir(), "part.img")
	out, err := os.Create(part)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	buf := make([]byte, 64<<10)
	zero := make([]byte, len(buf))
	for off := int64(0); off < size; off += int64(len(buf)) {
		n, err := in.ReadAt(buf[:min(int64(len(buf)), size-off)], testOffset+off)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], zero[:n]) {
			if _, err := out.WriteAt(buf[:n], off); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := out.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return part
}

// wantTree returns the files and the directories (with a trailing slash)
// that files create.
func wantTree(files []File) (map[string][]byte, []string) {
	content := make(map[string][]byte)
	dirs := make(map[string]bool)
	for _, f := range files {
		content[f.Path] = f.Data
		for d := filepath.Dir(f.Path); d != "."; d = filepath.Dir(d) {
			dirs[d+"/"] = true
		}
	}
	all := slices.Collect(func(yield func(string) bool) {
		for p := range content {
			yield(p)
		}
		for d := range dirs {
			yield(d)
		}
	})
	slices.Sort(all)
	return content, all
}

func TestWriteCheckedByTools(t *testing.T) {
	fsck, mdir, mcopy := tool(t, "fsck.vfat"), tool(t, "mdir"), tool(t, "mcopy")
	for _, tt := range writeTests {
		t.Run(tt.name, func(t *testing.T) {
			disk := writeDisk(t, tt.size, tt.files, tt.opts)
			content, paths := wantTree(tt.files)
			img := fmt.Sprintf("%s@@%d", disk, testOffset)
			env := append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "TZ=UTC", "LC_ALL=C.UTF-8")

			t.Run("fsck.vfat", func(t *testing.T) {
				part := extractPartition(t, disk, tt.size)
				out, err := exec.Command(fsck, "-n", "-V", "-S", "-U", part).CombinedOutput()
				if err != nil {
					t.Fatalf("fsck.vfat: %v\n%s", err, out)
				}
				var problems []string
				for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
					switch {
					case strings.HasPrefix(line, "fsck.fat "),
						line == "Starting check/repair pass.",
						line == "Starting verification pass.",
						strings.HasPrefix(line, part+": ") && strings.HasSuffix(line, " clusters"):
					default:
						problems = append(problems, line)
					}
				}
				if len(problems) > 0 {
					t.Errorf("fsck.vfat reported problems:\n%s", strings.Join(problems, "\n"))
				}
			})

			t.Run("mdir", func(t *testing.T) {
				cmd := exec.Command(mdir, "-/", "-b", "-i", img, "::/")
				cmd.Env = env
				out, err := cmd.CombinedOutput()
				if err != nil && len(tt.files) > 0 {
					t.Fatalf("mdir: %v\n%s", err, out)
				}
				var got []string
				for _, line := range strings.Split(string(out), "\n") {
					if p, ok := strings.CutPrefix(line, "::/"); ok {
						got = append(got, p)
					}
				}
				slices.Sort(got)
				if !slices.Equal(paths, got) {
					t.Errorf("mdir lists\n%q\nwant\n%q", got, paths)
				}
			})

			t.Run("mdir label", func(t *testing.T) {
				cmd := exec.Command(mdir, "-i", img, "::/")
				cmd.Env = env
				out, _ := cmd.CombinedOutput()
				wantLabel := "Volume in drive : has no label"
				if tt.opts.Label != "" {
					wantLabel = "Volume in drive : is " + strings.ToUpper(tt.opts.Label)
				}
				if !strings.Contains(string(out), wantLabel) {
					t.Errorf("mdir output lacks %q:\n%s", wantLabel, out)
				}
				if id := tt.opts.VolumeID; id != 0 {
					want := fmt.Sprintf("Serial Number is %04X-%04X", id>>16, id&0xFFFF)
					if !strings.Contains(string(out), want) {
						t.Errorf("mdir output lacks %q:\n%s", want, out)
					}
				}
			})

			t.Run("mcopy", func(t *testing.T) {
				if len(tt.files) == 0 {
					return
				}
				dst := t.TempDir()
				cmd := exec.Command(mcopy, "-s", "-n", "-m", "-i", img, "::/", dst)
				cmd.Env = env
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("mcopy: %v\n%s", err, out)
				}
				wantTime, _ := dosTimeRoundTrip(tt.opts.ModTime)
				seen := 0
				err := filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
					if err != nil || d.IsDir() {
						return err
					}
					rel, _ := filepath.Rel(dst, p)
					want, ok := content[filepath.ToSlash(rel)]
					if !ok {
						t.Errorf("mcopy extracted unexpected file %q", rel)
						return nil
					}
					seen++
					got, err := os.ReadFile(p)
					if err != nil {
						return err
					}
					if !bytes.Equal(want, got) {
						t.Errorf("%s: mcopy got %d bytes (sha256 %x), want %d bytes (sha256 %x)",
							rel, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
					}
					info, err := d.Info()
					if err != nil {
						return err
					}
					if !info.ModTime().Equal(wantTime) {
						t.Errorf("%s: mtime %v, want %v", rel, info.ModTime().UTC(), wantTime)
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if seen != len(content) {
					t.Errorf("mcopy extracted %d files, want %d", seen, len(content))
				}
			})

			t.Run("ReadFile", func(t *testing.T) {
				f, err := os.Open(disk)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				for p, want := range content {
					got, err := ReadFile(f, testOffset, p)
					if err != nil {
						t.Errorf("ReadFile(%q): %v", p, err)
						continue
					}
					if !bytes.Equal(want, got) {
						t.Errorf("ReadFile(%q) = %d bytes, want %d bytes", p, len(got), len(want))
					}
				}
			})
		})
	}
}

// dosTimeRoundTrip returns t as FAT stores it: UTC, 2-second resolution,
// clamped to 1980.
func dosTimeRoundTrip(t time.Time) (time.Time, error) {
	date, tim := dosDateTime(t)
	return time.Date(1980+int(date>>9), time.Month(date>>5&0xF), int(date&0x1F),
		int(tim>>11), int(tim>>5&0x3F), int(tim&0x1F)*2, 0, time.UTC), nil
}

func TestWriteStaysInRegion(t *testing.T) {
	for _, tt := range writeTests {
		if tt.size > 32<<20 {
			continue // covered by the same code paths; keeps memory low
		}
		t.Run(tt.name, func(t *testing.T) {
			img := make(memImage, testOffset+tt.size) // WriteAt fails beyond the end
			cw := &countingWriter{w: img}
			if err := Write(cw, testOffset, tt.size, tt.files, tt.opts); err != nil {
				t.Fatal(err)
			}
			if i := bytes.IndexFunc(img[:testOffset], func(r rune) bool { return r != 0 }); i >= 0 {
				t.Errorf("Write wrote before the offset, at byte %d", i)
			}
			var data int64
			for _, f := range tt.files {
				data += int64(len(f.Data))
			}
			// boot sector, FAT, directories: well below 1 MiB here
			if cw.n > data+1<<20 {
				t.Errorf("Write wrote %d bytes for %d bytes of file data", cw.n, data)
			}
		})
	}
}

func TestWriteDeterministic(t *testing.T) {
	const size = 32 << 20
	files := append(piBootFiles()[3:50], longNameFiles()...)
	files = append(files, nestedFiles()...)
	sum := func(files []File) [32]byte {
		img := make(memImage, size)
		if err := Write(img, 0, size, files, Options{}); err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(img)
	}
	want := sum(files)
	t.Run("same input", func(t *testing.T) {
		if got := sum(files); got != want {
			t.Errorf("second write: sha256 %x, want %x", got, want)
		}
	})
	t.Run("shuffled input", func(t *testing.T) {
		shuffled := slices.Clone(files)
		rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) {
			shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
		})
		if got := sum(shuffled); got != want {
			t.Errorf("shuffled files: sha256 %x, want %x", got, want)
		}
	})
	t.Run("changed content", func(t *testing.T) {
		changed := slices.Clone(files)
		changed[0].Data = append(slices.Clone(changed[0].Data), '!')
		if got := sum(changed); got == want {
			t.Errorf("changed content gives the same image")
		}
	})
}

func TestWriteErrors(t *testing.T) {
	many := func(n int, format string) []File {
		var files []File
		for i := range n {
			files = append(files, File{Path: fmt.Sprintf(format, i), Data: []byte{1}})
		}
		return files
	}
	tests := []struct {
		name  string
		off   int64
		size  int64
		files []File
		opts  Options
		want  error
	}{
		{name: "size too small", size: 8 << 20, want: ErrSize},
		{name: "size too large", size: 2100 << 20, want: ErrSize},
		{name: "size not sectors", size: 16<<20 + 100, want: ErrSize},
		{name: "negative size", size: -1, want: ErrSize},
		{name: "offset not sectors", off: 100, size: 16 << 20, want: ErrSize},
		{name: "negative offset", off: -512, size: 16 << 20, want: ErrSize},
		{name: "data too large", size: 16 << 20, files: []File{{Path: "big", Data: make([]byte, 16<<20)}}, want: ErrNoSpace},
		{name: "root full", size: 16 << 20, files: many(513, "F%d"), want: ErrNoSpace},
		{name: "root full of long names", size: 16 << 20, files: many(200, "long-name-%04d"), want: ErrNoSpace},
		{name: "directory full", size: 64 << 20, files: many(maxDirEntries, "dir/F%d"), want: ErrNoSpace},
		{name: "duplicate", size: 16 << 20, files: []File{{Path: "same"}, {Path: "same"}}, want: ErrInvalidPath},
		{name: "duplicate ignoring case", size: 16 << 20, files: []File{{Path: "a/Cmdline.txt"}, {Path: "A/cmdline.TXT"}}, want: ErrInvalidPath},
		{name: "file used as directory", size: 16 << 20, files: []File{{Path: "a"}, {Path: "a/b"}}, want: ErrInvalidPath},
		{name: "directory used as file", size: 16 << 20, files: []File{{Path: "a/b"}, {Path: "a"}}, want: ErrInvalidPath},
		{name: "bad label", size: 16 << 20, opts: Options{Label: "label.toolong"}, want: nil},
	}
	for _, p := range []string{
		"", ".", "..", "/abs", "a//b", "a/../b", "a/./b", "dir/", "trailing.", "trailing ",
		"colon:", "star*", "question?", `back\slash`, "pipe|", "quote\"", "less<", "greater>",
		"ctl\x01", "del\x7f", "bad\xffutf8", strings.Repeat("y", 256), "dir/" + strings.Repeat("ö", 256),
	} {
		tests = append(tests, struct {
			name  string
			off   int64
			size  int64
			files []File
			opts  Options
			want  error
		}{name: fmt.Sprintf("path %.30q", p), size: 16 << 20, files: []File{{Path: p}}, want: ErrInvalidPath})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Write(make(memImage, 0), tt.off, tt.size, tt.files, tt.opts)
			if err == nil {
				t.Fatalf("Write succeeded, want an error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Write error %q does not wrap %q", err, tt.want)
			}
		})
	}
}
