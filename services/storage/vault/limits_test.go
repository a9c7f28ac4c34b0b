package vault

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestVaultStreamsBoundedMemory stores and reads back a 256 MiB file
// (k=3, n=5, stripes of 1 MiB) through five stores on loopback, and checks
// that the heap in use never grows by more than 48 MiB: the file streams
// a stripe at a time, it is never held whole.
func TestVaultStreamsBoundedMemory(t *testing.T) {
	const size = 256 << 20
	const budget = 48 << 20
	c := newCommunity(t, 6, 1<<30, 3, 5)
	owner := c.nodes[0]
	v, err := New(Config{Dir: filepath.Join(t.TempDir(), "own"), Self: owner.id, PrivateKey: owner.priv, Keys: c.keys,
		Boxes: c.boxes, K: 3, N: 5, Now: c.clock, Client: &http.Client{Transport: nodeTransport{owner.id}}})
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var (
		peak uint64
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	src := io.LimitReader(rand.NewChaCha8([32]byte{1}), size)
	in := sha256.New()
	start := time.Now()
	info, capa, err := v.Put(t.Context(), "big.bin", "alice", io.TeeReader(src, in), size)
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	stored := time.Since(start)
	if info.Live != 5 || info.Size != size {
		t.Errorf("stored %+v, want 5 live shares of a %d-byte file", info, size)
	}
	start = time.Now()
	f, err := c.nodes[5].vault.Open(t.Context(), capa)
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	out := sha256.New()
	n, err := f.Copy(t.Context(), out)
	f.Close()
	read := time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil || n != size || !bytes.Equal(in.Sum(nil), out.Sum(nil)) {
		t.Fatalf("read back %d bytes, %v; want the %d stored, same SHA-256", n, err, size)
	}
	grew := int64(peak) - int64(base.HeapInuse)
	t.Logf("256 MiB stored in %v, read in %v; heap in use grew by %.1f MiB at most", stored.Round(time.Millisecond),
		read.Round(time.Millisecond), float64(grew)/(1<<20))
	if grew > budget {
		t.Errorf("heap in use grew by %d MiB, over the budget of %d MiB", grew>>20, budget>>20)
	}
}

// TestStoreOwnerCap: a holder lets one owner use a part of its offer
// only, refuses more with a clear error, and still takes other owners'
// shares; the owner leaves full boxes out when it places shares.
func TestStoreOwnerCap(t *testing.T) {
	const offer, ownerCap = 1 << 20, 200 << 10
	c := newCommunityCap(t, 6, offer, ownerCap, 3, 5)
	owner := c.nodes[0]
	data := bytes.Repeat([]byte("0123456789abcdef"), 10<<10) // 160 KiB: shares of about 54 KiB
	put := func(by *node) error {
		_, _, err := by.vault.Put(t.Context(), "f", "alice", bytes.NewReader(data), int64(len(data)))
		return err
	}
	// A share costs up to 54 KiB + MaxManifestSize as the owner reckons:
	// three files fit under 200 KiB per box, the fourth does not.
	for i := range 3 {
		if err := put(owner); err != nil {
			t.Fatalf("file %d: %v", i, err)
		}
	}
	if err := put(owner); !errors.Is(err, ErrTooFewBoxes) {
		t.Fatalf("Put over the owner cap = %v, want ErrTooFewBoxes", err)
	}
	// Another owner still finds room on the same boxes.
	if err := put(c.nodes[1]); err != nil {
		t.Fatalf("Put by another owner: %v", err)
	}
	// A holder refuses the capped owner's share itself, before the
	// body is sent, with a message that says why.
	var holder *node
	for _, nd := range c.nodes[1:] {
		if nd.store.byOwnerOf(owner.id) > 0 {
			holder = nd
			break
		}
	}
	if holder == nil {
		t.Fatal("no box holds the owner's shares")
	}
	u := holder.srv.URL + shareURL(owner.id, strings.Repeat("cd", 16), 0) + "?size=" + strconv.Itoa(200<<10)
	req, _ := http.NewRequest(http.MethodPut, u, bytes.NewReader(make([]byte, 10)))
	req.Header.Set(testNodeHeader, owner.id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInsufficientStorage || !strings.Contains(string(msg), "one box may use") {
		t.Fatalf("PUT over the owner cap = %d %q, want 507 naming the cap", resp.StatusCode, msg)
	}
	if st := holder.store.Stats(); st.OwnerCap != ownerCap || st.Refused == 0 {
		t.Errorf("holder stats %+v, want the owner cap %d and the refusal counted", st, ownerCap)
	}
}

// TestPutDegradedThenRepaired: a holder that fails while a file streams
// to it does not fail the file when K+1 shares are placed; the missing
// share is placed by the next repair, and the file reads back.
func TestPutDegradedThenRepaired(t *testing.T) {
	c := newCommunity(t, 7, 1<<20, 3, 5)
	owner := c.nodes[0]
	// node1 is listed with the most space but does not answer.
	c.nodes[1].srv.Close()
	data := bytes.Repeat([]byte("degraded but stored "), 5000)
	info, capa, err := owner.vault.Put(t.Context(), "f", "alice", bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("Put with one holder failing: %v", err)
	}
	if info.Live != 4 || info.State != StateDegraded || info.Holders[0].Box != "" {
		t.Fatalf("stored %+v, want 4 live shares, degraded, share 0 without a holder", info)
	}
	c.setUp(c.nodes[1].id, false)
	if n := owner.vault.RepairAll(t.Context()); n != 1 {
		t.Fatalf("RepairAll repaired %d files, want 1", n)
	}
	fi := owner.vault.Files()[0]
	if fi.Live != 5 || fi.Holders[0].Box != c.nodes[6].id {
		t.Fatalf("after the repair %+v, want share 0 on %s", fi, c.nodes[6].id)
	}
	got, err := c.nodes[2].vault.Get(t.Context(), capa, 1<<20)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get = %d bytes, %v", len(got), err)
	}
}
