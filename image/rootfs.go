package image

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/squashfs"
	"golang.org/x/sys/unix"
)

// rootEntry is one file, directory or symlink of the root filesystem.
type rootEntry struct {
	Mode   fs.FileMode // permission bits plus fs.ModeDir or fs.ModeSymlink
	Data   []byte      // file contents
	Source string      // or: file to copy contents from
	Target string      // symlink target
}

// rootTree returns the root filesystem of an image: gokrazy's layout
// (shared/docs/gokrazy-image.md §4) with cloudboxd as the one user program.
func rootTree(cfg *Config, binDir, kernelDir string) (map[string]rootEntry, error) {
	t := map[string]rootEntry{}
	dir := rootEntry{Mode: fs.ModeDir | 0o755}
	for _, d := range []string{"bin", "dev", "etc", "etc/ssl", "gokrazy", "lib", "mnt", "perm", "proc", "run", "sys", "tmp", "user"} {
		t[d] = dir
	}
	for _, name := range []string{"init", "dhcp", "ntp", "randomd"} {
		t["gokrazy/"+name] = rootEntry{Mode: 0o755, Source: filepath.Join(binDir, name)}
	}
	t["user/cloudboxd"] = rootEntry{Mode: 0o755, Source: filepath.Join(binDir, "cloudboxd")}
	// Symlinks are relative and their targets exist in the tree: the
	// squashfs writer (go-diskfs) lists extended attributes through each
	// link, so a link that dangles on the build host fails the build. The
	// placeholders are hidden at run time by the /perm and /tmp mounts.
	t["var"] = rootEntry{Mode: fs.ModeSymlink | 0o777, Target: "perm/var"}
	t["perm/var"] = dir
	t["etc/resolv.conf"] = rootEntry{Mode: fs.ModeSymlink | 0o777, Target: "../tmp/resolv.conf"}
	t["tmp/resolv.conf"] = rootEntry{Mode: 0o644}
	// gokrazy passes the file to sethostname as it is: no newline.
	t["etc/hostname"] = rootEntry{Mode: 0o644, Data: []byte(cfg.Hostname)}
	t["etc/hosts"] = rootEntry{Mode: 0o644, Data: []byte("127.0.0.1 localhost\n::1 localhost\n127.0.1.1 " + cfg.Hostname + "\n")}
	// gokrazy's own HTTP API serves only its Unix socket when no password
	// file exists (none is installed); its port moves off 80 as well, so the
	// panel owns 80/443 whatever happens.
	t["etc/http-port.txt"] = rootEntry{Mode: 0o644, Data: []byte("8079")}
	t["etc/https-port.txt"] = rootEntry{Mode: 0o644, Data: []byte("8443")}
	t["etc/cloudbox-release"] = rootEntry{Mode: 0o644, Data: []byte(fmt.Sprintf("VERSION=%s\nBOARD=%s\nBUILD_TIME=%s\n", cfg.Version, cfg.Board.Name, cfg.buildTimestamp()))}

	ca, err := os.ReadFile(cfg.CABundle)
	if err != nil {
		return nil, fmt.Errorf("reading CA certificates (install ca-certificates or pass a bundle): %w", err)
	}
	t["etc/ssl/ca-bundle.pem"] = rootEntry{Mode: 0o644, Data: ca}

	// Time zones: Go's own database, pinned by the toolchain, not the
	// build host's /usr/share/zoneinfo.
	zi := filepath.Join(runtime.GOROOT(), "lib", "time", "zoneinfo.zip")
	zdata, err := os.ReadFile(zi)
	if err != nil {
		return nil, fmt.Errorf("reading Go's time zone database: %w", err)
	}
	t["etc/zoneinfo.zip"] = rootEntry{Mode: 0o644, Data: zdata}
	utc, err := zipMember(zdata, "UTC")
	if err != nil {
		return nil, err
	}
	t["etc/localtime"] = rootEntry{Mode: 0o644, Data: utc}

	modules := filepath.Join(kernelDir, "lib", "modules")
	err = filepath.WalkDir(modules, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(kernelDir, p)
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			t[rel] = dir
		case d.Type().IsRegular():
			t[rel] = rootEntry{Mode: 0o644, Source: p}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("collecting kernel modules: %w", err)
	}
	return t, nil
}

