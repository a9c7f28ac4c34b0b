package ext4

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const wantFeatures = "has_journal ext_attr dir_index filetype extent sparse_super large_file huge_file dir_nlink extra_isize"

// tool returns the path of an e2fsprogs or util-linux program, failing the
// test if it is missing.
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	t.Fatalf("%s not found: apt-get install %s", name, pkg)
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// run runs a program and returns its stdout, stderr and exit code.
func run(t *testing.T, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "TZ=UTC", "E2FSCK_CONFIG=/dev/null", "LC_ALL=C")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("running %s: %v", name, err)
	}
	return o.String(), e.String(), code
}

// e2fsckOK lines are all e2fsck -fn prints for a clean filesystem.
var e2fsckOK = regexp.MustCompile(`^(e2fsck \d+\.\d+.*|Pass [1-5]: Checking [a-z ,]+|.*: \d+/\d+ files \([0-9.]+% non-contiguous\), \d+/\d+ blocks)$`)

// fsck fails the test unless e2fsck -fn finds img clean.
// waitUnmounted waits until the file system in img is clean, at most 30
// s. A mount namespace made while it was mounted (ip netns exec in a test
// running in parallel) holds a copy of the mount, which keeps the file
// system in use, its journal not yet checkpointed, until that namespace
// ends.
func waitUnmounted(t *testing.T, img string) {
	t.Helper()
	dumpe2fs := tool(t, "dumpe2fs", "e2fsprogs")
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, stderr, code := run(t, dumpe2fs, "-h", img)
		if code != 0 {
			t.Fatalf("dumpe2fs -h %s exited with %d: %s", img, code, stderr)
		}
		if !strings.Contains(out, "needs_recovery") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still needs journal recovery 30 s after umount: mounted elsewhere?", img)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func fsck(t *testing.T, img string) {
	t.Helper()
	stdout, stderr, code := run(t, tool(t, "e2fsck", "e2fsprogs"), "-fn", img)
	out := stdout + stderr
	var complaints []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !e2fsckOK.MatchString(line) {
			complaints = append(complaints, line)
		}
	}
	if code != 0 || len(complaints) > 0 {
		t.Fatalf("e2fsck -fn %s exited with %d (want 0), complaints %q:\n%s", img, code, complaints, out)
	}
}

