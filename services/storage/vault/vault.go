package vault

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
	"github.com/cloudbox/cloudbox/internal/plainhttp"
	"github.com/cloudbox/cloudbox/internal/xeddsa"
	"golang.org/x/crypto/curve25519"
)

// Defaults of Config.
const (
	DefaultK           = 3
	DefaultN           = 5
	DefaultRepairEvery = 30 * time.Second
	DefaultRepairAfter = time.Minute
)

// Timeouts of the requests to holders.
const (
	shareTimeout    = 2 * time.Minute
	manifestTimeout = 10 * time.Second
	// placeRounds bounds the attempts to place a file's shares.
	placeRounds = 3
)

// indexFile is the owner's list of files, with their keys.
const indexFile = "files.json"

// Box is a box of the community that offers vault space.
type Box struct {
	// ID is the node ID, Name the box's name.
	ID, Name string
	// URL is the base URL of its overlay service, "http://[addr]:port".
	URL string
	// Free is the space it offers still, in bytes.
	Free int64
}

// Client makes HTTP requests; *http.Client implements it.
type Client interface {
	Do(*http.Request) (*http.Response, error)
	CloseIdleConnections()
}

// Config configures New. Dir, Self, PrivateKey, Keys and Boxes are
// required; the zero value of the others works.
type Config struct {
	// Dir holds the owner's index of files (with their keys, mode 0600).
	Dir string
	// Self is this box's node ID and PrivateKey its X25519 node key, which
	// signs the manifests.
	Self       string
	PrivateKey [32]byte
	// Keys returns the members' node keys.
	Keys KeyFunc
	// Boxes returns the boxes that offer vault space now (this one
	// included or not: it never holds its own shares).
	Boxes func() []Box
	// Locate returns the base URL of any member's overlay service, to ask
	// an owner box for its manifest; nil asks the vault boxes only.
	Locate func(nodeID string) (string, bool)
	// Changed, if not nil, returns a channel closed when Boxes may have
	// changed: Run then checks the files at once.
	Changed func() <-chan struct{}
	// Client makes the requests to holders; nil means a client of its
	// own.
	Client Client
	// K and N: any K of N shares rebuild a file. Zero means DefaultK and
	// DefaultN.
	K, N int
	// RepairEvery is how often Run checks the files; zero means
	// DefaultRepairEvery. RepairAfter is how long a holder must be gone
	// from Boxes before its shares are placed elsewhere; zero means
	// DefaultRepairAfter.
	RepairEvery, RepairAfter time.Duration
	// Logger receives events; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Vault stores this box's files on other boxes. It is safe for concurrent
// use.
type Vault struct {
	// Immutable after New.
	cfg    Config
	log    *slog.Logger
	signer *xeddsa.Signer
	client Client

	// mu guards the following.
	mu      sync.Mutex
	files   []*entry
	gone    map[string]time.Time // holder node ID -> first seen missing
	repairs uint64
	corrupt uint64 // shares refused on read
}

// entry is one file of the owner's index.
type entry struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Account  string    `json:"account"`
	Size     int64     `json:"size"`
	Key      []byte    `json:"key"`
	Created  time.Time `json:"created"`
	Manifest []byte    `json:"manifest"`
	// Former are boxes whose shares a repair moved elsewhere: once they
	// are back, they are told to drop the file.
	Former []string `json:"former,omitempty"`

	m *Manifest // parsed Manifest
}

type indexDoc struct {
	Version int      `json:"version"`
	Files   []*entry `json:"files"`
}

