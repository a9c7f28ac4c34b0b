package squashfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var testTime = time.Date(2024, 6, 29, 15, 6, 25, 0, time.UTC)

// optionSets are the options every tree is written with: defaults, the
// smallest block size (many blocks and fragments) and the largest.
// "extended" writes every file with an extended inode, as Write does for files
// of 4 GiB and more.
var optionSets = []struct {
	name          string
	opts          Options
	extendedFiles bool
}{
	{"zero", Options{}, false},
	{"4KiB", Options{ModTime: testTime, BlockSize: 4 << 10}, false},
	{"1MiB", Options{ModTime: testTime, BlockSize: 1 << 20}, false},
	{"extended", Options{ModTime: testTime}, true},
}

// useExtendedFiles makes Write use extended file inodes until the test ends.
func useExtendedFiles(t testing.TB, on bool) {
	if on {
		basicFileLimit = 0
		t.Cleanup(func() { basicFileLimit = math.MaxUint32 })
	}
}

// randomBytes returns n deterministic random bytes.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// halfRandom returns n deterministic bytes that compress to about half,
// like a binary.
func halfRandom(seed uint64, n int) []byte {
	b := randomBytes(seed, n)
	for i := range b {
		b[i] &= 0x0f
	}
	return b
}

// testEntries returns the acceptance tree: files of every interesting size,
// symlinks, unusual modes, deep and empty directories, a directory of 1000
// files, one of 400 symlinks and one whose listing exceeds 64 KiB (255-byte
// names).
func testEntries() []Entry {
	es := []Entry{
		{Path: "etc", Mode: fs.ModeDir | 0o755},
		{Path: "etc/ssl/ca-bundle.pem", Mode: 0o644, Data: bytes.Repeat([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n"), 900)},
		{Path: "etc/shadow", Mode: 0o640, Data: []byte("root:*:19000::::::\n")},
		{Path: "etc/resolv.conf", Mode: fs.ModeSymlink | 0o777, Target: "/tmp/resolv.conf"},
		{Path: "var", Mode: fs.ModeSymlink | 0o777, Target: "/perm/var"},
		{Path: "bin/sh", Mode: fs.ModeSymlink, Target: "busybox"},
		{Path: "dangling", Mode: fs.ModeSymlink | 0o777, Target: "../../does/not/exist"},
		{Path: "gokrazy/init", Mode: 0o755, Data: halfRandom(1, 200<<10)},
		{Path: "bin/su", Mode: fs.ModeSetuid | 0o755, Data: []byte("#!/bin/false\n")},
		{Path: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Path: "shared", Mode: fs.ModeDir | fs.ModeSetgid | 0o775},
		{Path: "root", Mode: fs.ModeDir | 0o700},
		{Path: "root/secret", Mode: 0o600, Data: []byte("s3cret")},
		{Path: "empty", Mode: fs.ModeDir | 0o755},
		{Path: "sizes/0", Mode: 0o644},
		{Path: "sizes/1", Mode: 0o644, Data: []byte{'x'}},
		{Path: "sizes/4095", Mode: 0o644, Data: randomBytes(2, 4095)},
		{Path: "sizes/4096", Mode: 0o644, Data: randomBytes(3, 4096)},
		{Path: "sizes/131072", Mode: 0o644, Data: randomBytes(4, 128<<10)},
		{Path: "sizes/131073", Mode: 0o644, Data: randomBytes(5, 128<<10+1)},
		{Path: "data/random-3MiB", Mode: 0o644, Data: randomBytes(6, 3<<20)},
		{Path: "data/zeros-1MiB", Mode: 0o644, Data: make([]byte, 1<<20)},
		{Path: "d1/d2/d3/d4/d5/d6/d7/deep.txt", Mode: 0o644, Data: []byte("depth 8\n")},
		// Byte-wise order: "B" < "Z" < "_" < "a-b" < "a.txt" < "a" (a directory
		// sorts by its name, not "a/") < "ü".
		{Path: "sort/a.txt", Mode: 0o644, Data: []byte("a.txt")},
		{Path: "sort/a/b", Mode: 0o644, Data: []byte("a/b")},
		{Path: "sort/a-b", Mode: 0o644},
		{Path: "sort/B", Mode: 0o644},
		{Path: "sort/Z", Mode: 0o644},
		{Path: "sort/_", Mode: 0o644},
		{Path: "sort/ü", Mode: 0o644, Data: []byte("ü")},
	}
	var text []byte
	for i := range 20000 {
		text = fmt.Appendf(text, "line %d: the quick brown fox jumps over the lazy dog\n", i)
	}
	es = append(es, Entry{Path: "data/text", Mode: 0o644, Data: text})
	for i := range 1000 {
		es = append(es, Entry{
			Path: fmt.Sprintf("lib/modules/6.12.0/kernel/mod-%04d.ko", i),
			Mode: 0o644,
			Data: bytes.Repeat([]byte(strconv.Itoa(i)), i%300),
		})
	}
	// 25-byte inodes: more than 256 share a metadata block, so the
	// listing needs headers split by count.
	for i := range 400 {
		es = append(es, Entry{Path: fmt.Sprintf("links/l%03d", i), Mode: fs.ModeSymlink, Target: "x"})
	}
	for i := range 260 {
		name := fmt.Sprintf("%03d", i) + strings.Repeat("n", maxNameLen-3)
		es = append(es, Entry{Path: "long/" + name, Mode: 0o644, Data: []byte{byte(i)}})
	}
	return es
}

// expected returns the tree Write must produce from valid entries: with
// implicit directories, and symlinks as 0777.
func expected(entries []Entry) map[string]Entry {
	want := map[string]Entry{}
	for _, e := range entries {
		if e.Mode&fs.ModeSymlink != 0 {
			e.Mode = fs.ModeSymlink | 0o777
		}
		if len(e.Data) == 0 {
			e.Data = nil
		}
		want[e.Path] = e
		for dir := e.Path; strings.Contains(dir, "/"); {
			dir = dir[:strings.LastIndexByte(dir, '/')]
			if _, ok := want[dir]; !ok {
				want[dir] = Entry{Path: dir, Mode: fs.ModeDir | 0o755}
			}
		}
	}
	return want
}

// diffTrees lists the differences between two trees.
func diffTrees(want, got map[string]Entry) []string {
	var diffs []string
	for _, p := range slices.Sorted(func(yield func(string) bool) {
		for p := range want {
			if !yield(p) {
				return
			}
		}
	}) {
		w := want[p]
		g, ok := got[p]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%q missing", p))
		case w.Mode != g.Mode:
			diffs = append(diffs, fmt.Sprintf("%q mode %v, want %v", p, g.Mode, w.Mode))
		case w.Target != g.Target:
			diffs = append(diffs, fmt.Sprintf("%q target %q, want %q", p, g.Target, w.Target))
		case !bytes.Equal(w.Data, g.Data):
			diffs = append(diffs, fmt.Sprintf("%q has %d bytes, differing from the %d written", p, len(g.Data), len(w.Data)))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("%q unexpected", p))
		}
	}
	return diffs
}

// readTree reads a directory tree from disk in the form of [Entry].
func readTree(root string) (map[string]Entry, error) {
	got := map[string]Entry{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		e := Entry{Path: rel, Mode: fi.Mode()}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Target, err = os.Readlink(path)
		case fi.Mode().IsRegular():
			e.Data, err = os.ReadFile(path)
			if len(e.Data) == 0 {
				e.Data = nil
			}
		}
		got[rel] = e
		return err
	})
	return got, err
}