func zipMember(data []byte, name string) ([]byte, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("opening zoneinfo.zip: %w", err)
	}
	rc, err := zr.Open(name)
	if err != nil {
		return nil, fmt.Errorf("finding %s in zoneinfo.zip: %w", name, err)
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// writeRoot builds the root squashfs and writes it into partition p of the
// image. It returns the size of the filesystem.
func writeRoot(ctx context.Context, cfg *Config, img io.WriterAt, p partition, binDir, kernelDir, work string) (int64, error) {
	tree, err := rootTree(cfg, binDir, kernelDir)
	if err != nil {
		return 0, err
	}
	sqPath := filepath.Join(work, "root.squashfs")
	sqFile, err := os.Create(sqPath)
	if err != nil {
		return 0, fmt.Errorf("creating squashfs: %w", err)
	}
	defer sqFile.Close()
	sq, err := squashfs.Create(file.New(sqFile, false), p.Size(), 0, 0)
	if err != nil {
		return 0, fmt.Errorf("creating squashfs: %w", err)
	}
	ws := sq.Workspace()
	defer os.RemoveAll(ws)
	if err := populate(ws, tree, cfg.epoch().Unix()); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	zero := uint32(0)
	cwd, _ := os.Getwd()
	os.Chdir(ws) // TEMPORARY: go-diskfs readlinks relative to the cwd
	defer os.Chdir(cwd)
	if err := sq.Finalize(squashfs.FinalizeOptions{
		Compression: &squashfs.CompressorGzip{CompressionLevel: 9, WindowSize: 15},
		FileUID:     &zero,
		FileGID:     &zero,
	}); err != nil {
		return 0, fmt.Errorf("writing squashfs: %w", err)
	}

	// Superblock (squashfs 4.0): modification time at byte 8 is the only
	// field that depends on the clock; bytes_used at byte 40.
	var sb [96]byte
	if _, err := sqFile.ReadAt(sb[:], 0); err != nil {
		return 0, fmt.Errorf("reading squashfs superblock: %w", err)
	}
	binary.LittleEndian.PutUint32(sb[8:], uint32(cfg.epoch().Unix()))
	if _, err := sqFile.WriteAt(sb[8:12], 8); err != nil {
		return 0, fmt.Errorf("stamping squashfs time: %w", err)
	}
	used := int64(binary.LittleEndian.Uint64(sb[40:]))
	padded := (used + 4095) / 4096 * 4096
	if padded > p.Size() {
		return 0, fmt.Errorf("root filesystem is %d MiB, more than the %d MiB root slot", padded>>20, p.Size()>>20)
	}
	if _, err := io.Copy(io.NewOffsetWriter(img, p.Offset()), io.NewSectionReader(sqFile, 0, padded)); err != nil {
		return 0, fmt.Errorf("copying squashfs into the image: %w", err)
	}
	return padded, nil
}

// populate writes tree into dir with every timestamp set to epoch.
func populate(dir string, tree map[string]rootEntry, epoch int64) error {
	names := sortedKeys(tree)
	for _, name := range names {
		e := tree[name]
		dst := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", name, err)
		}
		var err error
		switch {
		case e.Mode&fs.ModeDir != 0:
			err = os.MkdirAll(dst, e.Mode.Perm())
		case e.Mode&fs.ModeSymlink != 0:
			err = os.Symlink(e.Target, dst)
		case e.Source != "":
			err = copyFile(dst, e.Source)
		default:
			err = os.WriteFile(dst, e.Data, e.Mode.Perm())
		}
		if err != nil {
			return fmt.Errorf("adding /%s to the root filesystem: %w", name, err)
		}
		if e.Mode&fs.ModeSymlink == 0 {
			if err := os.Chmod(dst, e.Mode.Perm()); err != nil {
				return fmt.Errorf("setting mode of /%s: %w", name, err)
			}
		}
	}
	// Timestamps last: changing a child's times does not touch its
	// directory, so one pass in any order is enough.
	ts := []unix.Timespec{unix.NsecToTimespec(epoch * 1e9), unix.NsecToTimespec(epoch * 1e9)}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("setting time of %s: %w", p, err)
		}
		return nil
	})
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
