package appliance

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
)

// StorageDiskFile, in the state directory, names the disk an
// administrator chose for the shared folders on the Storage page. It
// applies at the next start of cloudboxd (the page restarts it), over
// --storage-dir; a disk that is not mounted then is ignored with a
// warning, and the folders stay in the state directory. It is not part of
// backups: a disk belongs to the hardware.
const StorageDiskFile = "storage-disk.json"

// storageDiskVersion is the version of StorageDiskFile.
const storageDiskVersion = 1

// storageSubdir is the directory the folders take on a chosen disk.
const storageSubdir = "cloudbox-storage"

// diskFSTypes are the file systems the folders may live on: those of
// disks, not of memory, the network or the read-only root.
var diskFSTypes = []string{"ext2", "ext3", "ext4", "btrfs", "xfs", "f2fs", "vfat", "exfat", "ntfs3"}

// Disk is a mounted file system that can hold the shared folders.
type Disk struct {
	Device string `json:"device"`
	Mount  string `json:"mount"`
	FSType string `json:"fstype"`
	// Size and Free are in bytes (statfs).
	Size int64 `json:"size"`
	Free int64 `json:"free"`
	// USB is true for a disk on USB, Removable for one the kernel calls
	// removable (/sys/block).
	USB       bool `json:"usb"`
	Removable bool `json:"removable"`
	// Chosen is the disk of StorageDiskFile, InUse the one the folders are
	// on now.
	Chosen bool `json:"chosen"`
	InUse  bool `json:"in_use"`
}

// DiskInfo is the storage disks as GET /api/v1/storage shows them to
// administrators.
type DiskInfo struct {
	// Dir is where the folders are now.
	Dir string `json:"dir"`
	// Chosen is the mount point saved in StorageDiskFile ("" for none);
	// Error why it is not in use.
	Chosen string `json:"chosen,omitempty"`
	Error  string `json:"error,omitempty"`
	Disks  []Disk `json:"disks"`
}

// storageDisk is StorageDiskFile.
type storageDisk struct {
	Version int    `json:"version"`
	Mount   string `json:"mount"`
	Device  string `json:"device"`
}

// loadStorageDisk reads StorageDiskFile; a missing file is no choice.
func loadStorageDisk(stateDir string) (storageDisk, error) {
	var d storageDisk
	b, err := os.ReadFile(filepath.Join(stateDir, StorageDiskFile))
	if errors.Is(err, fs.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return d, fmt.Errorf("reading the storage disk choice: %w", err)
	}
	return parseStorageDisk(b)
}

// parseStorageDisk parses and checks StorageDiskFile.
func parseStorageDisk(b []byte) (storageDisk, error) {
	var d storageDisk
	if err := json.Unmarshal(b, &d); err != nil || d.Version != storageDiskVersion || d.Mount == "" ||
		!filepath.IsAbs(d.Mount) || filepath.Clean(d.Mount) != d.Mount || !strings.HasPrefix(d.Device, "/dev/") {
		return storageDisk{}, fmt.Errorf("%s is not a storage disk choice of version %d (an absolute mount point and a /dev/ device)",
			StorageDiskFile, storageDiskVersion)
	}
	return d, nil
}

// saveStorageDisk writes d atomically; an empty Mount removes the choice.
func saveStorageDisk(stateDir string, d storageDisk) error {
	path := filepath.Join(stateDir, StorageDiskFile)
	if d.Mount == "" {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing the storage disk choice: %w", err)
		}
		return nil
	}
	d.Version = storageDiskVersion
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving the storage disk choice: %w", err)
	}
	return nil
}

// mountEntry is a line of /proc/self/mounts.
type mountEntry struct {
	device, mount, fstype string
	readOnly              bool
}

// parseMounts reads the mount table (fstab(5) format, with octal escapes
// in the fields).
func parseMounts(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		out = append(out, mountEntry{device: unescapeMount(f[0]), mount: unescapeMount(f[1]), fstype: f[2],
			readOnly: slices.Contains(strings.Split(f[3], ","), "ro")})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	return out, nil
}

// unescapeMount undoes the octal escapes (\040 for a space) of a mount
// table field.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && isOctal(s[i+1:i+4]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	if len(s) != 3 || s[0] > '3' {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '7' {
			return false
		}
	}
	return true
}

// diskCandidates keeps the writable disk file systems of a mount table,
// one mount point per device (the shortest: bind mounts repeat a device).
func diskCandidates(mounts []mountEntry) []mountEntry {
	var out []mountEntry
	for _, m := range mounts {
		if !strings.HasPrefix(m.device, "/dev/") || m.readOnly || !slices.Contains(diskFSTypes, m.fstype) ||
			m.mount == "/" || m.mount == "/boot" || strings.HasPrefix(m.mount, "/boot/") {
			continue
		}
		if i := slices.IndexFunc(out, func(o mountEntry) bool { return o.device == m.device }); i >= 0 {
			if len(m.mount) < len(out[i].mount) {
				out[i] = m
			}
			continue
		}
		out = append(out, m)
	}
	return out
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// disks lists the disks that can hold the folders, marking the chosen one
// and the one in use.
func (s *storageService) disks() ([]Disk, error) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	defer f.Close()
	mounts, err := parseMounts(f)
	if err != nil {
		return nil, err
	}
	chosen, _ := loadStorageDisk(s.stateDir)
	cands := diskCandidates(mounts)
	// The folders' disk is the longest mount point above them.
	inUse := ""
	for _, m := range cands {
		if under(s.dir, m.mount) && len(m.mount) > len(inUse) {
			inUse = m.mount
		}
	}
	out := []Disk{}
	for _, m := range cands {
		d := Disk{Device: m.device, Mount: m.mount, FSType: m.fstype, Chosen: m.mount == chosen.Mount, InUse: m.mount == inUse}
		size, free, _ := diskSpace(m.mount)
		d.Size, d.Free = int64(size), int64(free)
		d.USB, d.Removable = blockInfo(m.device)
		out = append(out, d)
	}
	return out, nil
}

