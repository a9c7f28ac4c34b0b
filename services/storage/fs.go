package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync/atomic"

	"golang.org/x/net/webdav"
)

// userFS is one account's folder as a webdav.FileSystem. Every name goes
// through os.Root, which refuses to leave the folder.
type userFS struct {
	f       *Folders
	root    *os.Root
	account string
	user    *userState
}

func (u *userFS) name(name string) (string, error) {
	rel, err := relPath(name)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(path.Base(rel), uploadPrefix) {
		return "", fmt.Errorf("%q: %w", name, ErrBadPath)
	}
	return rel, nil
}

func (u *userFS) Mkdir(ctx context.Context, name string, perm os.FileMode) error {
	rel, err := u.name(name)
	if err != nil {
		return err
	}
	return u.root.Mkdir(rel, 0o700)
}

func (u *userFS) RemoveAll(ctx context.Context, name string) error {
	rel, err := u.name(name)
	if err != nil {
		return err
	}
	if rel == "." {
		return fmt.Errorf("removing the folder itself: %w", ErrBadPath)
	}
	return u.root.RemoveAll(rel)
}

func (u *userFS) Rename(ctx context.Context, oldName, newName string) error {
	o, err := u.name(oldName)
	if err != nil {
		return err
	}
	n, err := u.name(newName)
	if err != nil {
		return err
	}
	if o == "." || n == "." {
		return fmt.Errorf("renaming the folder itself: %w", ErrBadPath)
	}
	return u.root.Rename(o, n)
}

func (u *userFS) Stat(ctx context.Context, name string) (os.FileInfo, error) {
	rel, err := u.name(name)
	if err != nil {
		return nil, err
	}
	return u.root.Stat(rel)
}

func (u *userFS) OpenFile(ctx context.Context, name string, flag int, perm os.FileMode) (webdav.File, error) {
	rel, err := u.name(name)
	if err != nil {
		return nil, err
	}
	if flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		f, err := u.root.OpenFile(rel, flag, 0)
		if err != nil {
			return nil, err
		}
		return &readFile{File: f, fs: u}, nil
	}
	if flag&os.O_TRUNC == 0 || flag&os.O_CREATE == 0 {
		// webdav writes only whole files (PUT, COPY).
		return nil, fmt.Errorf("opening %s for a partial write: %w", name, fs.ErrPermission)
	}
	if fi, err := u.root.Stat(rel); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%s is a folder: %w", name, fs.ErrExist)
	}
	if dir := path.Dir(rel); dir != "." {
		if fi, err := u.root.Stat(dir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("the folder of %s: %w", name, fs.ErrNotExist)
		}
	}
	var budget int64 = -1
	if q := u.f.cfg.Quota; q >= 0 {
		used, err := u.f.Usage(u.account)
		if err != nil {
			return nil, err
		}
		var old int64
		if fi, err := u.root.Stat(rel); err == nil && fi.Mode().IsRegular() {
			old = fi.Size()
		}
		budget = q - used + old
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := path.Join(path.Dir(rel), uploadPrefix+hex.EncodeToString(rnd[:]))
	f, err := u.root.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	flagp, _ := ctx.Value(quotaFlagKey{}).(*atomic.Bool)
	return &uploadFile{File: f, fs: u, tmp: tmp, dst: rel, budget: budget, flag: flagp}, nil
}

// readFile hides uploads in progress from listings and counts bytes read.
type readFile struct {
	*os.File
	fs *userFS
}

func (r *readFile) Readdir(n int) ([]fs.FileInfo, error) {
	fis, err := r.File.Readdir(n)
	out := fis[:0]
	for _, fi := range fis {
		if !strings.HasPrefix(fi.Name(), uploadPrefix) {
			out = append(out, fi)
		}
	}
	return out, err
}

func (r *readFile) Write([]byte) (int, error) { return 0, fs.ErrPermission }

// uploadFile writes an upload to a temporary file that replaces dst on
// Close, unless the upload ran over the quota.
type uploadFile struct {
	*os.File
	fs       *userFS
	tmp, dst string
	budget   int64 // bytes the upload may write; negative means no quota
	written  int64
	over     bool
	flag     *atomic.Bool
}

func (w *uploadFile) Write(b []byte) (int, error) {
	if w.over {
		return 0, ErrQuota
	}
	if w.budget >= 0 {
		f := w.fs.f
		f.mu.Lock()
		// pending holds what this and the account's other uploads
		// wrote so far.
		ok := w.fs.user.pending+int64(len(b)) <= w.budget
		if ok {
			w.fs.user.pending += int64(len(b))
		}
		f.mu.Unlock()
		if !ok {
			w.over = true
			if w.flag != nil {
				w.flag.Store(true)
			}
			return 0, fmt.Errorf("writing %s: %w", w.dst, ErrQuota)
		}
	}
	n, err := w.File.Write(b)
	w.written += int64(n)
	w.fs.f.bytesIn.Add(uint64(n))
	return n, err
}

// ReadFrom hides os.File's, which would bypass Write and its quota.
func (w *uploadFile) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{w}, r)
}

func (w *uploadFile) Close() error {
	if w.budget >= 0 {
		w.fs.f.mu.Lock()
		w.fs.user.pending -= w.written
		w.fs.f.mu.Unlock()
	}
	err := errors.Join(w.File.Sync(), w.File.Close())
	if w.over || err != nil {
		w.fs.root.Remove(w.tmp)
		if w.over {
			return fmt.Errorf("uploading %s: %w", w.dst, ErrQuota)
		}
		return fmt.Errorf("uploading %s: %w", w.dst, err)
	}
	if err := w.fs.root.Rename(w.tmp, w.dst); err != nil {
		w.fs.root.Remove(w.tmp)
		return fmt.Errorf("uploading %s: %w", w.dst, err)
	}
	return nil
}
