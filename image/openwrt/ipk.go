package openwrt

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
)

// file is one regular file of an archive, by its absolute path.
type file struct {
	path string
	mode int64
	data []byte
}

// tarGz writes files and their parent directories as `tar --format=gnu
// --numeric-owner --sort=name -C DIR .` does: entries named "./…",
// directories first and every level sorted by name, owned by 0:0, all
// timestamps mtime; gzip-compressed without name or time in the header. It
// returns the compressed archive and the size of the uncompressed tar.
func tarGz(files []file, mtime time.Time) ([]byte, int64, error) {
	entries := map[string]*file{"./": nil}
	for i := range files {
		p := path.Clean("/" + files[i].path)
		entries["."+p] = &files[i]
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			entries["."+d+"/"] = nil
		}
	}
	names := make([]string, 0, len(entries))
	for name := range entries {
		names = append(names, name)
	}
	// Component-wise order is a sorted depth-first walk: a directory
	// comes before its contents.
	slices.SortFunc(names, func(a, b string) int {
		return slices.Compare(strings.Split(strings.TrimSuffix(a, "/"), "/"), strings.Split(strings.TrimSuffix(b, "/"), "/"))
	})

	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, name := range names {
		h := &tar.Header{Name: name, ModTime: mtime, Format: tar.FormatGNU}
		if f := entries[name]; f == nil {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		} else {
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, f.mode, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, 0, fmt.Errorf("adding %s: %w", name, err)
		}
		if f := entries[name]; f != nil {
			if _, err := tw.Write(f.data); err != nil {
				return nil, 0, fmt.Errorf("adding %s: %w", name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, 0, fmt.Errorf("closing tar: %w", err)
	}
	gz, err := gzipBytes(raw.Bytes())
	return gz, int64(raw.Len()), err
}

// outerArchive is the .ipk: ipkg-build's `tar -cf - ./debian-binary
// ./data.tar.gz ./control.tar.gz | gzip -n`.
func outerArchive(data, control []byte, mtime time.Time) ([]byte, error) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, m := range []struct {
		name string
		data []byte
	}{
		{"./debian-binary", []byte("2.0\n")},
		{"./data.tar.gz", data},
		{"./control.tar.gz", control},
	} {
		h := &tar.Header{Name: m.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(m.data)), ModTime: mtime, Format: tar.FormatGNU}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("adding %s: %w", m.name, err)
		}
		if _, err := tw.Write(m.data); err != nil {
			return nil, fmt.Errorf("adding %s: %w", m.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing tar: %w", err)
	}
	return gzipBytes(raw.Bytes())
}

// gzipBytes compresses b with a header that has no name and no time, as
// `gzip -n` writes it.
func gzipBytes(b []byte) ([]byte, error) {
	var out bytes.Buffer
	zw, err := gzip.NewWriterLevel(&out, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, fmt.Errorf("compressing: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compressing: %w", err)
	}
	return out.Bytes(), nil
}

func writeFileAtomic(path string, data []byte) error {
	if err := atomicfile.Write(path, data, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