// New opens the owner's index in cfg.Dir.
func New(cfg Config) (*Vault, error) {
	if cfg.Dir == "" || cfg.Self == "" || cfg.Keys == nil || cfg.Boxes == nil {
		return nil, errors.New("vault: Dir, Self, Keys and Boxes are required")
	}
	cfg.K, cfg.N = cmp.Or(cfg.K, DefaultK), cmp.Or(cfg.N, DefaultN)
	if cfg.K < 1 || cfg.N <= cfg.K || cfg.N > MaxShares {
		return nil, fmt.Errorf("vault: k=%d n=%d, want 1 <= k < n <= %d", cfg.K, cfg.N, MaxShares)
	}
	cfg.RepairEvery = cmp.Or(cfg.RepairEvery, DefaultRepairEvery)
	cfg.RepairAfter = cmp.Or(cfg.RepairAfter, DefaultRepairAfter)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	signer, err := xeddsa.NewSigner(cfg.PrivateKey[:])
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	v := &Vault{cfg: cfg, log: cfg.Logger, signer: signer, client: cfg.Client, gone: make(map[string]time.Time)}
	if v.client == nil {
		v.client = plainhttp.NewClient(plainhttp.ClientConfig{MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute})
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating vault directory: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(cfg.Dir, indexFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading vault index: %w", err)
	default:
		var doc indexDoc
		if err := json.Unmarshal(b, &doc); err != nil || doc.Version != 1 {
			return nil, fmt.Errorf("vault index %s: not a version 1 index (%v); move it away to start empty", filepath.Join(cfg.Dir, indexFile), err)
		}
		for _, e := range doc.Files {
			if e.m, err = ParseManifest(e.Manifest, v.selfKey); err != nil {
				return nil, fmt.Errorf("vault index: file %s: %w", e.ID, err)
			}
		}
		v.files = doc.Files
	}
	return v, nil
}

// selfKey returns this box's own public key for its own ID: the index is
// read before the roster may list the box.
func (v *Vault) selfKey(id string) ([32]byte, bool) {
	if id != v.cfg.Self {
		return [32]byte{}, false
	}
	pub, err := curve25519.X25519(v.cfg.PrivateKey[:], curve25519.Basepoint)
	if err != nil {
		return [32]byte{}, false
	}
	return [32]byte(pub), true
}

// saveLocked writes the index.
func (v *Vault) saveLocked() error {
	b, err := json.MarshalIndent(indexDoc{Version: 1, Files: v.files}, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding vault index: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(v.cfg.Dir, indexFile), b, 0o600); err != nil {
		return fmt.Errorf("saving vault index: %w", err)
	}
	return nil
}

// HolderInfo is one share of a file as Files shows it.
type HolderInfo struct {
	Index int    `json:"index"`
	Box   string `json:"box"`
	Name  string `json:"name,omitempty"`
	Live  bool   `json:"live"`
}

// Health states of a file.
const (
	StateHealthy  = "healthy"  // every share on a live box
	StateDegraded = "degraded" // more than K shares live, not all
	StateAtRisk   = "at risk"  // K or fewer: one more loss and it cannot be read
)

// FileInfo is a file of the owner as Files shows it.
type FileInfo struct {
	ID      string       `json:"id"`
	Name    string       `json:"name"`
	Account string       `json:"account"`
	Size    int64        `json:"size"`
	K       int          `json:"k"`
	N       int          `json:"n"`
	Seq     uint64       `json:"seq"`
	Live    int          `json:"live"`
	State   string       `json:"state"`
	Holders []HolderInfo `json:"holders"`
	Created time.Time    `json:"created"`
}

// Files returns the owner's files with the health of each, newest first.
func (v *Vault) Files() []FileInfo {
	boxes := v.boxMap()
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]FileInfo, 0, len(v.files))
	for _, e := range slices.Backward(v.files) {
		out = append(out, e.info(boxes))
	}
	return out
}

func (e *entry) info(boxes map[string]Box) FileInfo {
	fi := FileInfo{ID: e.ID, Name: e.Name, Account: e.Account, Size: e.Size, K: e.m.K, N: e.m.N, Seq: e.m.Seq, Created: e.Created}
	for i, h := range e.m.Holders {
		b, live := boxes[h]
		live = live && h != ""
		if live {
			fi.Live++
		}
		fi.Holders = append(fi.Holders, HolderInfo{Index: i, Box: h, Name: b.Name, Live: live})
	}
	fi.State = health(fi.Live, e.m.K, e.m.N)
	return fi
}