// dumpe2fs returns the fields of dumpe2fs -h.
func dumpe2fs(t *testing.T, img string) map[string]string {
	t.Helper()
	stdout, stderr, code := run(t, tool(t, "dumpe2fs", "e2fsprogs"), "-h", img)
	if code != 0 {
		t.Fatalf("dumpe2fs -h exited with %d:\n%s", code, stderr)
	}
	fields := make(map[string]string)
	for _, line := range strings.Split(stdout, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields
}

// debugfs runs debugfs commands on img and returns their output. Its
// errors only show on stderr, so any stderr besides the banner fails.
func debugfs(t *testing.T, img string, write bool, cmds ...string) string {
	t.Helper()
	args := []string{"-R", cmds[0], img}
	if len(cmds) > 1 { // -f echoes each command to stdout
		script := filepath.Join(t.TempDir(), "cmds")
		if err := os.WriteFile(script, []byte(strings.Join(cmds, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		args = []string{"-f", script, img}
	}
	if write {
		args = append([]string{"-w"}, args...)
	}
	stdout, stderr, code := run(t, tool(t, "debugfs", "e2fsprogs"), args...)
	stderr = regexp.MustCompile(`(?m)^debugfs \d+\.\d+.*\n`).ReplaceAllString(stderr, "")
	if code != 0 || stderr != "" {
		t.Fatalf("debugfs %q exited with %d:\n%s", cmds, code, stderr)
	}
	return stdout
}

// Linux lseek whences, not in package os or syscall.
const (
	seekData = 3
	seekHole = 4
)

// format formats size bytes at off of a fresh sparse file and returns the
// path of an image holding just the filesystem. With an offset it checks that
// nothing outside the region was written and copies the region out, through
// its data extents only, so that multi-GiB images stay cheap.
func format(t *testing.T, off, size int64, o Options) string {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "perm.img")
	if off == 0 {
		f, err := os.Create(img)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		if err := Format(f, 0, size, o); err != nil {
			t.Fatalf("Format: %v", err)
		}
		return img
	}

	disk, err := os.Create(filepath.Join(dir, "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Close()
	if err := disk.Truncate(off + size + 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := Format(disk, off, size, o); err != nil {
		t.Fatalf("Format: %v", err)
	}
	if data, err := disk.Seek(0, seekData); err != nil || data < off {
		t.Fatalf("first data of the disk at %d (%v), want none before the filesystem at %d", data, err, off)
	}
	if data, err := disk.Seek(off+size, seekData); !errors.Is(err, syscall.ENXIO) {
		t.Fatalf("data after the filesystem, at %d (%v)", data, err)
	}

	out, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := out.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for pos := off; pos < off+size; {
		data, err := disk.Seek(pos, seekData)
		if errors.Is(err, syscall.ENXIO) || data >= off+size {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		hole, err := disk.Seek(data, seekHole)
		if err != nil {
			t.Fatal(err)
		}
		hole = min(hole, off+size)
		if _, err := io.Copy(io.NewOffsetWriter(out, data-off), io.NewSectionReader(disk, data, hole-data)); err != nil {
			t.Fatal(err)
		}
		pos = hole
	}
	return img
}

// content returns n deterministic pseudo-random bytes.
func content(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed)})
	r.Read(b)
	return b
}

func uuidString(u [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

func TestFormatTools(t *testing.T) {
	uuid := [16]byte{0x0c, 0x10, 0x0d, 0xb0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0x42}
	for _, tc := range []struct {
		name    string
		size    int64
		opts    Options
		blocks  int // want block count
		inodes  int // want inode count
		journal int // want journal blocks
	}{
		{"8MiB", 8 << 20, Options{Label: "perm", UUID: uuid, Time: testTime}, 2048, 512, 1024},
		{"100MiB", 100 << 20, Options{Label: "perm", UUID: uuid, Time: testTime}, 25600, 6400, 1024},
		// The 3-block last group cannot hold its metadata: dropped.
		{"129MiB+12KiB", 129<<20 + 12<<10, Options{Label: "perm", UUID: uuid, Time: testTime}, 32768, 8192, 4096},
		// The last group is partial but kept: bitmap padding matters.
		{"140MiB", 140 << 20, Options{Label: "x", UUID: uuid, Time: testTime}, 35840, 8960, 4096},
		{"1GiB", 1 << 30, Options{Label: "perm", Time: testTime}, 262144, 65536, 8192},
		{"5GiB", 5 << 30, Options{Label: "sixteen-bytes-ok"}, 1310720, 327680, 16384},
		// 136 groups: the descriptor table takes two blocks.
		{"17GiB", 17 << 30, Options{Label: "perm", Time: testTime}, 4456448, 1114112, 16384},
	} {
		for _, off := range []int64{0, 1104 << 20} {
			t.Run(fmt.Sprintf("%s/off=%d", tc.name, off), func(t *testing.T) {
				t.Parallel()
				img := format(t, off, tc.size, tc.opts)
				fsck(t, img)

				f := dumpe2fs(t, img)
				want := map[string]string{
					"Filesystem features":    wantFeatures,
					"Filesystem state":       "clean",
					"Filesystem volume name": tc.opts.Label,
					"Block count":            strconv.Itoa(tc.blocks),
					"Inode count":            strconv.Itoa(tc.inodes),
					"Block size":             "4096",
					"Inode size":             "256",
					"Total journal blocks":   strconv.Itoa(tc.journal),
					"Journal start":          "0",
					"Filesystem created":     tc.opts.Time.UTC().Format("Mon Jan _2 15:04:05 2006"),
				}
				if tc.opts.Time.IsZero() {
					want["Filesystem created"] = "" // the epoch: dumpe2fs leaves it out
				}
				if tc.opts.UUID != ([16]byte{}) {
					want["Filesystem UUID"] = uuidString(tc.opts.UUID)
				}
				for k, v := range want {
					if f[k] != v {
						t.Errorf("dumpe2fs %s: got %q, want %q", k, f[k], v)
					}
				}
				if u := f["Filesystem UUID"]; !regexp.MustCompile(`^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$`).MatchString(u) {
					t.Errorf("dumpe2fs Filesystem UUID: got %q, want a non-null UUID", u)
				}

				if ls := debugfs(t, img, false, "ls -l /"); !strings.Contains(ls, " lost+found") {
					t.Errorf("ls -l / does not list lost+found:\n%s", ls)
				}

				// Inode fields e2fsck does not insist on.
				crtime := fmt.Sprintf(`crtime: 0x%08x:00000000`, tc.opts.Time.Unix())
				if tc.opts.Time.IsZero() {
					crtime = `crtime: 0x00000000:00000000`
				}
				for ino, want := range map[string][]string{
					"<2>":  {`Type: directory\s+Mode:\s+0755\s+Flags: 0x80000\n`, `Links: 3 `},
					"<8>":  {`Type: regular\s+Mode:\s+0600\s+Flags: 0x80000\n`, `Links: 1 `, fmt.Sprintf(`Size: %d\n`, tc.journal*4096)},
					"<11>": {`Type: directory\s+Mode:\s+0700\s+Flags: 0x80000\n`, `Links: 2 `, `Size: 16384\n`, `\(0-3\):`},
				} {
					stat := debugfs(t, img, false, "stat "+ino)
					for _, w := range append(want, `Size of extra inode fields: 32\n`, crtime) {
						if !regexp.MustCompile(w).MatchString(stat) {
							t.Errorf("debugfs stat %s does not match %q:\n%s", ino, w, stat)
						}
					}
				}

				// A real implementation allocates from our bitmaps.
				hello, inner := content(1<<20+123, 1), content(5000, 2)
				src := filepath.Join(t.TempDir(), "src")
				for name, b := range map[string][]byte{"hello": hello, "inner": inner} {
					if err := os.WriteFile(src+name, b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				debugfs(t, img, true,
					"write "+src+"hello hello.txt",
					"mkdir d",
					"cd d",
					"write "+src+"inner inner.bin")
				fsck(t, img)
				for path, want := range map[string][]byte{"/hello.txt": hello, "/d/inner.bin": inner} {
					if got := debugfs(t, img, false, "cat "+path); got != string(want) {
						t.Errorf("cat %s: got %d bytes, want the %d written", path, len(got), len(want))
					}
				}
			})
		}
	}
}

// TestKernelMount mounts the filesystem with the running kernel through a
// loop device, writes to it, and checks it with e2fsck afterwards.
func TestKernelMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("mounting through a loop device needs root: run the tests as root (sudo go test)")
	}
	mount, umount := tool(t, "mount", "mount"), tool(t, "umount", "mount")
	lsattr := tool(t, "lsattr", "e2fsprogs")
	for _, tc := range []struct {
		name string
		size int64
	}{
		{"140MiB", 140 << 20},
		{"1GiB", 1 << 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := format(t, 0, tc.size, Options{Label: "perm", Time: testTime})
			mnt := t.TempDir()
			if _, stderr, code := run(t, mount, "-o", "loop", "-t", "ext4", img, mnt); code != 0 {
				t.Fatalf("mount -o loop -t ext4 exited with %d: %s", code, stderr)
			}
			mounted := true
			unmount := func() {
				if mounted {
					if _, stderr, code := run(t, umount, mnt); code != 0 {
						t.Errorf("umount exited with %d: %s", code, stderr)
					}
					mounted = false
				}
			}
			t.Cleanup(unmount)

			big := content(40<<20, 3)
			if err := os.WriteFile(filepath.Join(mnt, "big"), big, 0o644); err != nil {
				t.Fatal(err)
			}
			// Enough entries to outgrow one block, so the kernel turns the
			// directory into an htree, hashed with our seed.
			many := filepath.Join(mnt, "many")
			if err := os.Mkdir(many, 0o755); err != nil {
				t.Fatal(err)
			}
			for i := range 600 {
				if err := os.WriteFile(filepath.Join(many, fmt.Sprintf("entry-%04d", i)), []byte{byte(i)}, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if out, _, _ := run(t, lsattr, "-d", many); !strings.Contains(strings.SplitN(out, " ", 2)[0], "I") {
				t.Errorf("lsattr -d %s = %q, want the I (indexed) flag", many, out)
			}
			unmount()
			waitUnmounted(t, img)

			fsck(t, img)
			if got := debugfs(t, img, false, "cat /big"); got != string(big) {
				t.Errorf("cat /big: got %d bytes, want the %d written", len(got), len(big))
			}
			if got := debugfs(t, img, false, "cat /many/entry-0599"); got != string([]byte{599 % 256}) {
				t.Errorf("cat /many/entry-0599 = %q", got)
			}
			if f := dumpe2fs(t, img); f["Filesystem state"] != "clean" {
				t.Errorf("dumpe2fs Filesystem state after unmount: %q, want clean", f["Filesystem state"])
			}
		})
	}
}
