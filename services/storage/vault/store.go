package vault

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
)

// PathPrefix is where a Store's Handler serves, on the overlay.
const PathPrefix = "/vault/v1/"

// StoreConfig configures NewStore.
type StoreConfig struct {
	// Dir holds the shares; created if missing. Required.
	Dir string
	// Self is this box's node ID: a share is accepted only when its
	// manifest names this box as its holder. Required.
	Self string
	// Offer is how many bytes of shares this box holds at most for
	// others; zero offers none (every share is refused).
	Offer int64
	// OwnerCap is how many bytes of one owner box's shares this box holds
	// at most, so that no box fills the offer alone; zero means Offer
	// divided by DefaultOwnerShare, negative no cap but Offer.
	OwnerCap int64
	// Keys returns the members' node keys, to check manifests. Required.
	Keys KeyFunc
	// Own, if not nil, returns this box's own signed manifest of a file
	// (Vault.Manifest), served to readers with the capability.
	Own func(file string) ([]byte, bool)
	// Logger receives the store's events; nil discards them.
	Logger *slog.Logger
}

// DefaultOwnerShare divides the offer into the default OwnerCap: one
// owner box may use a quarter of it.
const DefaultOwnerShare = 4

// uploadPrefix starts the names of shares being received.
const uploadPrefix = ".upload-"

// Store holds other boxes' shares within the space offered. It is safe
// for concurrent use.
type Store struct {
	// Immutable after NewStore.
	cfg      StoreConfig
	log      *slog.Logger
	ownerCap int64 // resolved OwnerCap; negative for none

	// mu guards the following and the files in Dir.
	mu sync.Mutex
	// used counts the shares stored, reserved the uploads under way, by
	// owner in byOwner.
	used, reserved int64
	byOwner        map[string]int64
	// counters
	stored, served, refused uint64
}

// NewStore opens the store in cfg.Dir and counts the space used.
func NewStore(cfg StoreConfig) (*Store, error) {
	if cfg.Dir == "" || cfg.Self == "" || cfg.Keys == nil {
		return nil, errors.New("vault store: Dir, Self and Keys are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating vault store: %w", err)
	}
	s := &Store{cfg: cfg, log: cfg.Logger, byOwner: make(map[string]int64), ownerCap: cfg.OwnerCap}
	if s.ownerCap == 0 {
		s.ownerCap = cfg.Offer / DefaultOwnerShare
	}
	err := filepath.WalkDir(cfg.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case strings.HasPrefix(d.Name(), uploadPrefix):
			// An upload cut short by a stop.
			os.Remove(p)
		case strings.HasSuffix(p, ".share"):
			if fi, err := d.Info(); err == nil {
				s.used += fi.Size()
				s.byOwner[filepath.Base(filepath.Dir(p))] += fi.Size()
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading vault store: %w", err)
	}
	return s, nil
}

// StoreStats are what a Store shows.
type StoreStats struct {
	Offer int64 `json:"offer"`
	// OwnerCap is the most one owner's shares may use; -1 for none.
	OwnerCap int64 `json:"owner_cap"`
	Used     int64 `json:"used"`
	Shares   int   `json:"shares"`
	// Owners counts the boxes whose shares are held.
	Owners  int    `json:"owners"`
	Stored  uint64 `json:"stored"`
	Served  uint64 `json:"served"`
	Refused uint64 `json:"refused"`
}

// Free returns the bytes still offered.
func (s *Store) Free() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(s.cfg.Offer-s.used-s.reserved, 0)
}

// OwnerCap returns the most bytes of one owner's shares this box holds;
// -1 for no cap but the offer.
func (s *Store) OwnerCap() int64 { return max(s.ownerCap, -1) }

// byOwnerOf returns the bytes of owner's shares held or being received.
func (s *Store) byOwnerOf(owner string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byOwner[owner]
}

