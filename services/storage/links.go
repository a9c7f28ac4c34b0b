package storage

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
)

// linksFile keeps the share links inside Config.Root.
const linksFile = "links.json"

// maxLinks bounds the share links of a box.
const maxLinks = 1000

// Link is a read-only share link to one file of an account's folder.
type Link struct {
	Token   string    `json:"token"`
	Account string    `json:"account"`
	Path    string    `json:"path"`
	Created time.Time `json:"created"`
}

type linksDoc struct {
	Version int    `json:"version"`
	Links   []Link `json:"links"`
}

// linkStore holds the share links; mu guards links and the file.
type linkStore struct {
	file  string
	mu    sync.Mutex
	links []Link
}

func openLinks(file string) (*linkStore, error) {
	s := &linkStore{file: file}
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading share links: %w", err)
	}
	var doc linksDoc
	if err := json.Unmarshal(b, &doc); err != nil || doc.Version != 1 {
		return nil, fmt.Errorf("share links %s: not a version 1 file (%v); move it away to drop the links", file, err)
	}
	s.links = doc.Links
	return s, nil
}

func (s *linkStore) saveLocked() error {
	b, err := json.MarshalIndent(linksDoc{Version: 1, Links: s.links}, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding share links: %w", err)
	}
	return atomicfile.Write(s.file, b, 0o600)
}

// CreateLink makes a share link to the file p of account.
func (f *Folders) CreateLink(account, p string) (Link, error) {
	rel, err := relPath(p)
	if err != nil {
		return Link{}, err
	}
	root, err := f.openRoot(account)
	if err != nil {
		return Link{}, err
	}
	defer root.Close()
	fi, err := root.Stat(rel)
	if err != nil {
		return Link{}, fmt.Errorf("sharing %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		return Link{}, fmt.Errorf("sharing %s: only files can be shared: %w", p, ErrBadPath)
	}
	var tok [18]byte
	rand.Read(tok[:])
	l := Link{Token: base64.RawURLEncoding.EncodeToString(tok[:]), Account: account, Path: "/" + rel, Created: f.cfg.Now().UTC()}
	s := f.links
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.links) >= maxLinks {
		return Link{}, fmt.Errorf("sharing %s: %d share links exist already; delete some", p, maxLinks)
	}
	s.links = append(s.links, l)
	if err := s.saveLocked(); err != nil {
		s.links = s.links[:len(s.links)-1]
		return Link{}, err
	}
	return l, nil
}

// Links returns the share links of account ("" for all).
func (f *Folders) Links(account string) []Link {
	s := f.links
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Link
	for _, l := range s.links {
		if account == "" || l.Account == account {
			out = append(out, l)
		}
	}
	return out
}

// DeleteLink removes the share link token of account.
func (f *Folders) DeleteLink(account, token string) error {
	s := f.links
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.links)
	s.links = slices.DeleteFunc(s.links, func(l Link) bool { return l.Token == token && l.Account == account })
	if len(s.links) == n {
		return ErrNoLink
	}
	return s.saveLocked()
}

// ServeLink answers a request for the share link token: the file, as a
// download; 404 when the link or the file is gone.
func (f *Folders) ServeLink(w http.ResponseWriter, r *http.Request, token string) {
	var l Link
	s := f.links
	s.mu.Lock()
	i := slices.IndexFunc(s.links, func(l Link) bool { return l.Token == token })
	if i >= 0 {
		l = s.links[i]
	}
	s.mu.Unlock()
	if i < 0 {
		http.Error(w, "this share link does not exist (any more); ask whoever shared it for a new one", http.StatusNotFound)
		return
	}
	root, err := f.openRoot(l.Account)
	if err != nil {
		http.Error(w, "the shared file is gone", http.StatusNotFound)
		return
	}
	defer root.Close()
	rel, _ := relPath(l.Path)
	file, err := root.Open(rel)
	if err != nil {
		http.Error(w, "the shared file is gone", http.StatusNotFound)
		return
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.Error(w, "the shared file is gone", http.StatusNotFound)
		return
	}
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Now().Add(time.Hour))
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": path.Base(l.Path)}))
	f.downloads.Add(1)
	http.ServeContent(w, r, path.Base(l.Path), fi.ModTime(), file)
}
