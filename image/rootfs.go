package image

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cloudbox/cloudbox/image/internal/squashfs"
	"github.com/cloudbox/cloudbox/services/update"
)

// rootEntry is one file, directory or symlink of the root filesystem.
type rootEntry struct {
	Mode   fs.FileMode // permission bits plus fs.ModeDir or fs.ModeSymlink
	Data   []byte      // file contents
	Source string      // or: file to copy contents from
	Target string      // symlink target
}

// ReleaseTrustPath is where an image's release trust file is, relative to
// the root.
const ReleaseTrustPath = "etc/cloudbox/update-trust.json"

// AdminTokenPath is where a test image carries its admin token
// (Config.AdminTokenFile), relative to the root.
const AdminTokenPath = "etc/cloudbox/admin-token"

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
	t["var"] = rootEntry{Mode: fs.ModeSymlink | 0o777, Target: "/perm/var"}
	t["etc/resolv.conf"] = rootEntry{Mode: fs.ModeSymlink | 0o777, Target: "/tmp/resolv.conf"}
	// gokrazy passes the file to sethostname as it is: no newline.
	t["etc/hostname"] = rootEntry{Mode: 0o644, Data: []byte(cfg.Hostname)}
	t["etc/hosts"] = rootEntry{Mode: 0o644, Data: []byte("127.0.0.1 localhost\n::1 localhost\n127.0.1.1 " + cfg.Hostname + "\n")}
	// gokrazy's own HTTP API serves only its Unix socket when no password
	// file exists (none is installed); its port moves off 80 as well, so the
	// panel owns 80/443 whatever happens.
	t["etc/http-port.txt"] = rootEntry{Mode: 0o644, Data: []byte("8079")}
	t["etc/https-port.txt"] = rootEntry{Mode: 0o644, Data: []byte("8443")}
	t["etc/cloudbox-release"] = rootEntry{Mode: 0o644, Data: []byte(fmt.Sprintf("VERSION=%s\nBOARD=%s\nBUILD_TIME=%s\n", cfg.Version, cfg.Board.Name, cfg.buildTimestamp()))}

	if cfg.ReleaseTrust != "" {
		trust, err := update.ReadTrustFile(cfg.ReleaseTrust)
		if err != nil {
			return nil, err
		}
		t["etc/cloudbox"] = dir
		t[ReleaseTrustPath] = rootEntry{Mode: 0o644, Data: trust}
	}

	if cfg.AdminTokenFile != "" {
		token, err := os.ReadFile(cfg.AdminTokenFile)
		if err != nil {
			return nil, fmt.Errorf("reading the admin token file: %w", err)
		}
		if len(strings.TrimSpace(string(token))) < 32 {
			return nil, fmt.Errorf("admin token file %s: the token needs 32 or more characters", cfg.AdminTokenFile)
		}
		t["etc/cloudbox"] = dir
		t[AdminTokenPath] = rootEntry{Mode: 0o600, Data: token}
	}

	ca, err := os.ReadFile(cfg.CABundle)
	if err != nil {
		return nil, fmt.Errorf("reading CA certificates (install ca-certificates or pass a bundle): %w", err)
	}
	t["etc/ssl/ca-bundle.pem"] = rootEntry{Mode: 0o644, Data: ca}

	// Time zones: Go's own database, pinned by the toolchain, not the
	// build host's /usr/share/zoneinfo.
	zi := filepath.Join(cfg.goroot, "lib", "time", "zoneinfo.zip")
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
func writeRoot(cfg *Config, img io.WriterAt, p partition, binDir, kernelDir string) (int64, error) {
	fsys, err := rootImage(cfg, binDir, kernelDir)
	if err != nil {
		return 0, err
	}
	n := int64(len(fsys))
	if n > p.Size() {
		return 0, fmt.Errorf("root filesystem is %d MiB, more than the %d MiB root slot", n>>20, p.Size()>>20)
	}
	if _, err := img.WriteAt(fsys, p.Offset()); err != nil {
		return 0, fmt.Errorf("writing root filesystem into the image: %w", err)
	}
	return n, nil
}

// rootImage builds the root squashfs in memory.
func rootImage(cfg *Config, binDir, kernelDir string) ([]byte, error) {
	tree, err := rootTree(cfg, binDir, kernelDir)
	if err != nil {
		return nil, err
	}
	entries := make([]squashfs.Entry, 0, len(tree))
	for _, name := range sortedKeys(tree) {
		e := tree[name]
		if e.Source != "" {
			if e.Data, err = os.ReadFile(e.Source); err != nil {
				return nil, fmt.Errorf("reading /%s for the root filesystem: %w", name, err)
			}
		}
		entries = append(entries, squashfs.Entry{Path: name, Mode: e.Mode, Data: e.Data, Target: e.Target})
	}
	var buf bytes.Buffer
	if _, err := squashfs.Write(&buf, entries, squashfs.Options{ModTime: cfg.epoch()}); err != nil {
		return nil, fmt.Errorf("writing root squashfs: %w", err)
	}
	return buf.Bytes(), nil
}