// storageDirFor returns the folders' directory on the disk mounted at
// mount.
func storageDirFor(mount string) string { return filepath.Join(mount, storageSubdir) }

// resolveStorageDir returns the directory of the folders: the chosen disk
// when it is mounted, else dir (the flag's, or the state directory's); and
// why the choice is not used.
func resolveStorageDir(stateDir, dir string) (string, string) {
	d, err := loadStorageDisk(stateDir)
	if err != nil {
		return dir, err.Error()
	}
	if d.Mount == "" {
		return dir, ""
	}
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return dir, err.Error()
	}
	defer f.Close()
	mounts, err := parseMounts(f)
	if err != nil {
		return dir, err.Error()
	}
	if !slices.ContainsFunc(diskCandidates(mounts), func(m mountEntry) bool { return m.mount == d.Mount && m.device == d.Device }) {
		return dir, fmt.Sprintf("the chosen disk %s (%s) is not mounted; the folders are in %s until it is back", d.Mount, d.Device, dir)
	}
	return storageDirFor(d.Mount), ""
}

// diskInfo returns the disks for GET /api/v1/storage.
func (s *storageService) diskInfo() *DiskInfo {
	info := &DiskInfo{Dir: s.dir, Error: s.diskErr}
	d, _ := loadStorageDisk(s.stateDir)
	info.Chosen = d.Mount
	disks, err := s.disks()
	if err != nil && info.Error == "" {
		info.Error = err.Error()
	}
	info.Disks = disks
	if info.Disks == nil {
		info.Disks = []Disk{}
	}
	return info
}

// errNoSuchDisk is chooseDisk's answer for a mount point not listed.
var errNoSuchDisk = errors.New("no such disk: choose one of the mounted disks listed")

// chooseDisk saves mount ("" for the state directory) as the folders'
// disk, after checking that the folders' directory can be made there.
func (s *storageService) chooseDisk(mount string) error {
	if mount == "" {
		return saveStorageDisk(s.stateDir, storageDisk{})
	}
	disks, err := s.disks()
	if err != nil {
		return err
	}
	i := slices.IndexFunc(disks, func(d Disk) bool { return d.Mount == mount })
	if i < 0 {
		return fmt.Errorf("%w (%s)", errNoSuchDisk, mount)
	}
	dir := storageDirFor(mount)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("the disk %s cannot hold the folders: %w", mount, err)
	}
	probe := filepath.Join(dir, ".cloudbox-probe")
	if err := atomicfile.Write(probe, []byte("ok\n"), 0o600); err != nil {
		return fmt.Errorf("the disk %s cannot hold the folders: %w", mount, err)
	}
	os.Remove(probe)
	return saveStorageDisk(s.stateDir, storageDisk{Mount: mount, Device: disks[i].Device})
}

// diskRequest is the body of POST /api/v1/storage/disk.
type diskRequest struct {
	Mount string `json:"mount"`
}

// apiStorageDisk answers POST /api/v1/storage/disk {"mount": "/media/usb"}
// ("" for the state directory): 202 when cloudboxd restarts to use it.
func (h *handler) apiStorageDisk(w http.ResponseWriter, r *http.Request) {
	s, _, ok := h.storageFor(w, r)
	if !ok || !storageInProfile {
		return
	}
	var in diskRequest
	if !decodeJSONPost(w, r, maxFormBody, &in, `{"mount": "/media/usb"}`) {
		return
	}
	if err := s.chooseDisk(in.Mount); err != nil {
		writeJSON(w, http.StatusBadRequest, errorResponse{Error: err.Error()})
		return
	}
	h.cfg.logger.Info("storage disk chosen, restarting", "mount", in.Mount)
	if h.cfg.restart != nil {
		h.cfg.restart()
	}
	writeJSON(w, http.StatusAccepted, struct {
		Dir        string `json:"dir"`
		Restarting bool   `json:"restarting"`
	}{cmpDir(in.Mount, s), true})
}

// cmpDir returns the folders' directory after choosing mount.
func cmpDir(mount string, s *storageService) string {
	if mount == "" {
		return filepath.Join(s.stateDir, StorageDir)
	}
	return storageDirFor(mount)
}

// storageDiskPage saves the disk chosen on the Storage page and restarts.
func (h *handler) storageDiskPage(w http.ResponseWriter, r *http.Request) {
	s, d, ok := h.storagePost(w, r)
	if !ok || !storageInProfile {
		return
	}
	mount := r.PostFormValue("mount")
	if err := s.chooseDisk(mount); err != nil {
		h.renderStorage(w, r, http.StatusBadRequest, d.T("The disk was not chosen: %s.", err.Error()), "")
		return
	}
	h.cfg.logger.Info("storage disk chosen, restarting", "mount", mount)
	if h.cfg.restart != nil {
		h.cfg.restart()
	}
	d.Nav, d.CSRF, d.User = nil, "", ""
	h.render(w, http.StatusOK, h.panel.message, struct {
		pageData
		Heading, Message string
	}{d, "Storage disk saved", "cloudboxd restarts now to keep the shared folders on it; the panel is back in a few seconds. Files already in the folders stay where they were."})
}