// reserve sets n bytes aside for an upload of owner's, or says why it
// cannot.
func (s *Store) reserve(owner string, n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if free := s.cfg.Offer - s.used - s.reserved; n > free {
		return fmt.Errorf("share of up to %d bytes, %d free of %d offered: %w", n, max(free, 0), s.cfg.Offer, ErrNoSpace)
	}
	if s.ownerCap >= 0 && s.byOwner[owner]+n > s.ownerCap {
		return fmt.Errorf("share of up to %d bytes, box %s has %d of the %d bytes one box may use here: %w", n, owner,
			s.byOwner[owner], s.ownerCap, ErrOwnerFull)
	}
	s.reserved += n
	s.byOwner[owner] += n
	return nil
}

// releaseLocked undoes reserve.
func (s *Store) releaseLocked(owner string, n int64) {
	s.reserved -= n
	s.addLocked(owner, -n)
}

// addLocked counts n more bytes of owner's (fewer when negative).
func (s *Store) addLocked(owner string, n int64) {
	if s.byOwner[owner] += n; s.byOwner[owner] <= 0 {
		delete(s.byOwner, owner)
	}
}

// Stats returns the store's space and counters.
func (s *Store) Stats() StoreStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := StoreStats{Offer: s.cfg.Offer, OwnerCap: max(s.ownerCap, -1), Used: s.used, Stored: s.stored, Served: s.served, Refused: s.refused}
	owners, _ := os.ReadDir(s.cfg.Dir)
	for _, o := range owners {
		files, _ := os.ReadDir(filepath.Join(s.cfg.Dir, o.Name()))
		n := 0
		for _, f := range files {
			if strings.HasSuffix(f.Name(), ".share") {
				n++
			}
		}
		if n > 0 {
			st.Owners++
			st.Shares += n
		}
	}
	return st
}

// PeerFunc names the member a request comes from (by its overlay source
// address); false when it is none.
type PeerFunc func(r *http.Request) (nodeID string, ok bool)

// Handler serves the store to the members: under PathPrefix,
//
//	PUT    share/<owner>/<file>/<index>?size=N  a share of N bytes
//	                                     and a manifest (owner only)
//	GET    share/<owner>/<file>/<index>?offset=O  a share, its data
//	                                     from O on (any member)
//	PUT    manifest/<owner>/<file>       a newer manifest (owner only)
//	GET    manifest/<owner>/<file>       the newest manifest held
//	DELETE file/<owner>/<file>           every share of a file (owner only)
func (s *Store) Handler(peer PeerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		from, ok := peer(r)
		if !ok {
			http.Error(w, "the vault serves members over the overlay only", http.StatusForbidden)
			return
		}
		// Shares are large: the server's timeouts are for small requests.
		rc := http.NewResponseController(w)
		rc.SetReadDeadline(time.Now().Add(5 * time.Minute))
		rc.SetWriteDeadline(time.Now().Add(5 * time.Minute))
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, PathPrefix), "/")
		if len(parts) < 3 || !validID(parts[1]) || !validFileID(parts[2]) {
			http.Error(w, "no such vault path", http.StatusNotFound)
			return
		}
		kind, owner, file := parts[0], parts[1], parts[2]
		idx := -1
		if kind == "share" {
			if len(parts) != 4 {
				http.Error(w, "no such vault path", http.StatusNotFound)
				return
			}
			n, err := strconv.Atoi(parts[3])
			if err != nil || n < 0 || n >= MaxShares || parts[3] != strconv.Itoa(n) {
				http.Error(w, "bad share index", http.StatusNotFound)
				return
			}
			idx = n
		} else if len(parts) != 3 {
			http.Error(w, "no such vault path", http.StatusNotFound)
			return
		}
		write := r.Method == http.MethodPut || r.Method == http.MethodDelete
		if write && from != owner {
			s.count(&s.refused)
			http.Error(w, "only the owner box may change its files", http.StatusForbidden)
			return
		}
		var err error
		switch {
		case kind == "share" && r.Method == http.MethodPut:
			err = s.putShare(w, r, owner, file, idx)
		case kind == "share" && r.Method == http.MethodGet:
			err = s.serveShare(w, r, s.sharePath(owner, file, idx))
		case kind == "manifest" && r.Method == http.MethodPut:
			err = s.putManifest(r, owner, file)
		case kind == "manifest" && r.Method == http.MethodGet && owner == s.cfg.Self && s.cfg.Own != nil:
			b, ok := s.cfg.Own(file)
			if !ok {
				err = fs.ErrNotExist
				break
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write(b)
		case kind == "manifest" && r.Method == http.MethodGet:
			err = s.serveFile(w, s.manifestPath(owner, file))
		case kind == "file" && r.Method == http.MethodDelete:
			err = s.deleteFile(owner, file)
		default:
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		switch {
		case err == nil:
			if write {
				w.WriteHeader(http.StatusNoContent)
			}
		case errors.Is(err, fs.ErrNotExist):
			http.Error(w, "not held here", http.StatusNotFound)
		case errors.Is(err, ErrNoSpace), errors.Is(err, ErrOwnerFull):
			s.count(&s.refused)
			http.Error(w, err.Error(), http.StatusInsufficientStorage)
		case errors.Is(err, ErrMalformed), errors.Is(err, ErrCorruptShare), errors.Is(err, ErrBadSignature),
			errors.Is(err, ErrUnknownOwner):
			s.count(&s.refused)
			s.log.Warn("vault share refused", "from", from, "file", file, "error", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
		default:
			s.log.Error("vault store failed", "file", file, "error", err)
			http.Error(w, "vault store failed", http.StatusInternalServerError)
		}
	})
}