func health(live, k, n int) string {
	switch {
	case live >= n:
		return StateHealthy
	case live > k:
		return StateDegraded
	default:
		return StateAtRisk
	}
}

// Stats are the owner's counters.
type Stats struct {
	Files   int    `json:"files"`
	AtRisk  int    `json:"at_risk"`
	Repairs uint64 `json:"repairs"`
	Corrupt uint64 `json:"corrupt_shares"`
}

// Stats returns the owner's counters.
func (v *Vault) Stats() Stats {
	boxes := v.boxMap()
	v.mu.Lock()
	defer v.mu.Unlock()
	s := Stats{Files: len(v.files), Repairs: v.repairs, Corrupt: v.corrupt}
	for _, e := range v.files {
		if e.info(boxes).State == StateAtRisk {
			s.AtRisk++
		}
	}
	return s
}

// Cap returns the capability of the owner's file id.
func (v *Vault) Cap(id string) (Cap, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, e := range v.files {
		if e.ID == id {
			c := Cap{Owner: v.cfg.Self, File: id}
			copy(c.Key[:], e.Key)
			return c, true
		}
	}
	return Cap{}, false
}

// Manifest returns the signed manifest of the owner's file id, for Store's
// Own.
func (v *Vault) Manifest(id string) ([]byte, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, e := range v.files {
		if e.ID == id {
			return e.Manifest, true
		}
	}
	return nil, false
}

func (v *Vault) boxMap() map[string]Box {
	m := make(map[string]Box)
	for _, b := range v.cfg.Boxes() {
		m[b.ID] = b
	}
	return m
}

// Put encrypts data, splits it and places its shares on N boxes. account
// and name are kept in the owner's index only.
func (v *Vault) Put(ctx context.Context, name, account string, data []byte) (FileInfo, Cap, error) {
	if len(data) > MaxFileSize {
		return FileInfo{}, Cap{}, fmt.Errorf("file of %d bytes: %w (at most %d)", len(data), ErrTooLarge, MaxFileSize)
	}
	var idb [16]byte
	rand.Read(idb[:])
	c := Cap{Owner: v.cfg.Self, File: hex.EncodeToString(idb[:])}
	rand.Read(c.Key[:])
	ct, err := seal(c.Key[:], c.Owner, c.File, data)
	if err != nil {
		return FileInfo{}, Cap{}, err
	}
	shards, hashes, err := split(ct, v.cfg.K, v.cfg.N)
	if err != nil {
		return FileInfo{}, Cap{}, err
	}
	m := &Manifest{Version: manifestVersion, Owner: c.Owner, File: c.File, Size: int64(len(ct)), K: v.cfg.K, N: v.cfg.N,
		ShardSize: len(shards[0]), Hashes: hashes, Holders: make([]string, v.cfg.N), Created: v.cfg.Now().UTC()}
	if n := v.candidates(m, nil); n < v.cfg.N {
		return FileInfo{}, Cap{}, fmt.Errorf("storing %q: %w: %d with room for a share of %d bytes, %d needed", name, ErrTooFewBoxes, n, m.ShardSize, v.cfg.N)
	}
	all := make([]int, v.cfg.N)
	for i := range all {
		all[i] = i
	}
	raw, err := v.place(ctx, m, shards, all)
	if err != nil {
		return FileInfo{}, Cap{}, fmt.Errorf("storing %q: %w", name, err)
	}
	if placed := countHeld(m); placed < v.cfg.N {
		v.deleteShares(context.WithoutCancel(ctx), m)
		return FileInfo{}, Cap{}, fmt.Errorf("storing %q: %w: placed %d of %d shares", name, ErrTooFewBoxes, placed, v.cfg.N)
	}
	e := &entry{ID: c.File, Name: name, Account: account, Size: int64(len(data)), Key: c.Key[:], Created: m.Created, Manifest: raw, m: m}
	boxes := v.boxMap()
	v.mu.Lock()
	v.files = append(v.files, e)
	err = v.saveLocked()
	info := e.info(boxes)
	v.mu.Unlock()
	if err != nil {
		return FileInfo{}, Cap{}, err
	}
	v.log.Info("vault file stored", "file", c.File, "bytes", len(data), "k", m.K, "n", m.N, "holders", m.Holders)
	return info, c, nil
}