// tool returns the path of a program, failing the test if it is missing.
func tool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: apt-get install %s", name, pkg)
	}
	return p
}

func writeFile(t testing.TB, entries []Entry, opts Options) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	n, err := Write(&buf, entries, opts)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if n != int64(buf.Len()) || n%4096 != 0 {
		t.Fatalf("Write returned %d, wrote %d bytes (want equal, multiple of 4096)", n, buf.Len())
	}
	img := filepath.Join(t.TempDir(), "root.squashfs")
	if err := os.WriteFile(img, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return img, buf.Bytes()
}

// lsMode formats a mode the way unsquashfs -lls (and ls -l) does.
func lsMode(m fs.FileMode) string {
	b := []byte("-rwxrwxrwx")
	switch {
	case m.IsDir():
		b[0] = 'd'
	case m&fs.ModeSymlink != 0:
		b[0] = 'l'
	}
	for i := range 9 {
		if m&(1<<(8-i)) == 0 {
			b[1+i] = '-'
		}
	}
	special := func(set bool, i int, lower, upper byte) {
		if set {
			if b[i] == '-' {
				b[i] = upper
			} else {
				b[i] = lower
			}
		}
	}
	special(m&fs.ModeSetuid != 0, 3, 's', 'S')
	special(m&fs.ModeSetgid != 0, 6, 's', 'S')
	special(m&fs.ModeSticky != 0, 9, 't', 'T')
	return string(b)
}

