package squashfs

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestKernelMount loop-mounts images read-only and compares every entry as
// the Linux kernel reads it: contents, symlink targets, modes, owner, mtime
// and directory link counts, plus lookups of missing names in the large
// directories (which go through the directory index). It needs root.
func TestKernelMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestKernelMount loop-mounts images and needs root: run go test as root")
	}
	mount := tool(t, "mount", "mount")
	umount := tool(t, "umount", "mount")
	entries := testEntries()
	want := expected(entries)
	subdirs := map[string]int{}
	for p, e := range want {
		if e.Mode.IsDir() {
			subdirs[filepath.Dir(p)]++
		}
	}
	for _, tc := range optionSets {
		t.Run(tc.name, func(t *testing.T) {
			useExtendedFiles(t, tc.extendedFiles)
			img, _ := writeFile(t, entries, tc.opts)
			dir := t.TempDir()
			if out, err := exec.Command(mount, "-t", "squashfs", "-o", "loop,ro", img, dir).CombinedOutput(); err != nil {
				t.Fatalf("mount -t squashfs -o loop,ro: %v\n%s\n(needs CONFIG_SQUASHFS with ZLIB and loop devices; see dmesg)", err, out)
			}
			t.Cleanup(func() {
				if out, err := exec.Command(umount, dir).CombinedOutput(); err != nil {
					t.Errorf("umount: %v\n%s", err, out)
				}
			})
			got, err := readTree(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range diffTrees(want, got) {
				t.Error("mounted:", d)
			}
			mtime := max(tc.opts.ModTime.Unix(), 0)
			for p := range want {
				var st syscall.Stat_t
				path := filepath.Join(dir, p)
				if err := syscall.Lstat(path, &st); err != nil {
					t.Fatalf("lstat %s: %v", p, err)
				}
				wantLinks := uint64(1)
				if want[p].Mode.IsDir() {
					wantLinks = uint64(2 + subdirs[p])
				}
				if st.Uid != 0 || st.Gid != 0 || st.Mtim.Sec != mtime || st.Nlink != wantLinks {
					t.Errorf("%s: uid %d gid %d mtime %d nlink %d, want 0 0 %d %d", p, st.Uid, st.Gid, st.Mtim.Sec, st.Nlink, mtime, wantLinks)
				}
			}
			for _, p := range []string{
				"lib/modules/6.12.0/kernel/mod-0500.kx",
				"lib/modules/6.12.0/kernel/mod-9999.ko",
				"lib/modules/6.12.0/kernel/a",
				"lib/modules/6.12.0/kernel/zzz",
				"long/" + strings.Repeat("9", 255),
				"long/100",
				"sort/a/c",
			} {
				if _, err := os.Lstat(filepath.Join(dir, p)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("lstat of missing %s: %v, want not exist", p, err)
				}
			}
		})
	}
}