func countHeld(m *Manifest) int {
	n := 0
	for _, h := range m.Holders {
		if h != "" {
			n++
		}
	}
	return n
}

// candidates counts the boxes that could take a share of m, leaving out
// its holders and the boxes in exclude.
func (v *Vault) candidates(m *Manifest, exclude map[string]bool) int {
	return len(v.pick(m, exclude))
}

// pick returns the boxes that could take a share of m, most free space
// first.
func (v *Vault) pick(m *Manifest, exclude map[string]bool) []Box {
	need := int64(shareHeader + MaxManifestSize + m.ShardSize)
	var out []Box
	for _, b := range v.cfg.Boxes() {
		if b.ID == v.cfg.Self || b.ID == m.Owner || exclude[b.ID] || slices.Contains(m.Holders, b.ID) || b.Free < need {
			continue
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Box) int { return cmp.Or(cmp.Compare(b.Free, a.Free), cmp.Compare(a.ID, b.ID)) })
	return out
}

// place stores the shares in need on boxes that hold none of the file,
// updating m.Holders (and Seq), and returns m signed. Shares that find no
// box keep their holder. It then sends the final manifest to every
// holder.
func (v *Vault) place(ctx context.Context, m *Manifest, shards [][]byte, need []int) ([]byte, error) {
	exclude := make(map[string]bool)
	for round := 0; round < placeRounds && len(need) > 0; round++ {
		cands := v.pick(m, exclude)
		if len(cands) == 0 {
			break
		}
		prev := slices.Clone(m.Holders)
		type job struct {
			idx int
			box Box
		}
		var jobs []job
		for i, idx := range need {
			if i >= len(cands) {
				break
			}
			m.Holders[idx] = cands[i].ID
			jobs = append(jobs, job{idx, cands[i]})
		}
		m.Seq++
		raw, err := m.Sign(v.signer)
		if err != nil {
			return nil, err
		}
		errs := make([]error, len(jobs))
		var wg sync.WaitGroup
		for i, j := range jobs {
			wg.Go(func() {
				sh := Share{Index: j.idx, Manifest: raw, Data: shards[j.idx]}
				body, n := sh.Reader()
				errs[i] = v.doReader(ctx, http.MethodPut, j.box.URL+shareURL(m.Owner, m.File, j.idx), body, n, shareTimeout, nil)
			})
		}
		wg.Wait()
		var left []int
		for i, j := range jobs {
			exclude[j.box.ID] = true
			if errs[i] != nil {
				v.log.Warn("vault share not placed", "file", m.File, "index", j.idx, "box", j.box.Name, "error", errs[i])
				m.Holders[j.idx] = prev[j.idx]
				left = append(left, j.idx)
			}
		}
		need = append(left, need[len(jobs):]...)
	}
	m.Seq++
	raw, err := m.Sign(v.signer)
	if err != nil {
		return nil, err
	}
	v.sendManifest(ctx, m, raw)
	return raw, nil
}

// sendManifest gives raw to every live holder of m (best effort: a holder
// that misses it keeps an older one, which names the same shares).
func (v *Vault) sendManifest(ctx context.Context, m *Manifest, raw []byte) {
	boxes := v.boxMap()
	var wg sync.WaitGroup
	for _, h := range m.Holders {
		b, ok := boxes[h]
		if !ok {
			continue
		}
		wg.Go(func() {
			if err := v.do(ctx, http.MethodPut, b.URL+PathPrefix+"manifest/"+m.Owner+"/"+m.File, raw, manifestTimeout, nil); err != nil {
				v.log.Warn("vault manifest not sent", "file", m.File, "box", b.Name, "error", err)
			}
		})
	}
	wg.Wait()
}