func (s *Store) count(c *uint64) {
	s.mu.Lock()
	*c++
	s.mu.Unlock()
}

func (s *Store) sharePath(owner, file string, idx int) string {
	return filepath.Join(s.cfg.Dir, owner, file+"."+strconv.Itoa(idx)+".share")
}

func (s *Store) manifestPath(owner, file string) string {
	return filepath.Join(s.cfg.Dir, owner, file+".manifest")
}

// putShare receives a share into a temporary file, checks it (the
// manifest must be the owner's and name this box as the holder of the
// index; every shard must match its hash) and keeps it. The space the
// owner announces (?size=) is set aside first, so that a share over the
// offer or the owner's cap is refused before it is sent.
func (s *Store) putShare(w http.ResponseWriter, r *http.Request, owner, file string, idx int) error {
	hint, err := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
	if err != nil || hint < uploadHeader+uploadFooter || hint > MaxFileSize {
		return fmt.Errorf("share without its size (?size=): %w", ErrMalformed)
	}
	limit := hint + MaxManifestSize
	if err := s.reserve(owner, limit); err != nil {
		return err
	}
	// A large share streams for long: the deadline grows with it.
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(streamTimeout(hint)))
	defer func() {
		s.mu.Lock()
		s.releaseLocked(owner, limit)
		s.mu.Unlock()
	}()
	dir := filepath.Join(s.cfg.Dir, owner)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("storing share: %w", err)
	}
	tmp, err := os.CreateTemp(dir, uploadPrefix+"*")
	if err != nil {
		return fmt.Errorf("storing share: %w", err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	n, err := io.Copy(tmp, http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return fmt.Errorf("share longer than the %d bytes announced: %w", hint, ErrMalformed)
		}
		return fmt.Errorf("receiving share: %w", err)
	}
	h, err := parseHeld(tmp, n, s.cfg.Keys)
	if err != nil {
		return err
	}
	m := h.Manifest
	if m.Owner != owner || m.File != file || h.Index != idx || m.Holders[idx] != s.cfg.Self {
		return fmt.Errorf("share %d of %s/%s: %w: the manifest names file %s/%s and holder %q", idx, owner, file,
			ErrMalformed, m.Owner, m.File, m.Holders[idx])
	}
	if err := h.verifyData(tmp); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("storing share: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	path := s.sharePath(owner, file, idx)
	var old int64
	if fi, err := os.Stat(path); err == nil {
		old = fi.Size()
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("storing share: %w", err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return fmt.Errorf("storing share: %w", err)
	}
	s.used += n - old
	s.addLocked(owner, n-old)
	s.stored++
	if err := s.keepNewestLocked(owner, file, m, h.Raw); err != nil {
		return err
	}
	s.log.Debug("vault share stored", "owner", owner, "file", file, "index", idx, "bytes", n)
	return nil
}

// keepNewestLocked saves raw as the file's manifest unless a newer one is
// saved already.
func (s *Store) keepNewestLocked(owner, file string, m *Manifest, raw []byte) error {
	path := s.manifestPath(owner, file)
	if b, err := os.ReadFile(path); err == nil {
		if old, err := ParseManifest(b, s.cfg.Keys); err == nil && old.Seq >= m.Seq {
			return nil
		}
	}
	if err := atomicfile.Write(path, raw, 0o600); err != nil {
		return fmt.Errorf("storing manifest: %w", err)
	}
	return nil
}

// putManifest takes a newer manifest of a file this box holds shares of,
// and drops the shares it no longer names this box for.
func (s *Store) putManifest(r *http.Request, owner, file string) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxManifestSize+1))
	if err != nil {
		return fmt.Errorf("reading manifest: %w", err)
	}
	m, err := ParseManifest(body, s.cfg.Keys)
	if err != nil {
		return err
	}
	if m.Owner != owner || m.File != file {
		return fmt.Errorf("manifest of %s/%s sent for %s/%s: %w", m.Owner, m.File, owner, file, ErrMalformed)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	held := false
	for i := range MaxShares {
		path := s.sharePath(owner, file, i)
		fi, err := os.Stat(path)
		if err != nil {
			continue
		}
		if i >= m.N || m.Holders[i] != s.cfg.Self {
			if os.Remove(path) == nil {
				s.used -= fi.Size()
				s.addLocked(owner, -fi.Size())
			}
			continue
		}
		held = true
	}
	if !held {
		os.Remove(s.manifestPath(owner, file))
		return fmt.Errorf("manifest of %s/%s: %w", owner, file, fs.ErrNotExist)
	}
	return s.keepNewestLocked(owner, file, m, body)
}