var llsLine = regexp.MustCompile(`^(\S{10}) (\S+) +(\d+) (\d{4}-\d\d-\d\d \d\d:\d\d) squashfs-root(.*)$`)

// TestUnsquashfs checks images with the real unsquashfs (squashfs-tools):
// the listing of -lls and the bytes of every extracted file.
func TestUnsquashfs(t *testing.T) {
	unsquashfs := tool(t, "unsquashfs", "squashfs-tools")
	entries := testEntries()
	want := expected(entries)
	for _, tc := range optionSets {
		t.Run(tc.name, func(t *testing.T) {
			useExtendedFiles(t, tc.extendedFiles)
			img, _ := writeFile(t, entries, tc.opts)
			cmd := exec.Command(unsquashfs, "-lls", img)
			cmd.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("unsquashfs -lls: %v\n%s", err, out)
			}
			wantTime := time.Unix(0, 0).UTC().Format("2006-01-02 15:04")
			if !tc.opts.ModTime.IsZero() {
				wantTime = tc.opts.ModTime.UTC().Format("2006-01-02 15:04")
			}
			listed := map[string]bool{}
			for line := range strings.Lines(string(out)) {
				m := llsLine.FindStringSubmatch(strings.TrimSuffix(line, "\n"))
				if m == nil {
					continue
				}
				path, target, _ := strings.Cut(strings.TrimPrefix(m[5], "/"), " -> ")
				listed[path] = true
				if m[2] != "root/root" || m[4] != wantTime {
					t.Errorf("%q: owner %s time %s, want root/root %s", path, m[2], m[4], wantTime)
				}
				if path == "" {
					if m[1] != "drwxr-xr-x" {
						t.Errorf("root mode %s, want drwxr-xr-x", m[1])
					}
					continue
				}
				w, ok := want[path]
				if !ok {
					t.Errorf("unsquashfs lists unexpected %q", path)
					continue
				}
				if m[1] != lsMode(w.Mode) || target != w.Target {
					t.Errorf("%q: %s -> %q, want %s -> %q", path, m[1], target, lsMode(w.Mode), w.Target)
				}
				if w.Mode.IsRegular() && m[3] != strconv.Itoa(len(w.Data)) {
					t.Errorf("%q: size %s, want %d", path, m[3], len(w.Data))
				}
			}
			if len(listed) != len(want)+1 {
				t.Errorf("unsquashfs -lls listed %d entries, want %d (with the root)", len(listed), len(want)+1)
			}

			dir := filepath.Join(t.TempDir(), "x")
			if out, err := exec.Command(unsquashfs, "-no-progress", "-d", dir, "-f", img).CombinedOutput(); err != nil {
				t.Fatalf("unsquashfs -d: %v\n%s", err, out)
			}
			got, err := readTree(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range diffTrees(want, got) {
				t.Error("extracted:", d)
			}
		})
	}
}

