package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/testenv"
	"golang.org/x/crypto/curve25519"
)

// testNodeHeader names the requesting node in these tests; on a box the
// overlay's source address does (see appliance).
const testNodeHeader = "X-Test-Node"

// node is one box of the test community: a key, a Store behind a real
// HTTP server on loopback, and a Vault.
type node struct {
	id    string
	priv  [32]byte
	pub   [32]byte
	store *Store
	srv   *httptest.Server
	vault *Vault
	up    bool
}

type community struct {
	mu    sync.Mutex
	nodes []*node
	now   time.Time
}

func (c *community) keys(id string) ([32]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.id == id {
			return n.pub, true
		}
	}
	return [32]byte{}, false
}

func (c *community) boxes() []Box {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Box
	for _, n := range c.nodes {
		if n.up {
			out = append(out, Box{ID: n.id, Name: n.id, URL: n.srv.URL, Free: n.store.Free(), OwnerCap: max(n.store.OwnerCap(), 0)})
		}
	}
	return out
}

func (c *community) clock() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *community) setUp(id string, up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.id == id {
			n.up = up
		}
	}
}

// nodeTransport adds the requesting node's ID to each request.
type nodeTransport struct{ id string }

func (t nodeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(testNodeHeader, t.id)
	return http.DefaultTransport.RoundTrip(r)
}

// newCommunity starts count boxes, each offering offer bytes (with no
// cap per owner), with stripes of MinStripe.
func newCommunity(t *testing.T, count int, offer int64, k, n int) *community {
	return newCommunityCap(t, count, offer, -1, k, n)
}