func shareURL(owner, file string, idx int) string {
	return PathPrefix + "share/" + owner + "/" + file + "/" + strconv.Itoa(idx)
}

// do sends a request with body and, when out is not nil, reads at most
// limit bytes of the answer into it.
func (v *Vault) do(ctx context.Context, method, url string, body []byte, timeout time.Duration, out *[]byte) error {
	if body == nil {
		return v.doReader(ctx, method, url, nil, 0, timeout, out)
	}
	return v.doReader(ctx, method, url, bytes.NewReader(body), int64(len(body)), timeout, out)
}

// doReader is do with a body of n bytes from rd.
func (v *Vault) doReader(ctx context.Context, method, url string, rd io.Reader, n int64, timeout time.Duration, out *[]byte) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.ContentLength = n
	resp, err := v.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%s %s: %w", method, url, fs.ErrNotExist)
		}
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(msg))
	}
	if out != nil {
		b, err := io.ReadAll(io.LimitReader(resp.Body, MaxShareSize+1))
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, url, err)
		}
		*out = b
	}
	return nil
}

// deleteShares asks every holder of m to drop the file (best effort).
func (v *Vault) deleteShares(ctx context.Context, m *Manifest) {
	boxes := v.boxMap()
	var wg sync.WaitGroup
	for _, h := range m.Holders {
		if b, ok := boxes[h]; ok {
			wg.Go(func() {
				v.do(ctx, http.MethodDelete, b.URL+PathPrefix+"file/"+m.Owner+"/"+m.File, nil, manifestTimeout, nil)
			})
		}
	}
	wg.Wait()
}

// Delete removes the owner's file id from the vault.
func (v *Vault) Delete(ctx context.Context, id string) error {
	v.mu.Lock()
	i := slices.IndexFunc(v.files, func(e *entry) bool { return e.ID == id })
	if i < 0 {
		v.mu.Unlock()
		return fmt.Errorf("file %s: %w", id, ErrNotFound)
	}
	e := v.files[i]
	v.files = slices.Delete(v.files, i, i+1)
	err := v.saveLocked()
	v.mu.Unlock()
	v.deleteShares(ctx, e.m)
	return err
}

// Get reads the file of c: its manifest from the owner's index, the owner
// box or the vault boxes, then K verified shares, and decrypts it.
func (v *Vault) Get(ctx context.Context, c Cap) ([]byte, error) {
	m, err := v.manifest(ctx, c)
	if err != nil {
		return nil, err
	}
	shards, err := v.fetch(ctx, m, m.K)
	if err != nil {
		return nil, err
	}
	ct, err := rebuild(m, shards, false)
	if err != nil {
		return nil, err
	}
	return open(c.Key[:], m.Owner, m.File, ct)
}

