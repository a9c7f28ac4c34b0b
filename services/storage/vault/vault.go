package vault

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
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
	// manifestGrace is how long a reader waits for more boxes' manifests
	// once one answered.
	manifestGrace = time.Second
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
	// OwnerCap is the most bytes of one owner's shares it holds; zero
	// for no cap but Free.
	OwnerCap int64
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
	// Stripe is how many bytes of a file are encrypted and coded at once:
	// the owner and readers hold a few stripes per file in memory. Zero
	// means DefaultStripe; else MinStripe to MaxStripe.
	Stripe int
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
	cfg.Stripe = cmp.Or(cfg.Stripe, DefaultStripe)
	if cfg.Stripe < MinStripe || cfg.Stripe > MaxStripe {
		return nil, fmt.Errorf("vault: stripe of %d bytes, want %d to %d", cfg.Stripe, MinStripe, MaxStripe)
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
		var dropped int
		for _, e := range doc.Files {
			if e.m, err = ParseManifest(e.Manifest, v.selfKey); err != nil {
				// A file of an older format (or a damaged entry) cannot
				// be read: keep the old index aside, go on without it.
				v.log.Warn("vault file left out of the index", "file", e.ID, "error", err)
				dropped++
				continue
			}
			v.files = append(v.files, e)
		}
		if dropped > 0 {
			if err := atomicfile.Write(filepath.Join(cfg.Dir, indexFile+".old"), b, 0o600); err != nil {
				return nil, fmt.Errorf("keeping the old vault index: %w", err)
			}
		}
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

// Put encrypts the size bytes of r, splits them and streams the shares
// to N boxes, a stripe at a time: memory stays bounded whatever the size.
// account and name are kept in the owner's index only. A share that does
// not reach its box is left to the repair (Run) when at least K+1 did;
// else Put deletes what it placed and fails.
func (v *Vault) Put(ctx context.Context, name, account string, r io.Reader, size int64) (FileInfo, Cap, error) {
	m := &Manifest{Version: manifestVersion, Owner: v.cfg.Self, Size: size, Stripe: v.cfg.Stripe, K: v.cfg.K, N: v.cfg.N,
		Hashes: make([]string, v.cfg.N), Holders: make([]string, v.cfg.N), Created: v.cfg.Now().UTC()}
	if size < 0 || size > MaxFileSize || m.stripes() > MaxStripes {
		return FileInfo{}, Cap{}, fmt.Errorf("file of %d bytes: %w (at most %d)", size, ErrTooLarge, min(MaxFileSize, int64(MaxStripes)*int64(m.Stripe)))
	}
	var idb [16]byte
	rand.Read(idb[:])
	c := Cap{Owner: v.cfg.Self, File: hex.EncodeToString(idb[:])}
	rand.Read(c.Key[:])
	m.File = c.File
	cands := v.pick(m, nil)
	if len(cands) < v.cfg.N {
		return FileInfo{}, Cap{}, fmt.Errorf("storing %q: %w: %d with room for a share of %d bytes, %d needed", name, ErrTooFewBoxes,
			len(cands), m.shareSize(MaxManifestSize), v.cfg.N)
	}
	for i := range m.Holders {
		m.Holders[i] = cands[i].ID
	}
	cod, err := newCoder(m, c.Key[:])
	if err != nil {
		return FileInfo{}, Cap{}, err
	}
	ups := make([]*upload, v.cfg.N)
	for i := range ups {
		ups[i] = v.startUpload(ctx, m, i, cands[i])
	}
	err = encodeAll(ctx, r, m, cod, ups)
	var raw []byte
	if err == nil {
		for i, u := range ups {
			sum := sha256.Sum256(u.hashes)
			m.Hashes[i] = hex.EncodeToString(sum[:])
		}
		m.Seq = 1
		raw, err = m.Sign(v.signer)
	}
	failed := v.endUploads(m, ups, raw, err, nil)
	for _, idx := range failed {
		m.Holders[idx] = ""
	}
	placed := len(ups) - len(failed)
	if err == nil && placed <= m.K {
		err = fmt.Errorf("%w: placed %d of %d shares, more than %d needed", ErrTooFewBoxes, placed, m.N, m.K)
	}
	if err != nil {
		v.deleteShares(context.WithoutCancel(ctx), m)
		return FileInfo{}, Cap{}, fmt.Errorf("storing %q: %w", name, err)
	}
	if placed < m.N {
		// The holders have the manifest naming them all: tell them which
		// shares are missing; the repair places them.
		m.Seq++
		if raw, err = m.Sign(v.signer); err != nil {
			return FileInfo{}, Cap{}, err
		}
		v.sendManifest(ctx, m, raw)
	}
	e := &entry{ID: c.File, Name: name, Account: account, Size: size, Key: c.Key[:], Created: m.Created, Manifest: raw, m: m}
	boxes := v.boxMap()
	v.mu.Lock()
	v.files = append(v.files, e)
	err = v.saveLocked()
	info := e.info(boxes)
	v.mu.Unlock()
	if err != nil {
		return FileInfo{}, Cap{}, err
	}
	v.log.Info("vault file stored", "file", c.File, "bytes", size, "k", m.K, "n", m.N, "holders", m.Holders)
	return info, c, nil
}

// heldOn returns how many bytes of this box's shares each box holds.
func (v *Vault) heldOn() map[string]int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[string]int64)
	for _, e := range v.files {
		for _, h := range e.m.Holders {
			if h != "" {
				out[h] += e.m.shareSize(len(e.Manifest))
			}
		}
	}
	return out
}