// TestReadBack parses images with the strict in-test reader, which also
// checks that the large directories use extended inodes with an index.
func TestReadBack(t *testing.T) {
	entries := testEntries()
	want := expected(entries)
	for _, tc := range optionSets {
		t.Run(tc.name, func(t *testing.T) {
			useExtendedFiles(t, tc.extendedFiles)
			_, img := writeFile(t, entries, tc.opts)
			got, stats, mtime, err := readImage(img)
			if err != nil {
				t.Fatalf("reading back: %v", err)
			}
			for _, d := range diffTrees(want, got) {
				t.Error(d)
			}
			if wantTime := uint32(max(0, tc.opts.ModTime.Unix())); tc.opts.ModTime.IsZero() && mtime != 0 || !tc.opts.ModTime.IsZero() && mtime != wantTime {
				t.Errorf("superblock mtime %d, want %v", mtime, tc.opts.ModTime)
			}
			if stats.inodes != len(want)+1 || stats.longDirs < 2 || stats.dirIndexes < 2 || stats.fragments == 0 {
				t.Errorf("stats %+v: want %d inodes, extended directories with index entries and fragments", stats, len(want)+1)
			}
			if (stats.longFiles > 0) != tc.extendedFiles {
				t.Errorf("%d extended file inodes, want them iff extendedFiles (%v)", stats.longFiles, tc.extendedFiles)
			}
			t.Logf("%d bytes, %+v", len(img), stats)
		})
	}
	t.Run("empty", func(t *testing.T) {
		_, img := writeFile(t, nil, Options{})
		got, stats, _, err := readImage(img)
		if err != nil || len(got) != 0 || stats.inodes != 1 || len(img) != 4096 {
			t.Fatalf("empty filesystem: %d bytes, %v, %+v, %v", len(img), got, stats, err)
		}
	})
}

// TestDeterministic checks that the output depends only on the entries'
// contents and the options.
func TestDeterministic(t *testing.T) {
	entries := testEntries()
	_, first := writeFile(t, entries, Options{ModTime: testTime})

	reversed := slices.Clone(entries)
	slices.Reverse(reversed)
	shuffled := slices.Clone(entries)
	rand.New(rand.NewPCG(7, 7)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for name, es := range map[string][]Entry{"same": entries, "reversed": reversed, "shuffled": shuffled} {
		if _, img := writeFile(t, es, Options{ModTime: testTime}); !bytes.Equal(first, img) {
			t.Errorf("%s order: image differs", name)
		}
	}
	if _, img := writeFile(t, entries, Options{ModTime: testTime.Add(time.Second)}); bytes.Equal(first, img) {
		t.Error("changing ModTime did not change the image")
	}
	_, zero := writeFile(t, entries, Options{})
	if _, img := writeFile(t, entries, Options{ModTime: time.Unix(0, 0), BlockSize: 128 << 10}); !bytes.Equal(zero, img) {
		t.Error("zero Options differ from ModTime 1970 and BlockSize 128 KiB")
	}
}

// TestErrors checks that invalid entries and options are rejected.
func TestErrors(t *testing.T) {
	file := func(path string) Entry { return Entry{Path: path, Mode: 0o644} }
	for _, tc := range []struct {
		name    string
		entries []Entry
		opts    Options
		want    error
	}{
		{"empty path", []Entry{file("")}, Options{}, ErrInvalidPath},
		{"absolute", []Entry{file("/etc/passwd")}, Options{}, ErrInvalidPath},
		{"trailing slash", []Entry{file("etc/")}, Options{}, ErrInvalidPath},
		{"double slash", []Entry{file("etc//passwd")}, Options{}, ErrInvalidPath},
		{"dot", []Entry{file(".")}, Options{}, ErrInvalidPath},
		{"dot dot", []Entry{file("a/../b")}, Options{}, ErrInvalidPath},
		{"NUL", []Entry{file("a\x00b")}, Options{}, ErrInvalidPath},
		{"name of 256 bytes", []Entry{file("d/" + strings.Repeat("n", 256))}, Options{}, ErrInvalidPath},
		{"empty symlink target", []Entry{{Path: "l", Mode: fs.ModeSymlink}}, Options{}, ErrInvalidPath},
		{"symlink target of 4 KiB", []Entry{{Path: "l", Mode: fs.ModeSymlink, Target: strings.Repeat("t", 4096)}}, Options{}, ErrInvalidPath},
		{"duplicate file", []Entry{file("a"), file("b"), file("a")}, Options{}, ErrDuplicate},
		{"duplicate directory", []Entry{file("d/f"), {Path: "d", Mode: fs.ModeDir}, {Path: "d", Mode: fs.ModeDir}}, Options{}, ErrDuplicate},
		{"file under file", []Entry{file("a/b"), file("a")}, Options{}, ErrNotDir},
		{"file under symlink", []Entry{{Path: "var", Mode: fs.ModeSymlink, Target: "/perm/var"}, file("var/log/x")}, Options{}, ErrNotDir},
		{"device", []Entry{{Path: "dev/null", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666}}, Options{}, ErrUnsupported},
		{"fifo", []Entry{{Path: "fifo", Mode: fs.ModeNamedPipe | 0o644}}, Options{}, ErrUnsupported},
		{"dir and symlink", []Entry{{Path: "x", Mode: fs.ModeDir | fs.ModeSymlink, Target: "y"}}, Options{}, ErrUnsupported},
		{"data on directory", []Entry{{Path: "d", Mode: fs.ModeDir | 0o755, Data: []byte("x")}}, Options{}, ErrUnsupported},
		{"target on file", []Entry{{Path: "f", Mode: 0o644, Target: "x"}}, Options{}, ErrUnsupported},
		{"block size 1000", nil, Options{BlockSize: 1000}, ErrInvalidOption},
		{"block size 2 KiB", nil, Options{BlockSize: 2048}, ErrInvalidOption},
		{"block size 2 MiB", nil, Options{BlockSize: 2 << 20}, ErrInvalidOption},
		{"block size 6 KiB", nil, Options{BlockSize: 6 << 10}, ErrInvalidOption},
		{"time before 1970", nil, Options{ModTime: time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC)}, ErrInvalidOption},
		{"time after 2106", nil, Options{ModTime: time.Date(2107, 1, 1, 0, 0, 0, 0, time.UTC)}, ErrInvalidOption},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			n, err := Write(&buf, tc.entries, tc.opts)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Write = %v, want %v", err, tc.want)
			}
			if n != 0 || buf.Len() != 0 {
				t.Errorf("Write wrote %d bytes (returned %d) before failing", buf.Len(), n)
			}
			t.Log(err)
		})
	}
}