// manifest finds the newest manifest of c's file.
func (v *Vault) manifest(ctx context.Context, c Cap) (*Manifest, error) {
	if c.Owner == v.cfg.Self {
		v.mu.Lock()
		defer v.mu.Unlock()
		for _, e := range v.files {
			if e.ID == c.File {
				return e.m, nil
			}
		}
		return nil, fmt.Errorf("file %s: %w", c.File, ErrNotFound)
	}
	var urls []string
	if v.cfg.Locate != nil {
		if u, ok := v.cfg.Locate(c.Owner); ok {
			urls = append(urls, u)
		}
	}
	for _, b := range v.cfg.Boxes() {
		if !slices.Contains(urls, b.URL) {
			urls = append(urls, b.URL)
		}
	}
	var (
		mu   sync.Mutex
		best *Manifest
		wg   sync.WaitGroup
	)
	for _, u := range urls {
		wg.Go(func() {
			var raw []byte
			if err := v.do(ctx, http.MethodGet, u+PathPrefix+"manifest/"+c.Owner+"/"+c.File, nil, manifestTimeout, &raw); err != nil {
				return
			}
			m, err := ParseManifest(raw, v.cfg.Keys)
			if err != nil || m.Owner != c.Owner || m.File != c.File {
				return
			}
			mu.Lock()
			if best == nil || m.Seq > best.Seq {
				best = m
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if best == nil {
		return nil, fmt.Errorf("file %s of %s: %w: no box has its manifest", c.File, c.Owner, ErrNotFound)
	}
	return best, nil
}

// fetch gets at least want verified shares of m from its holders, the
// live ones first; the others stay nil.
func (v *Vault) fetch(ctx context.Context, m *Manifest, want int) ([][]byte, error) {
	boxes := v.boxMap()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	shards := make([][]byte, m.N)
	var (
		mu   sync.Mutex
		got  int
		wg   sync.WaitGroup
		errs []error
	)
	try := func(live bool) {
		for i, h := range m.Holders {
			b, ok := boxes[h]
			if h == "" || ok != live || shards[i] != nil {
				continue
			}
			if !live {
				u, found := "", false
				if v.cfg.Locate != nil {
					u, found = v.cfg.Locate(h)
				}
				if !found {
					continue
				}
				b = Box{ID: h, URL: u}
			}
			wg.Go(func() {
				var raw []byte
				err := v.do(ctx, http.MethodGet, b.URL+shareURL(m.Owner, m.File, i), nil, shareTimeout, &raw)
				var sh *Share
				if err == nil {
					sh, err = ParseShare(raw)
				}
				if err == nil && sh.Index != i {
					err = fmt.Errorf("share %d: %w: holder sent share %d", i, ErrCorruptShare, sh.Index)
				}
				if err == nil {
					err = sh.Verify(m)
				}
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if errors.Is(err, ErrCorruptShare) || errors.Is(err, ErrMalformed) {
						v.corrupt++
						v.log.Warn("vault share refused", "file", m.File, "index", i, "box", h, "error", err)
					}
					errs = append(errs, err)
					return
				}
				if got < want {
					shards[i] = sh.Data
					got++
				}
				if got >= want {
					cancel()
				}
			})
		}
		wg.Wait()
	}
	try(true)
	if got < want {
		try(false)
	}
	if got < want {
		return nil, fmt.Errorf("file %s: %w: %d of %d needed: %w", m.File, ErrTooFewShares, got, want, errors.Join(errs...))
	}
	return shards, nil
}

// Run checks the files every RepairEvery, and when Boxes changes, until
// ctx is done, and repairs those whose holders are gone. It returns nil.
func (v *Vault) Run(ctx context.Context) error {
	defer v.client.CloseIdleConnections()
	for {
		var changed <-chan struct{}
		if v.cfg.Changed != nil {
			changed = v.cfg.Changed()
		}
		v.RepairAll(ctx)
		// Wake up when the next gone holder becomes due, at the latest
		// after RepairEvery.
		wait, now := v.cfg.RepairEvery, v.cfg.Now()
		v.mu.Lock()
		for _, since := range v.gone {
			if due := since.Add(v.cfg.RepairAfter); due.After(now) {
				wait = min(wait, due.Sub(now)+100*time.Millisecond)
			}
		}
		v.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-changed:
			t.Stop()
			// Let a burst of catalog changes settle.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
	}
}

// RepairAll places the shares of every file whose holder has been gone
// from Boxes for RepairAfter on other boxes. It returns how many files it
// repaired.
func (v *Vault) RepairAll(ctx context.Context) int {
	boxes := v.boxMap()
	if len(boxes) == 0 {
		// The catalog does not run (or nobody offers space): nothing can
		// be told apart, nothing repaired.
		return 0
	}
	now := v.cfg.Now()
	v.mu.Lock()
	files := slices.Clone(v.files)
	for id := range v.gone {
		holds := slices.ContainsFunc(files, func(e *entry) bool { return slices.Contains(e.m.Holders, id) })
		if _, ok := boxes[id]; ok || !holds {
			delete(v.gone, id)
		}
	}
	due := func(h string) bool {
		if _, ok := boxes[h]; ok || h == "" {
			return h == ""
		}
		since, ok := v.gone[h]
		if !ok {
			v.gone[h] = now
			since = now
		}
		return now.Sub(since) >= v.cfg.RepairAfter
	}
	var work []*entry
	for _, e := range files {
		for _, h := range e.m.Holders {
			if due(h) {
				work = append(work, e)
				break
			}
		}
	}
	v.mu.Unlock()
	v.dropFormer(ctx, files, boxes)
	n := 0
	for _, e := range work {
		if ctx.Err() != nil {
			break
		}
		if err := v.repair(ctx, e, boxes); err != nil {
			v.log.Warn("vault repair failed", "file", e.ID, "error", err)
			continue
		}
		n++
	}
	return n
}

// dropFormer tells the former holders of files that are back to drop
// their stale shares.
func (v *Vault) dropFormer(ctx context.Context, files []*entry, boxes map[string]Box) {
	for _, e := range files {
		v.mu.Lock()
		former, holders := slices.Clone(e.Former), slices.Clone(e.m.Holders)
		v.mu.Unlock()
		for _, id := range former {
			b, ok := boxes[id]
			if !ok || slices.Contains(holders, id) {
				continue
			}
			if err := v.do(ctx, http.MethodDelete, b.URL+PathPrefix+"file/"+e.m.Owner+"/"+e.ID, nil, manifestTimeout, nil); err != nil {
				v.log.Warn("vault stale shares not dropped", "file", e.ID, "box", b.Name, "error", err)
				continue
			}
			v.mu.Lock()
			e.Former = slices.DeleteFunc(e.Former, func(f string) bool { return f == id })
			err := v.saveLocked()
			v.mu.Unlock()
			if err != nil {
				v.log.Warn("vault index not saved", "error", err)
			}
		}
	}
}

// repair rebuilds the shares of e that are on gone boxes and places them
// on others.
func (v *Vault) repair(ctx context.Context, e *entry, boxes map[string]Box) error {
	v.mu.Lock()
	m := *e.m
	m.Holders = slices.Clone(e.m.Holders)
	v.mu.Unlock()
	var need []int
	for i, h := range m.Holders {
		if _, ok := boxes[h]; !ok {
			need = append(need, i)
		}
	}
	if len(v.pick(&m, nil)) == 0 {
		return fmt.Errorf("%w: none free for %d shares", ErrTooFewBoxes, len(need))
	}
	shards, err := v.fetch(ctx, &m, m.K)
	if err != nil {
		return err
	}
	if _, err := rebuild(&m, shards, true); err != nil {
		return err
	}
	for _, i := range need {
		if err := (&Share{Index: i, Data: shards[i]}).Verify(&m); err != nil {
			return fmt.Errorf("rebuilt %w", err)
		}
	}
	before := slices.Clone(m.Holders)
	raw, err := v.place(ctx, &m, shards, need)
	if err != nil {
		return err
	}
	moved := 0
	for i := range before {
		if before[i] != m.Holders[i] {
			moved++
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for i := range before {
		if before[i] != m.Holders[i] && before[i] != "" && !slices.Contains(e.Former, before[i]) {
			e.Former = append(e.Former, before[i])
		}
	}
	e.m, e.Manifest = &m, raw
	v.repairs++
	if err := v.saveLocked(); err != nil {
		return err
	}
	v.log.Info("vault file repaired", "file", e.ID, "moved", moved, "holders", m.Holders)
	if moved == 0 {
		return fmt.Errorf("%w: no box took the %d missing shares", ErrTooFewBoxes, len(need))
	}
	return nil
}
