package storage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/webdav"
)

// Defaults of Config.
const (
	// DefaultQuota is each account's quota.
	DefaultQuota = 1 << 30
	// DefaultPrefix is where the WebDAV folders are served.
	DefaultPrefix = "/dav"
)

// uploadPrefix starts the names of uploads in progress; they are hidden
// from listings and do not count in the usage until done.
const uploadPrefix = ".cloudbox-upload-"

// usersDir holds one folder per account inside Config.Root.
const usersDir = "users"

// Config configures New. Root is required; the zero value of the others
// works.
type Config struct {
	// Root is the directory of the folders (created, mode 0700).
	Root string
	// Quota is the most bytes one account may store; zero means
	// DefaultQuota, negative means none.
	Quota int64
	// Prefix is the URL path the WebDAV handler is mounted at; zero means
	// DefaultPrefix.
	Prefix string
	// Logger receives events; nil discards them.
	Logger *slog.Logger
	// Now is the clock of the share links; nil means time.Now.
	Now func() time.Time
}

// Folders serves the accounts' folders. It is safe for concurrent use.
type Folders struct {
	// Immutable after New.
	cfg Config
	log *slog.Logger

	// Counters.
	uploads, downloads, quotaRefused, pathRefused atomic.Uint64
	bytesIn, bytesOut                             atomic.Uint64

	// mu guards the following.
	mu    sync.Mutex
	users map[string]*userState
	links *linkStore
}

// userState is what Folders keeps per account.
type userState struct {
	ls webdav.LockSystem
	// pending counts the bytes of the uploads in progress (mu).
	pending int64
}