// endUploads ends every upload of m's shares with the signed manifest
// raw, or aborts them all when err is set, or one that check (if not nil)
// refuses; then it waits for the holders and returns the indexes of the
// shares not placed.
func (v *Vault) endUploads(m *Manifest, ups []*upload, raw []byte, err error, check func(*upload) error) []int {
	for _, u := range ups {
		switch {
		case err != nil:
			u.abort(err)
		case check != nil && check(u) != nil:
			u.abort(check(u))
		default:
			u.finish(raw)
		}
	}
	var failed []int
	for _, u := range ups {
		if uerr := u.wait(); uerr != nil {
			if err == nil {
				v.log.Warn("vault share not placed", "file", m.File, "index", u.idx, "box", u.box.Name, "error", uerr)
			}
			failed = append(failed, u.idx)
		}
	}
	return failed
}

// encodeAll reads the file from r a stripe at a time, encodes it and
// sends each share's shard to its upload.
func encodeAll(ctx context.Context, r io.Reader, m *Manifest, cod *coder, ups []*upload) error {
	buf := make([]byte, m.Stripe)
	for j := range m.stripes() {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := m.stripePlain(j)
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return fmt.Errorf("reading the file at %d of %d bytes: %w", int64(j)*int64(m.Stripe), m.Size, err)
		}
		shards, err := cod.encode(j, buf[:n])
		if err != nil {
			return err
		}
		for _, u := range ups {
			u.send(shards[u.idx])
		}
	}
	var one [1]byte
	if _, err := io.ReadFull(r, one[:]); err == nil {
		return fmt.Errorf("the file is longer than its %d bytes", m.Size)
	}
	return nil
}

// pick returns the boxes that could take a share of m, leaving out its
// holders and the boxes in exclude, most free space first.
func (v *Vault) pick(m *Manifest, exclude map[string]bool) []Box {
	need := m.shareSize(MaxManifestSize)
	held := v.heldOn()
	var out []Box
	for _, b := range v.cfg.Boxes() {
		if b.ID == v.cfg.Self || b.ID == m.Owner || exclude[b.ID] || slices.Contains(m.Holders, b.ID) || b.Free < need {
			continue
		}
		if b.OwnerCap > 0 && held[b.ID]+need > b.OwnerCap {
			continue
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Box) int { return cmp.Or(cmp.Compare(b.Free, a.Free), cmp.Compare(a.ID, b.ID)) })
	return out
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
		b, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifestSize+1))
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

// File is a vault file being read: Copy streams its content.
type File struct {
	// Size is the length of the content.
	Size int64

	m     *Manifest
	cod   *coder
	sr    *stripeReader
	next  int    // the next stripe to read
	plain []byte // stripe next-1, not written yet
	buf   []byte
}