// newCommunityCap is newCommunity with ownerCap for StoreConfig.OwnerCap.
func newCommunityCap(t *testing.T, count int, offer, ownerCap int64, k, n int) *community {
	t.Helper()
	// Registered first, checked last: after the servers closed.
	testenv.CheckGoroutines(t, 10*time.Second)
	c := &community{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	for i := range count {
		nd := &node{id: fmt.Sprintf("node%d", i), up: true}
		rand.Read(nd.priv[:])
		pub, err := curve25519.X25519(nd.priv[:], curve25519.Basepoint)
		if err != nil {
			t.Fatal(err)
		}
		nd.pub = [32]byte(pub)
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		dir := t.TempDir()
		var err error
		nd.store, err = NewStore(StoreConfig{Dir: filepath.Join(dir, "held"), Self: nd.id, Offer: offer, OwnerCap: ownerCap, Keys: c.keys})
		if err != nil {
			t.Fatal(err)
		}
		nd.srv = httptest.NewServer(http.StripPrefix("", nd.store.Handler(func(r *http.Request) (string, bool) {
			id := r.Header.Get(testNodeHeader)
			_, ok := c.keys(id)
			return id, ok
		})))
		t.Cleanup(nd.srv.Close)
		nd.vault, err = New(Config{Dir: filepath.Join(dir, "own"), Self: nd.id, PrivateKey: nd.priv, Keys: c.keys,
			Boxes: c.boxes, K: k, N: n, Stripe: MinStripe, RepairAfter: time.Minute, Now: c.clock,
			Client: &http.Client{Transport: nodeTransport{nd.id}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// TestVaultStoreLoseRepair stores a file k=3 n=5 over eight boxes, loses
// two holders, reads it back, repairs it onto the two spare boxes and
// checks what holders and a wrong key can read.
func TestVaultStoreLoseRepair(t *testing.T) {
	c := newCommunity(t, 8, 16<<20, 3, 5)
	owner := c.nodes[0]
	data := make([]byte, 300<<10+12345)
	rand.Read(data)
	ctx := t.Context()
	info, capa, err := owner.vault.Put(ctx, "photo.jpg", "alice", bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if info.Live != 5 || info.State != StateHealthy {
		t.Fatalf("after Put: live %d state %q, want 5 healthy", info.Live, info.State)
	}
	// Holders see only ciphertext.
	for _, nd := range c.nodes[1:] {
		filepath.Walk(nd.store.cfg.Dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				b, _ := os.ReadFile(p)
				if bytes.Contains(b, data[:64]) {
					t.Errorf("%s holds plaintext in %s", nd.id, p)
				}
			}
			return nil
		})
	}
	// Two holders go away.
	gone := info.Holders[0].Box
	gone2 := info.Holders[3].Box
	c.setUp(gone, false)
	c.setUp(gone2, false)
	if fi := owner.vault.Files()[0]; fi.Live != 3 || fi.State != StateAtRisk {
		t.Fatalf("with two holders gone: live %d state %q, want 3 at risk", fi.Live, fi.State)
	}
	// Another box reads it with the capability (not the owner's index).
	reader := c.nodes[7]
	parsed, err := ParseCap(capa.String())
	if err != nil {
		t.Fatal(err)
	}
	got, err := reader.vault.Get(ctx, parsed, 1<<20)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get on %s = %d bytes, %v; want the %d bytes stored", reader.id, len(got), err, len(data))
	}
	// A holder with a wrong key reads nothing.
	wrong := parsed
	wrong.Key[0] ^= 1
	if _, err := c.nodes[1].vault.Get(ctx, wrong, 1<<20); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Get with a wrong key = %v, want ErrWrongKey", err)
	}
	// Not yet due: nothing moves.
	if n := owner.vault.RepairAll(ctx); n != 0 {
		t.Fatalf("RepairAll before RepairAfter repaired %d files", n)
	}
	// The owner's index as a backup holds it, before the repair.
	oldIndex, err := os.ReadFile(filepath.Join(owner.vault.cfg.Dir, indexFile))
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.now = c.now.Add(2 * time.Minute)
	c.mu.Unlock()
	if n := owner.vault.RepairAll(ctx); n != 1 {
		t.Fatalf("RepairAll repaired %d files, want 1", n)
	}
	fi := owner.vault.Files()[0]
	if fi.Live != 5 || fi.State != StateHealthy {
		t.Fatalf("after repair: %+v, want 5 live", fi)
	}
	for _, h := range fi.Holders {
		if h.Box == gone || h.Box == gone2 || h.Box == owner.id {
			t.Fatalf("after repair holder %d is %s", h.Index, h.Box)
		}
	}
	// A restored owner with the old index learns the new placement.
	restoredDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(restoredDir, indexFile), oldIndex, 0o600); err != nil {
		t.Fatal(err)
	}
	restored, err := New(Config{Dir: restoredDir, Self: owner.id, PrivateKey: owner.priv, Keys: c.keys, Boxes: c.boxes,
		K: 3, N: 5, Now: c.clock, Client: &http.Client{Transport: nodeTransport{owner.id}}})
	if err != nil {
		t.Fatal(err)
	}
	if n := restored.Refresh(ctx); n != 1 || !slices.Equal(holderIDs(restored.Files()[0]), holderIDs(fi)) {
		t.Fatalf("Refresh of the old index = %d, holders %v; want 1 and %v", n, holderIDs(restored.Files()[0]), holderIDs(fi))
	}
	// The holders come back: they are told to drop their stale shares.
	c.setUp(gone, true)
	c.setUp(gone2, true)
	owner.vault.RepairAll(ctx)
	for _, nd := range c.nodes {
		if (nd.id == gone || nd.id == gone2) && nd.store.Stats().Shares != 0 {
			t.Errorf("%s still holds %d stale shares", nd.id, nd.store.Stats().Shares)
		}
	}
	// The file reads back from the new placement, even with one share
	// corrupted on disk: it is detected and left out.
	var corrupted bool
	for _, nd := range c.nodes {
		if nd.id != fi.Holders[1].Box {
			continue
		}
		p := nd.store.sharePath(owner.id, info.ID, 1)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[dataStart+100] ^= 0xff // a shard of the first stripe
		os.WriteFile(p, b, 0o600)
		corrupted = true
	}
	if !corrupted {
		t.Fatal("no holder of share 1")
	}
	got, err = owner.vault.Get(ctx, capa, 1<<20)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get after repair = %d bytes, %v", len(got), err)
	}
	// With two other holders gone the corrupt share is needed: it is
	// refused, not used.
	c.setUp(fi.Holders[2].Box, false)
	c.setUp(fi.Holders[3].Box, false)
	if _, err := owner.vault.Get(ctx, capa, 1<<20); !errors.Is(err, ErrTooFewShares) || !errors.Is(err, ErrCorruptShare) {
		t.Fatalf("Get with a corrupt share needed = %v, want ErrTooFewShares naming ErrCorruptShare", err)
	}
	if st := owner.vault.Stats(); st.Corrupt == 0 || st.Repairs != 1 {
		t.Errorf("stats %+v, want 1 repair and the corrupt share counted", st)
	}
}

// encodeShares encodes ct into the shares of m as the owner uploads them,
// signed by signer; m gets its hashes.
func encodeShares(t *testing.T, m *Manifest, key []byte, plain []byte, sign func(*Manifest) []byte) [][]byte {
	t.Helper()
	cod, err := newCoder(m, key)
	if err != nil {
		t.Fatal(err)
	}
	data := make([][]byte, m.N)
	hashes := make([][]byte, m.N)
	for j := range m.stripes() {
		off := j * m.Stripe
		shards, err := cod.encode(j, plain[off:off+m.stripePlain(j)])
		if err != nil {
			t.Fatal(err)
		}
		for i, sh := range shards {
			sum := sha256.Sum256(sh)
			data[i] = append(data[i], sh...)
			hashes[i] = append(hashes[i], sum[:]...)
		}
	}
	for i := range m.Hashes {
		sum := sha256.Sum256(hashes[i])
		m.Hashes[i] = hex.EncodeToString(sum[:])
	}
	raw := sign(m)
	out := make([][]byte, m.N)
	for i := range out {
		out[i] = slices.Concat(uploadHead(i), data[i], uploadTail(hashes[i], raw))
	}
	return out
}

func holderIDs(f FileInfo) []string {
	var out []string
	for _, h := range f.Holders {
		out = append(out, h.Box)
	}
	return out
}

// TestStoreRefuses sends forged, foreign, corrupt and oversized shares to
// a store.
func TestStoreRefuses(t *testing.T) {
	c := newCommunity(t, 6, 1<<20, 2, 5)
	owner, holder := c.nodes[0], c.nodes[1]
	plain := bytes.Repeat([]byte("x"), 3*MinStripe+1000)
	m := &Manifest{Version: manifestVersion, Owner: owner.id, File: strings.Repeat("ab", 16), Seq: 1, Size: int64(len(plain)),
		Stripe: MinStripe, K: 2, N: 5, Hashes: make([]string, 5), Holders: []string{holder.id, "", "", "", ""}}
	key := make([]byte, 32)
	sign := func(by *node) func(*Manifest) []byte {
		return func(m *Manifest) []byte {
			b, err := m.Sign(by.vault.signer)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	shares := encodeShares(t, m, key, plain, sign(owner))
	put := func(from string, idx int, body []byte, size int64) int {
		u := holder.srv.URL + shareURL(owner.id, m.File, idx) + "?size=" + strconv.FormatInt(size, 10)
		req, _ := http.NewRequest(http.MethodPut, u, bytes.NewReader(body))
		req.Header.Set(testNodeHeader, from)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	good := shares[0]
	tampered := bytes.Clone(good)
	tampered[dataStart+5000] ^= 1 // the second stripe
	badList := bytes.Clone(good)
	badList[dataStart+m.shareDataLen()] ^= 1
	forged := encodeShares(t, m, key, plain, sign(c.nodes[2]))[0] // signed by another box
	short := slices.Concat(good[:len(good)-100])
	size := m.shareSize(0)
	for _, tc := range []struct {
		name string
		from string
		idx  int
		body []byte
		size int64
		want int
	}{
		{"not the owner", c.nodes[2].id, 0, good, size, http.StatusForbidden},
		{"tampered data", owner.id, 0, tampered, size, http.StatusBadRequest},
		{"tampered hash list", owner.id, 0, badList, size, http.StatusBadRequest},
		{"forged manifest", owner.id, 0, forged, size, http.StatusBadRequest},
		{"other holder's index", owner.id, 1, shares[1], size, http.StatusBadRequest},
		{"cut short", owner.id, 0, short, size, http.StatusBadRequest},
		{"garbage", owner.id, 0, []byte("hello"), size, http.StatusBadRequest},
		{"no size", owner.id, 0, good, 0, http.StatusBadRequest},
		{"longer than announced", owner.id, 0, append(bytes.Clone(good), make([]byte, MaxManifestSize+1)...), size, http.StatusBadRequest},
		{"too large", owner.id, 0, make([]byte, 2<<20), 2 << 20, http.StatusInsufficientStorage},
		{"good", owner.id, 0, good, size, http.StatusNoContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := put(tc.from, tc.idx, tc.body, tc.size); got != tc.want {
				t.Errorf("PUT = %d, want %d", got, tc.want)
			}
		})
	}
	if st := holder.store.Stats(); st.Shares != 1 || st.Used != int64(len(good)) {
		t.Errorf("stats %+v, want 1 share of %d bytes", st, len(good))
	}
	if free := holder.store.Free(); free != 1<<20-int64(len(good)) {
		t.Errorf("free %d after the uploads, want %d: a reservation leaked", free, 1<<20-int64(len(good)))
	}
}

// TestPutTooFewBoxes wants a clear error when fewer than N boxes offer
// space.
func TestPutTooFewBoxes(t *testing.T) {
	c := newCommunity(t, 4, 1<<20, 3, 5)
	if _, _, err := c.nodes[0].vault.Put(context.Background(), "f", "a", strings.NewReader("hello"), 5); !errors.Is(err, ErrTooFewBoxes) {
		t.Fatalf("Put = %v, want ErrTooFewBoxes", err)
	}
}