type failWriter struct{ left int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		n := w.left
		w.left = 0
		return n, errors.New("disk full")
	}
	w.left -= len(p)
	return len(p), nil
}

// TestWriteError checks that a failing writer's error and the bytes written
// before it are returned.
func TestWriteError(t *testing.T) {
	n, err := Write(&failWriter{left: 5000}, testEntries(), Options{})
	if err == nil || !strings.Contains(err.Error(), "disk full") || n != 5000 {
		t.Fatalf("Write = %d, %v; want 5000, disk full", n, err)
	}
}

// mixedEntries returns about 40 MB like a root filesystem: large binaries
// (copies of the test binary), random data and many small text files.
func mixedEntries(t testing.TB) []Entry {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	for len(bin) < 4<<20 {
		bin = append(bin, bin...)
	}
	var es []Entry
	for i := range 6 {
		es = append(es, Entry{Path: fmt.Sprintf("bin/prog%d", i), Mode: 0o755, Data: bin[i*1000 : i*1000+4<<20]})
	}
	es = append(es,
		Entry{Path: "data/random1", Mode: 0o644, Data: randomBytes(10, 4<<20)},
		Entry{Path: "data/random2", Mode: 0o644, Data: randomBytes(11, 4<<20)})
	for i := range 2000 {
		var text []byte
		for j := 0; len(text) < 4000; j++ {
			text = fmt.Appendf(text, "module %d option %d = %x\n", i, j, i*j)
		}
		es = append(es, Entry{Path: fmt.Sprintf("lib/modules/m%02d/f%04d.conf", i%20, i), Mode: 0o644, Data: text})
	}
	return es
}