// New opens the folders in cfg.Root.
func New(cfg Config) (*Folders, error) {
	if cfg.Root == "" {
		return nil, errors.New("storage: Root is required")
	}
	cfg.Prefix = strings.TrimSuffix(cmp.Or(cfg.Prefix, DefaultPrefix), "/")
	if cfg.Quota == 0 {
		cfg.Quota = DefaultQuota
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(filepath.Join(cfg.Root, usersDir), 0o700); err != nil {
		return nil, fmt.Errorf("creating the shared folders: %w", err)
	}
	links, err := openLinks(filepath.Join(cfg.Root, linksFile))
	if err != nil {
		return nil, err
	}
	return &Folders{cfg: cfg, log: cfg.Logger, users: make(map[string]*userState), links: links}, nil
}

// Quota returns each account's quota; negative means none.
func (f *Folders) Quota() int64 { return f.cfg.Quota }

// Prefix returns the URL path of the WebDAV handler.
func (f *Folders) Prefix() string { return f.cfg.Prefix }

// validAccount reports whether name can name a folder (the panel's account
// names are lowercase letters, digits, '.', '_' and '-').
func validAccount(name string) bool {
	if name == "" || len(name) > 64 || name[0] == '.' {
		return false
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (f *Folders) user(name string) *userState {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.users[name]
	if !ok {
		u = &userState{ls: webdav.NewMemLS()}
		f.users[name] = u
	}
	return u
}

// openRoot opens the folder of account, creating it.
func (f *Folders) openRoot(account string) (*os.Root, error) {
	if !validAccount(account) {
		return nil, fmt.Errorf("folder of %q: %w", account, ErrBadAccount)
	}
	dir := filepath.Join(f.cfg.Root, usersDir, account)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the folder of %s: %w", account, err)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening the folder of %s: %w", account, err)
	}
	return r, nil
}

// Usage returns the bytes the account's folder holds (uploads in progress
// left out).
func (f *Folders) Usage(account string) (int64, error) {
	if !validAccount(account) {
		return 0, fmt.Errorf("usage of %q: %w", account, ErrBadAccount)
	}
	return dirUsage(filepath.Join(f.cfg.Root, usersDir, account))
}

func dirUsage(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && !strings.HasPrefix(d.Name(), uploadPrefix) {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("measuring %s: %w", dir, err)
	}
	return n, nil
}

// Accounts returns the accounts that have a folder, with their usage.
func (f *Folders) Accounts() map[string]int64 {
	out := make(map[string]int64)
	ents, _ := os.ReadDir(filepath.Join(f.cfg.Root, usersDir))
	for _, e := range ents {
		if e.IsDir() && validAccount(e.Name()) {
			n, _ := dirUsage(filepath.Join(f.cfg.Root, usersDir, e.Name()))
			out[e.Name()] = n
		}
	}
	return out
}

// Entry is a file or folder as List shows it.
type Entry struct {
	Name     string    `json:"name"`
	Dir      bool      `json:"dir"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified"`
}

// List returns the entries of the folder dir ("/" is the top) of account,
// folders first, by name.
func (f *Folders) List(account, dir string) ([]Entry, error) {
	rel, err := relPath(dir)
	if err != nil {
		return nil, err
	}
	root, err := f.openRoot(account)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	d, err := root.Open(rel)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	defer d.Close()
	fis, err := d.Readdir(-1)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	var out []Entry
	for _, fi := range fis {
		if strings.HasPrefix(fi.Name(), uploadPrefix) || !(fi.IsDir() || fi.Mode().IsRegular()) {
			continue
		}
		out = append(out, Entry{Name: fi.Name(), Dir: fi.IsDir(), Size: fi.Size(), Modified: fi.ModTime().UTC()})
	}
	slices.SortFunc(out, func(a, b Entry) int {
		if a.Dir != b.Dir {
			if a.Dir {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// relPath turns a slash path inside a folder into a name for os.Root,
// refusing ".." segments, backslashes and NUL.
func relPath(p string) (string, error) {
	if hasTraversal(p) {
		return "", fmt.Errorf("%q: %w", p, ErrBadPath)
	}
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		rel = "."
	}
	return rel, nil
}

// hasTraversal reports whether p has a ".." segment, a backslash or NUL.
func hasTraversal(p string) bool {
	if strings.ContainsAny(p, "\\\x00") {
		return true
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == ".." {
			return true
		}
	}
	return false
}

// Stats are the folders' counters.
type Stats struct {
	Uploads      uint64 `json:"uploads"`
	Downloads    uint64 `json:"downloads"`
	BytesIn      uint64 `json:"bytes_in"`
	BytesOut     uint64 `json:"bytes_out"`
	QuotaRefused uint64 `json:"quota_refused"`
	PathRefused  uint64 `json:"path_refused"`
}

// Stats returns the counters.
func (f *Folders) Stats() Stats {
	return Stats{Uploads: f.uploads.Load(), Downloads: f.downloads.Load(), BytesIn: f.bytesIn.Load(),
		BytesOut: f.bytesOut.Load(), QuotaRefused: f.quotaRefused.Load(), PathRefused: f.pathRefused.Load()}
}

// quotaFlag is set in a request's context by an upload that ran over the
// quota.
type quotaFlagKey struct{}

// ServeDAV serves a WebDAV request for account, whose folder is mounted at
// Prefix. The caller has authenticated the request.
func (f *Folders) ServeDAV(w http.ResponseWriter, r *http.Request, account string) {
	if hasTraversal(r.URL.Path) || hasTraversal(r.URL.RawPath) || hasTraversal(destinationPath(r)) {
		f.pathRefused.Add(1)
		http.Error(w, "path traversal refused: a path must not contain \"..\" segments", http.StatusBadRequest)
		return
	}
	root, err := f.openRoot(account)
	if err != nil {
		http.Error(w, "this account has no folder", http.StatusForbidden)
		return
	}
	defer root.Close()
	// Uploads and downloads are large: the server's timeouts are for
	// small requests.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(time.Hour))
	rc.SetWriteDeadline(time.Now().Add(time.Hour))

	u := f.user(account)
	fsys := &userFS{f: f, root: root, account: account, user: u}
	if r.Method == http.MethodPut && r.ContentLength > 0 && f.cfg.Quota >= 0 {
		rel, _ := relPath(strings.TrimPrefix(r.URL.Path, f.cfg.Prefix))
		var old int64
		if fi, err := root.Stat(rel); err == nil && fi.Mode().IsRegular() {
			old = fi.Size()
		}
		used, err := f.Usage(account)
		if err == nil && used-old+r.ContentLength+f.pendingOf(u) > f.cfg.Quota {
			f.quotaRefused.Add(1)
			http.Error(w, fmt.Sprintf("quota exceeded: %d of %d bytes used; delete files or ask an administrator for more space",
				used, f.cfg.Quota), http.StatusInsufficientStorage)
			return
		}
	}
	flag := new(atomic.Bool)
	ctx := context.WithValue(r.Context(), quotaFlagKey{}, flag)
	qw := &quotaWriter{ResponseWriter: w, flag: flag}
	h := &webdav.Handler{Prefix: f.cfg.Prefix, FileSystem: fsys, LockSystem: u.ls, Logger: func(r *http.Request, err error) {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			f.log.Debug("webdav request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		}
	}}
	h.ServeHTTP(qw, r.WithContext(ctx))
	switch {
	case flag.Load():
		f.quotaRefused.Add(1)
	case r.Method == http.MethodPut && qw.status/100 == 2:
		f.uploads.Add(1)
	case r.Method == http.MethodGet && qw.status/100 == 2:
		f.downloads.Add(1)
	}
	f.bytesOut.Add(uint64(qw.written))
}

func (f *Folders) pendingOf(u *userState) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return u.pending
}

// destinationPath returns the Destination header of a COPY or MOVE in
// every form a traversal check must see: as sent, its path after the host,
// and both unescaped, joined by "/".
func destinationPath(r *http.Request) string {
	d := r.Header.Get("Destination")
	if d == "" {
		return ""
	}
	forms := []string{d}
	if _, rest, ok := strings.Cut(d, "://"); ok {
		if _, p, ok := strings.Cut(rest, "/"); ok {
			forms = append(forms, "/"+p)
		}
	}
	for _, f := range forms[:len(forms):len(forms)] {
		if u, err := url.PathUnescape(f); err == nil {
			forms = append(forms, u)
		}
	}
	return strings.Join(forms, "/")
}

// quotaWriter turns webdav's answer to a failed upload into 507 when the
// quota was the reason, and counts.
type quotaWriter struct {
	http.ResponseWriter
	flag    *atomic.Bool
	status  int
	written int64
	quota   bool
}

func (q *quotaWriter) WriteHeader(code int) {
	if q.status != 0 {
		return
	}
	q.status = code
	if q.flag.Load() && code >= 400 {
		q.quota = true
		q.ResponseWriter.Header().Set("Content-Type", "text/plain; charset=utf-8")
		q.ResponseWriter.WriteHeader(http.StatusInsufficientStorage)
		q.ResponseWriter.Write([]byte("quota exceeded; delete files or ask an administrator for more space\n"))
		return
	}
	q.ResponseWriter.WriteHeader(code)
}

func (q *quotaWriter) Write(b []byte) (int, error) {
	if q.status == 0 {
		q.WriteHeader(http.StatusOK)
	}
	if q.quota {
		return len(b), nil
	}
	n, err := q.ResponseWriter.Write(b)
	q.written += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (q *quotaWriter) Unwrap() http.ResponseWriter { return q.ResponseWriter }
