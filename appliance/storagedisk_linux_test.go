package appliance

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/testenv"
)

// TestStorageDiskLoopExt4: an ext4 image mounted through a loop device is
// listed as a disk with its size; an administrator chooses it, which saves
// the choice and restarts cloudboxd; the next start keeps the shared
// folders on it, and a start without the disk mounted falls back to the
// state directory and says so.
func TestStorageDiskLoopExt4(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "mkfs.ext4", "e2fsprogs")
	testenv.RequireCommand(t, "mount", "mount")
	testenv.RequireCommand(t, "umount", "mount")
	dir := t.TempDir()
	img := filepath.Join(dir, "usb.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	run("mkfs.ext4", "-q", "-F", img)
	mnt := filepath.Join(dir, "usb disk") // a space: escaped in the mount table
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	run("mount", "-o", "loop", img, mnt)
	mounted := true
	unmount := func() {
		if mounted {
			run("umount", mnt)
			mounted = false
		}
	}
	t.Cleanup(unmount)

	h, srv := newStorageServer(t)
	var restarts atomic.Int32
	h.cfg.restart = func() { restarts.Add(1) }
	s := h.cfg.storage
	disks, err := s.disks()
	if err != nil {
		t.Fatal(err)
	}
	var found *Disk
	for i, d := range disks {
		if d.Mount == mnt {
			found = &disks[i]
		}
	}
	if found == nil {
		t.Fatalf("the loop-mounted image at %q is not listed: %+v", mnt, disks)
	}
	if found.FSType != "ext4" || !strings.HasPrefix(found.Device, "/dev/loop") || found.Size < 50<<20 || found.Free <= 0 ||
		found.Free > found.Size || found.Chosen || found.InUse {
		t.Errorf("the image is listed as %+v, want ext4 on /dev/loop*, about 64 MiB, neither chosen nor in use", *found)
	}

	tok, _, err := h.cfg.auth.accounts.newToken("admin", "test", testStart)
	if err != nil {
		t.Fatal(err)
	}
	choose := func(mount string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/storage/disk", strings.NewReader(`{"mount": "`+mount+`"}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := choose("/not/a/disk"); code != http.StatusBadRequest || restarts.Load() != 0 {
		t.Fatalf("choosing a path that is no disk = %d (%d restarts), want 400 and no restart", code, restarts.Load())
	}
	if code := choose(mnt); code != http.StatusAccepted || restarts.Load() != 1 {
		t.Fatalf("choosing the image = %d (%d restarts), want 202 and a restart", code, restarts.Load())
	}
	if d, err := loadStorageDisk(s.stateDir); err != nil || d.Mount != mnt || d.Device != found.Device {
		t.Fatalf("saved choice %+v, %v; want %s on %s", d, err, mnt, found.Device)
	}
	// The page shows the disks and the choice to administrators.
	if b := body(t, do(t, h, http.MethodGet, "/storage", "Authorization", "Bearer "+tok)); !strings.Contains(b, mnt) ||
		!strings.Contains(b, `value="`+mnt+`" id="disk-`) {
		t.Errorf("the Storage page lacks the disk %s:\n%s", mnt, b)
	}

	// The next start keeps the folders on the disk.
	reopen := func() *storageService {
		t.Helper()
		logger := slog.New(slog.DiscardHandler)
		st, err := openStorage(StorageConfig{Quota: 1 << 20}, s.stateDir, h.cfg.node, s.ov, logger, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := reopen()
	if want := filepath.Join(mnt, storageSubdir); st.dir != want || st.diskErr != "" {
		t.Fatalf("after the restart the folders are in %q (%q), want %q", st.dir, st.diskErr, want)
	}
	rec := httptest.NewRecorder()
	st.folders.ServeDAV(rec, httptest.NewRequest(http.MethodPut, "/dav/on-usb.txt", strings.NewReader("on the usb disk")), "alice")
	if rec.Code/100 != 2 {
		t.Fatalf("WebDAV PUT after the restart = %d", rec.Code)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, storageSubdir, "users", "alice", "on-usb.txt")); err != nil || string(b) != "on the usb disk" {
		t.Fatalf("the file is not on the disk: %q, %v", b, err)
	}
	if disks, _ := st.disks(); !containsDisk(disks, func(d Disk) bool { return d.Mount == mnt && d.Chosen && d.InUse }) {
		t.Errorf("after the restart the image is not listed chosen and in use: %+v", disks)
	}

	// Without the disk, the folders fall back to the state directory and
	// the status says why.
	unmount()
	st = reopen()
	if want := filepath.Join(s.stateDir, StorageDir); st.dir != want || !strings.Contains(st.diskErr, "not mounted") {
		t.Fatalf("without the disk the folders are in %q (%q), want %q and an error", st.dir, st.diskErr, want)
	}
	if cs := st.status(t.Context()); cs.OK || !strings.Contains(cs.Error, mnt) {
		t.Errorf("status without the disk = %+v, want an error naming %s", cs, mnt)
	}
}

func containsDisk(disks []Disk, f func(Disk) bool) bool {
	for _, d := range disks {
		if f(d) {
			return true
		}
	}
	return false
}

// TestParseMounts reads mount tables: escapes, read-only and bind mounts,
// file systems that cannot hold the folders.
func TestParseMounts(t *testing.T) {
	table := `/dev/mmcblk0p2 / squashfs ro,relatime 0 0
/dev/mmcblk0p1 /boot vfat ro,relatime 0 0
/dev/mmcblk0p4 /perm ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw 0 0
/dev/sda1 /media/usb\040disk ext4 rw,noatime 0 0
/dev/sda1 /media/usb\040disk/bind ext4 rw,noatime 0 0
/dev/sdb1 /media/ro vfat ro 0 0
/dev/sdc1 /media/stick exfat rw 0 0
server:/export /mnt/nfs nfs4 rw 0 0
short line
`
	mounts, err := parseMounts(strings.NewReader(table))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range diskCandidates(mounts) {
		got = append(got, m.device+" "+m.mount+" "+m.fstype)
	}
	want := []string{"/dev/mmcblk0p4 /perm ext4", "/dev/sda1 /media/usb disk ext4", "/dev/sdc1 /media/stick exfat"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("candidates:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for in, want := range map[string]string{`a\040b`: "a b", `a\134b`: `a\b`, `a\9b`: `a\9b`, `end\04`: `end\04`, `x\011y`: "x\ty"} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParseStorageDisk: a damaged choice file is refused, never half
// used.
func FuzzParseStorageDisk(f *testing.F) {
	f.Add([]byte(`{"version": 1, "mount": "/media/usb", "device": "/dev/sda1"}`))
	f.Add([]byte(`{"version": 1, "mount": "media/../usb", "device": "/dev/sda1"}`))
	f.Add([]byte(`{"version": 2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseStorageDisk(b)
		if err != nil {
			if d != (storageDisk{}) {
				t.Fatalf("refused choice %+v is not empty", d)
			}
			return
		}
		if !filepath.IsAbs(d.Mount) || filepath.Clean(d.Mount) != d.Mount || !strings.HasPrefix(d.Device, "/dev/") {
			t.Fatalf("accepted choice %+v", d)
		}
	})
}