// TestWriteTime logs how long writing about 40 MB takes; it fails only when
// far off the budget of a few seconds.
func TestWriteTime(t *testing.T) {
	entries := mixedEntries(t)
	total := 0
	for _, e := range entries {
		total += len(e.Data)
	}
	// CPU time of this process, not wall time: other processes on a shared
	// machine do not make the writer slower.
	var buf bytes.Buffer
	start, cpu0 := time.Now(), cpuTime(t)
	if _, err := Write(&buf, entries, Options{}); err != nil {
		t.Fatal(err)
	}
	elapsed, cpu := time.Since(start), cpuTime(t)-cpu0
	t.Logf("wrote %.1f MB of files into a %.1f MB image in %v (%v of CPU)", float64(total)/1e6, float64(buf.Len())/1e6, elapsed, cpu)
	if cpu > 30*time.Second {
		t.Errorf("writing took %v of CPU, want a few seconds", cpu)
	}
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkWrite40MB(b *testing.B) {
	entries := mixedEntries(b)
	total := 0
	for _, e := range entries {
		total += len(e.Data)
	}
	b.SetBytes(int64(total))
	b.ReportAllocs()
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		if _, err := Write(&buf, entries, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// fuzzEntries decodes a tree from fuzz input: block size, then records of
// kind, name length, 16-bit size and name bytes.
func fuzzEntries(data []byte) ([]Entry, Options) {
	var opts Options
	if len(data) > 0 {
		opts.BlockSize = 4096 << (data[0] % 3)
		data = data[1:]
	}
	const alphabet = "ab/.-"
	special := []byte{0, '/', 0xc3, 0xff, ' ', '.'}
	var es []Entry
	for len(data) >= 4 && len(es) < 3000 {
		kind, n, size := data[0]%6, int(data[1]%12), int(data[2])|int(data[3])<<8
		data = data[4:]
		n = min(n, len(data))
		name := make([]byte, n)
		for i, c := range data[:n] {
			if c >= 250 {
				name[i] = special[c-250]
			} else {
				name[i] = alphabet[c%byte(len(alphabet))]
			}
		}
		data = data[n:]
		path := string(name)
		content := make([]byte, size*(1+int(kind%2)*3))
		for i := range content {
			content[i] = byte(i * i >> (size % 7))
		}
		switch kind {
		case 0, 1:
			es = append(es, Entry{Path: path, Mode: 0o644, Data: content})
		case 2:
			es = append(es, Entry{Path: path, Mode: fs.ModeDir | fs.FileMode(size)&0o777})
		case 3:
			es = append(es, Entry{Path: path, Mode: fs.ModeSymlink, Target: strings.Repeat(path, size%3)})
		case 4:
			for i := range size % 1200 {
				es = append(es, Entry{Path: fmt.Sprintf("%s/%d", path, i), Mode: 0o600})
			}
		case 5:
			mode := fs.FileMode(size) & 0o777
			if size&0x1000 != 0 {
				mode |= fs.ModeSetuid
			}
			if size&0x2000 != 0 {
				mode |= fs.ModeDevice
			}
			es = append(es, Entry{Path: path, Mode: mode, Data: content[:size%10]})
		}
	}
	return es, opts
}

// FuzzWrite writes trees decoded from the fuzz input and reads them back
// with the in-test reader: Write must either reject the entries with one of
// its errors or produce an image that holds exactly them.
func FuzzWrite(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 3, 1, 0, 'a', 'b', 'c'})
	f.Add([]byte{1, 2, 1, 0, 0, 'a', 0, 3, 9, 0, 'a', 'b', 'c', 4, 2, 0x2c, 1, 'b', 'a'})
	f.Add([]byte{2, 4, 1, 0xff, 2, 'x', 1, 5, 0xff, 0xff, 'x', '/', 'y', 'z', 'a'})
	f.Add([]byte{0, 3, 2, 0, 0, 'a', 'b', 0, 4, 0, 0, 'a', 'b', '/', 'c'})
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, opts := fuzzEntries(data)
		var buf bytes.Buffer
		n, err := Write(&buf, entries, opts)
		if err != nil {
			for _, want := range []error{ErrInvalidPath, ErrDuplicate, ErrNotDir, ErrUnsupported} {
				if errors.Is(err, want) {
					return
				}
			}
			t.Fatalf("Write: unexpected error %v", err)
		}
		if n != int64(buf.Len()) || n%4096 != 0 {
			t.Fatalf("Write returned %d, wrote %d bytes", n, buf.Len())
		}
		got, _, _, err := readImage(buf.Bytes())
		if err != nil {
			t.Fatalf("reading back: %v", err)
		}
		for _, d := range diffTrees(expected(entries), got) {
			t.Error(d)
		}
	})
}