func (s *Store) deleteFile(owner, file string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range MaxShares {
		path := s.sharePath(owner, file, i)
		if fi, err := os.Stat(path); err == nil && os.Remove(path) == nil {
			s.used -= fi.Size()
			s.addLocked(owner, -fi.Size())
		}
	}
	if err := os.Remove(s.manifestPath(owner, file)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting manifest: %w", err)
	}
	return nil
}

// openSized opens path and returns its size.
func openSized(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

func (s *Store) serveFile(w http.ResponseWriter, path string) error {
	f, size, err := openSized(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	io.Copy(w, f)
	s.count(&s.served)
	return nil
}

// serveShare serves a stored share as readers take it: its hash list
// first, then its data from ?offset= on.
func (s *Store) serveShare(w http.ResponseWriter, r *http.Request, path string) error {
	f, size, err := openSized(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h, err := parseHeld(f, size, nil)
	if err != nil {
		return fmt.Errorf("stored share %s: %w", path, err)
	}
	data := h.Manifest.shareDataLen()
	off := int64(0)
	if q := r.URL.Query().Get("offset"); q != "" {
		if off, err = strconv.ParseInt(q, 10, 64); err != nil || off < 0 || off > data {
			http.Error(w, fmt.Sprintf("offset %q out of the share's %d bytes of data", q, data), http.StatusRequestedRangeNotSatisfiable)
			return nil
		}
	}
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(streamTimeout(data - off)))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(uploadHeader+int64(len(h.Hashes))+data-off, 10))
	w.Write(uploadHead(h.Index))
	w.Write(h.Hashes)
	io.Copy(w, io.NewSectionReader(f, dataStart+off, data-off))
	s.count(&s.served)
	return nil
}