// Open finds the newest manifest of c's file (in the owner's index, on the
// owner box or on the vault boxes), opens K of its shares and decrypts the
// first stripe, so that a missing file, too few shares or a wrong key
// show before any content. The caller closes the File.
func (v *Vault) Open(ctx context.Context, c Cap) (*File, error) {
	m, err := v.manifest(ctx, c)
	if err != nil {
		return nil, err
	}
	cod, err := newCoder(m, c.Key[:])
	if err != nil {
		return nil, err
	}
	f := &File{Size: m.Size, m: m, cod: cod, sr: v.newStripeReader(m), buf: make([]byte, 0, m.Stripe+overhead)}
	if err := f.load(ctx); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// load reads and decrypts the next stripe.
func (f *File) load(ctx context.Context) error {
	shards, err := f.sr.stripe(ctx, f.next)
	if err != nil {
		return err
	}
	if f.plain, err = f.cod.decode(f.next, shards, f.buf[:0]); err != nil {
		return err
	}
	f.next++
	return nil
}

// Copy writes the content to w, checking every shard and stripe, and
// returns the bytes written.
func (f *File) Copy(ctx context.Context, w io.Writer) (int64, error) {
	var n int64
	for {
		if f.plain != nil {
			k, err := w.Write(f.plain)
			n += int64(k)
			if err != nil {
				return n, err
			}
			f.plain = nil
		}
		if f.next >= f.m.stripes() {
			return n, nil
		}
		if err := f.load(ctx); err != nil {
			return n, err
		}
	}
}

// Close ends the reads from the holders.
func (f *File) Close() error {
	f.sr.close()
	return nil
}

// Get reads the file of c into memory, refusing one larger than limit
// bytes; Open streams files of any size.
func (v *Vault) Get(ctx context.Context, c Cap, limit int64) ([]byte, error) {
	f, err := v.Open(ctx, c)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if f.Size > limit {
		return nil, fmt.Errorf("file %s of %d bytes: %w (at most %d here)", c.File, f.Size, ErrTooLarge, limit)
	}
	var buf bytes.Buffer
	buf.Grow(int(f.Size))
	if _, err := f.Copy(ctx, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
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
	m, _, err := v.remoteManifest(ctx, c)
	return m, err
}

// remoteManifest asks the owner box and the vault boxes for the newest
// manifest of c's file, and returns it with its signed form.
func (v *Vault) remoteManifest(ctx context.Context, c Cap) (*Manifest, []byte, error) {
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
	// A box that is gone (the owner, often) must not hold the answer up:
	// once one manifest is in, the others have manifestGrace to come.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		m   *Manifest
		raw []byte
	}
	answers := make(chan answer, len(urls))
	for _, u := range urls {
		go func() {
			var raw []byte
			if err := v.do(ctx, http.MethodGet, u+PathPrefix+"manifest/"+c.Owner+"/"+c.File, nil, manifestTimeout, &raw); err != nil {
				answers <- answer{}
				return
			}
			m, err := ParseManifest(raw, v.cfg.Keys)
			if err != nil || m.Owner != c.Owner || m.File != c.File {
				answers <- answer{}
				return
			}
			answers <- answer{m, raw}
		}()
	}
	var (
		best    *Manifest
		bestRaw []byte
		grace   <-chan time.Time
	)
	for pending := len(urls); pending > 0; {
		select {
		case a := <-answers:
			pending--
			if a.m != nil && (best == nil || a.m.Seq > best.Seq) {
				best, bestRaw = a.m, a.raw
				if grace == nil {
					grace = time.After(manifestGrace)
				}
			}
			continue
		case <-grace:
		}
		// Stop the others, and wait for them: no goroutine outlives the
		// call.
		cancel()
		for ; pending > 0; pending-- {
			<-answers
		}
	}
	if best == nil {
		return nil, nil, fmt.Errorf("file %s of %s: %w: no box has its manifest", c.File, c.Owner, ErrNotFound)
	}
	return best, bestRaw, nil
}

// Refresh replaces the manifests of the owner's index by newer ones the
// boxes hold (same shares, a later placement): after a restore, the index
// of the backup may predate repairs. It returns how many it replaced.
func (v *Vault) Refresh(ctx context.Context) int {
	v.mu.Lock()
	files := slices.Clone(v.files)
	v.mu.Unlock()
	n := 0
	for _, e := range files {
		c := Cap{Owner: v.cfg.Self, File: e.ID}
		m, raw, err := v.remoteManifest(ctx, c)
		v.mu.Lock()
		if err == nil && m.Seq > e.m.Seq && sameContent(m, e.m) {
			e.m, e.Manifest = m, raw
			n++
		}
		v.mu.Unlock()
	}
	if n > 0 {
		v.mu.Lock()
		err := v.saveLocked()
		v.mu.Unlock()
		if err != nil {
			v.log.Warn("vault index not saved", "error", err)
		}
		v.log.Info("vault manifests refreshed", "files", n)
	}
	return n
}

// Adopt adds the file of c, which this box owns, to the owner's index
// from the newest manifest the boxes hold: after the box's state was
// restored from a backup in the vault, the backup itself, which its own
// index could not list. A file already in the index is left as it is.
func (v *Vault) Adopt(ctx context.Context, c Cap, name, account string) (FileInfo, error) {
	if c.Owner != v.cfg.Self {
		return FileInfo{}, fmt.Errorf("adopting file %s: owned by %s, not this box", c.File, c.Owner)
	}
	boxes := v.boxMap()
	v.mu.Lock()
	for _, e := range v.files {
		if e.ID == c.File {
			info := e.info(boxes)
			v.mu.Unlock()
			return info, nil
		}
	}
	v.mu.Unlock()
	m, raw, err := v.remoteManifest(ctx, c)
	if err != nil {
		return FileInfo{}, fmt.Errorf("adopting file %s: %w", c.File, err)
	}
	e := &entry{ID: c.File, Name: name, Account: account, Size: m.Size, Key: slices.Clone(c.Key[:]), Created: m.Created,
		Manifest: raw, m: m}
	v.mu.Lock()
	defer v.mu.Unlock()
	if slices.ContainsFunc(v.files, func(o *entry) bool { return o.ID == c.File }) {
		return FileInfo{}, fmt.Errorf("adopting file %s: adopted twice at once", c.File)
	}
	v.files = append(v.files, e)
	slices.SortStableFunc(v.files, func(a, b *entry) int { return a.Created.Compare(b.Created) })
	if err := v.saveLocked(); err != nil {
		return FileInfo{}, err
	}
	v.log.Info("vault file adopted", "file", c.File, "seq", m.Seq)
	return e.info(boxes), nil
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

// repair rebuilds the shares of e that are on gone boxes and streams
// them to others, a stripe at a time.
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
	cands := v.pick(&m, nil)
	if len(cands) == 0 {
		return fmt.Errorf("%w: none free for %d shares", ErrTooFewBoxes, len(need))
	}
	next := m
	next.Holders = slices.Clone(m.Holders)
	need = need[:min(len(need), len(cands))]
	for k, idx := range need {
		next.Holders[idx] = cands[k].ID
	}
	next.Seq = m.Seq + 1
	raw, err := next.Sign(v.signer)
	if err != nil {
		return err
	}
	cod, err := newCoder(&m, nil)
	if err != nil {
		return err
	}
	sr := v.newStripeReader(&m)
	defer sr.close()
	ups := make([]*upload, len(need))
	for k, idx := range need {
		ups[k] = v.startUpload(ctx, &next, idx, cands[k])
	}
	err = nil
	for j := 0; j < m.stripes() && err == nil; j++ {
		var shards [][]byte
		if shards, err = sr.stripe(ctx, j); err != nil {
			break
		}
		if err = cod.reconstruct(shards, true); err != nil {
			break
		}
		for _, u := range ups {
			// The shards read are reused for the next stripe.
			u.send(bytes.Clone(shards[u.idx]))
		}
	}
	failed := v.endUploads(&m, ups, raw, err, func(u *upload) error { return checkHashList(&m, u.idx, u.hashes) })
	for _, idx := range failed {
		next.Holders[idx] = m.Holders[idx]
	}
	moved := len(ups) - len(failed)
	if err != nil {
		return err
	}
	if moved == 0 {
		return fmt.Errorf("%w: no box took the %d missing shares", ErrTooFewBoxes, len(need))
	}
	next.Seq++
	if raw, err = next.Sign(v.signer); err != nil {
		return err
	}
	v.sendManifest(ctx, &next, raw)
	v.mu.Lock()
	defer v.mu.Unlock()
	for i := range m.Holders {
		if m.Holders[i] != next.Holders[i] && m.Holders[i] != "" && !slices.Contains(e.Former, m.Holders[i]) {
			e.Former = append(e.Former, m.Holders[i])
		}
	}
	e.m, e.Manifest = &next, raw
	v.repairs++
	if err := v.saveLocked(); err != nil {
		return err
	}
	v.log.Info("vault file repaired", "file", e.ID, "moved", moved, "holders", next.Holders)
	return nil
}
