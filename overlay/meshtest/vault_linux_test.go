package meshtest

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/netnstest"
)

// vaultFile is a file of GET /api/v1/storage's vault.
type vaultFile struct {
	ID      string `json:"id"`
	Cap     string `json:"cap"`
	Live    int    `json:"live"`
	State   string `json:"state"`
	Holders []struct {
		Box  string `json:"box"`
		Name string `json:"name"`
		Live bool   `json:"live"`
	} `json:"holders"`
}

// storageInfo is the part of GET /api/v1/storage the test reads.
type storageInfo struct {
	Vault struct {
		Boxes []struct {
			Name string `json:"name"`
		} `json:"boxes"`
		Files  []vaultFile `json:"files"`
		Backup struct {
			Cap      string      `json:"cap"`
			Versions []vaultFile `json:"versions"`
		} `json:"backup"`
		Store struct {
			Shares int `json:"shares"`
		} `json:"store"`
	} `json:"vault"`
}

func (b *box) storage(t *testing.T) storageInfo {
	t.Helper()
	var v storageInfo
	if code, err := b.get("/api/v1/storage", &v); err != nil || code != http.StatusOK {
		t.Fatalf("GET /api/v1/storage on %s = %d %v", b.name, code, err)
	}
	return v
}

// do sends a request to the box's API and returns the status and body.
func (b *box) do(t *testing.T, method, path string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, "http://"+apiAddr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, b.name, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, b.name, err)
	}
	return resp.StatusCode, out
}

// TestVault: a file stored in the vault (k=3, n=5) survives two of its
// holders leaving, is repaired onto other boxes, and is readable only
// with its capability.
//
//	                    sw: br0 192.0.2.0/24
//	   ┌──────────┬──────────┬─── ... ───┐
//	owner .1    v1 .2      v2 .3   ...  v7 .8
//	(no space)  --vault-offer 256 MiB on v1..v7 (64 MiB per owner)
//
// The owner needs five holders and the repair two more boxes, so the
// community has eight.
func TestVault(t *testing.T) {
	bin, sw := prepare(t)
	boxes := []*box{newBox(t, bin, sw, "owner", 1)}
	for i := 1; i <= 7; i++ {
		boxes = append(boxes, newBox(t, bin, sw, fmt.Sprintf("v%d", i), i+1))
	}
	for _, b := range boxes {
		b.args = []string{"--vault-repair-after", "2s", "--vault-backup-every", "-1s", "--dns", "off", "--mdns", "off", "--gateway-local", "off"}
		if b.name != "owner" {
			b.args = append(b.args, "--vault-offer", "268435456")
		}
	}
	start := time.Now()
	addrs, _ := community(t, bin, boxes, "192.0.2.1:51820")
	t.Logf("community of %d boxes up after %v", len(boxes), time.Since(start).Round(time.Millisecond))
	owner := boxes[0]
	byName := make(map[string]*box)
	for _, b := range boxes {
		byName[b.name] = b
	}
	netnstest.WaitFor(t, 60*time.Second, func() string {
		if n := len(owner.storage(t).Vault.Boxes); n < 7 {
			return fmt.Sprintf("owner sees %d vault boxes, want 7", n)
		}
		return ""
	})

	t.Logf("7 vault boxes in the owner's catalog after %v", time.Since(start).Round(time.Millisecond))
	data := make([]byte, 3<<20+1234)
	rand.Read(data)
	code, body := owner.do(t, http.MethodPost, "/api/v1/storage/vault?name=family.bin", data)
	if code != http.StatusCreated {
		t.Fatalf("storing on the owner = %d: %s", code, body)
	}
	var stored struct {
		File vaultFile `json:"file"`
		Cap  string    `json:"cap"`
	}
	if err := json.Unmarshal(body, &stored); err != nil {
		t.Fatal(err)
	}
	if stored.File.Live != 5 {
		t.Fatalf("stored with %d live shares, want 5: %s", stored.File.Live, body)
	}
	if files := owner.storage(t).Vault.Files; len(files) != 1 || files[0].Cap != stored.Cap {
		t.Fatalf("the owner's listing %+v lacks the capability %s", files, stored.Cap)
	}
	read := func(b *box, query string) []byte {
		t.Helper()
		code, got := b.do(t, http.MethodGet, "/api/v1/storage/vault/read?"+query, nil)
		if code != http.StatusOK {
			t.Fatalf("reading on %s = %d: %s", b.name, code, got)
		}
		return got
	}
	byID := "id=" + stored.File.ID
	byCap := "cap=" + url.QueryEscape(stored.Cap)
	if got := read(owner, byID); !bytes.Equal(got, data) {
		t.Fatalf("owner read back %d bytes, not the %d stored", len(got), len(data))
	}

	var holders, spares []*box
	for _, h := range stored.File.Holders {
		holders = append(holders, byName[h.Name])
	}
	for _, b := range boxes[1:] {
		if !slices.Contains(holders, b) {
			spares = append(spares, b)
		}
	}
	if len(holders) != 5 || slices.Contains(holders, nil) || slices.Contains(holders, owner) || len(spares) != 2 {
		t.Fatalf("holders %v", stored.File.Holders)
	}

	// A holder cannot read the file: not by its ID, not with a guessed
	// key, and its disk holds no plaintext.
	h := holders[0]
	if code, body := h.do(t, http.MethodGet, "/api/v1/storage/vault/read?"+byID, nil); code != http.StatusNotFound {
		t.Errorf("holder %s reading by ID = %d: %s", h.name, code, body)
	}
	forged := stored.Cap[:len(stored.Cap)-2] + map[bool]string{true: "AA", false: "AB"}[strings.HasSuffix(stored.Cap, "AB")]
	if code, body := h.do(t, http.MethodGet, "/api/v1/storage/vault/read?cap="+url.QueryEscape(forged), nil); code != http.StatusForbidden {
		t.Errorf("holder %s reading with a wrong key = %d: %s", h.name, code, body)
	}
	for _, hb := range holders {
		filepath.Walk(hb.dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				if b, _ := os.ReadFile(p); bytes.Contains(b, data[1000:1064]) {
					t.Errorf("holder %s has plaintext in %s", hb.name, p)
				}
			}
			return nil
		})
	}
	// Another box reads it with the capability.
	if got := read(spares[0], byCap); !bytes.Equal(got, data) {
		t.Fatalf("%s read back with the capability %d bytes, not the %d stored", spares[0].name, len(got), len(data))
	}

	// Two holders go away; the file still reads back.
	gone := []*box{holders[1], holders[3]}
	for _, b := range gone {
		b.stop(t)
	}
	if got := read(owner, byID); !bytes.Equal(got, data) {
		t.Fatalf("with two holders gone, owner read back %d bytes, not the %d stored", len(got), len(data))
	}
	t.Logf("two holders stopped after %v", time.Since(start).Round(time.Millisecond))
	// The repair rebuilds their shares on the two spare boxes.
	var f vaultFile
	netnstest.WaitFor(t, 45*time.Second, func() string {
		files := owner.storage(t).Vault.Files
		if len(files) != 1 {
			return fmt.Sprintf("owner lists %d files", len(files))
		}
		f = files[0]
		if f.Live != 5 || f.State != "healthy" {
			return fmt.Sprintf("file has %d live shares, state %q: %+v", f.Live, f.State, f.Holders)
		}
		for _, hd := range f.Holders {
			if hd.Name == gone[0].name || hd.Name == gone[1].name {
				return fmt.Sprintf("%s, which left, still holds a share: %+v", hd.Name, f.Holders)
			}
		}
		return ""
	})
	t.Logf("repaired after %v", time.Since(start).Round(time.Millisecond))
	for _, s := range spares {
		if n := s.storage(t).Vault.Store.Shares; n != 1 {
			t.Errorf("spare %s holds %d shares after the repair, want 1", s.name, n)
		}
	}
	if got := read(spares[1], byCap); !bytes.Equal(got, data) {
		t.Fatalf("after the repair %s read back %d bytes, not the %d stored", spares[1].name, len(got), len(data))
	}
	if mb := os.Getenv("CLOUDBOX_VAULT_BENCH_MB"); mb != "" {
		benchVault(t, owner, spares[0], addrs[spares[0].name][0], mb)
	}
	var live []*box
	for _, b := range boxes[1:] {
		if !slices.Contains(gone, b) {
			live = append(live, b)
		}
	}
	fresh := restoreFromVault(t, bin, owner, live, stored.File.ID, data)
	// Stop the boxes together: one by one, their shutdowns add up.
	var wg sync.WaitGroup
	for _, b := range append(boxes, fresh) {
		wg.Go(func() { b.stop(t) })
	}
	wg.Wait()
	t.Logf("stopped after %v", time.Since(start).Round(time.Millisecond))
}

// restoreFromVault stores the owner's configuration backup in the vault,
// then loses the owner's state: a fresh box in its place (its namespace
// and address: a new SD card in the same box) joins the community through
// others[0] and restores the owner's state with the backup's capability. The restored box is the owner again, with its vault
// files (fileID holds data) and the backup adopted as its own. It returns
// the fresh box, running.
func restoreFromVault(t *testing.T, bin binaries, owner *box, others []*box, fileID string, data []byte) *box {
	t.Helper()
	code, body := owner.do(t, http.MethodPost, "/api/v1/storage/backup", nil)
	if code != http.StatusCreated {
		t.Fatalf("storing the owner's backup = %d: %s", code, body)
	}
	var bk struct {
		File vaultFile `json:"file"`
		Cap  string    `json:"cap"`
	}
	if err := json.Unmarshal(body, &bk); err != nil {
		t.Fatal(err)
	}
	if bk.File.Live != 5 || !strings.HasPrefix(bk.Cap, "cbvault1:") {
		t.Fatalf("backup stored with %d live shares, capability %q", bk.File.Live, bk.Cap)
	}
	if b := owner.storage(t).Vault.Backup; b.Cap != bk.Cap || len(b.Versions) != 1 {
		t.Fatalf("GET /api/v1/storage shows the backups %+v, want the capability %s", b, bk.Cap)
	}
	ownerID := owner.self(t).NodeID
	tok := cli(t, bin, "invite", "--state-dir", owner.dir, "--name", "fresh", "--bootstrap", others[0].addr.String()+":51820")
	owner.stop(t)
	if err := os.RemoveAll(owner.dir); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	fresh := newBoxIn(t, bin, owner.ns, "fresh", owner.addr)
	fresh.start(t, "--vault-backup-every", "-1s", "--dns", "off", "--mdns", "off", "--gateway-local", "off", "--join", tok)
	netnstest.WaitFor(t, 60*time.Second, func() string {
		if n := len(fresh.storage(t).Vault.Boxes); n < 5 {
			return fmt.Sprintf("fresh box sees %d vault boxes, want 5", n)
		}
		return ""
	})
	// The others reach a new member once the roster told them.
	for _, b := range others {
		waitPath(t, b, "fresh", 90*time.Second, func(peer) string { return "" })
	}
	t.Logf("fresh box has paths to the vault boxes after %v", time.Since(start).Round(time.Millisecond))
	if fresh.self(t).NodeID == ownerID {
		t.Fatal("the fresh box has the lost owner's identity before the restore")
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+apiAddr+"/api/v1/storage/backup/restore",
		strings.NewReader(`{"cap": "`+bk.Cap+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 90 * time.Second, Transport: fresh.client.Transport}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("restoring from the vault = %d: %s", resp.StatusCode, body)
	}
	// cloudboxd restarts in process as the owner, and adopts the backup.
	netnstest.WaitFor(t, 90*time.Second, func() string {
		ps, err := fresh.peers()
		if err != nil {
			return err.Error()
		}
		for _, p := range ps {
			if p.Self && p.NodeID != ownerID {
				return fmt.Sprintf("the restored box is %s (%s), not the owner %s", p.Name, p.NodeID, ownerID)
			}
		}
		var v storageInfo
		if code, err := fresh.get("/api/v1/storage", &v); err != nil || code != http.StatusOK {
			return fmt.Sprintf("GET /api/v1/storage = %d %v", code, err)
		}
		if len(v.Vault.Backup.Versions) != 1 || v.Vault.Backup.Cap != bk.Cap {
			return fmt.Sprintf("the restored box's backups are %+v, want %s adopted", v.Vault.Backup, bk.Cap)
		}
		if !slices.ContainsFunc(v.Vault.Files, func(f vaultFile) bool { return f.ID == fileID }) {
			return fmt.Sprintf("the restored box does not list its vault file %s", fileID)
		}
		return ""
	})
	t.Logf("owner restored from the vault on a fresh box in %v", time.Since(start).Round(time.Millisecond))
	code, got := fresh.do(t, http.MethodGet, "/api/v1/storage/vault/read?id="+fileID, nil)
	if code != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("the restored box read its vault file: %d, %d bytes, want the %d stored", code, len(got), len(data))
	}
	return fresh
}

// benchVault stores and reads a file of mb MiB on the owner (make
// bench-storage), and measures the overlay's TCP throughput from the
// owner to a box as the reference, with iperf3.
func benchVault(t *testing.T, owner, other *box, otherAddr, mb string) {
	n, err := strconv.Atoi(mb)
	if err != nil || n < 1 || n > 128 {
		t.Fatalf("CLOUDBOX_VAULT_BENCH_MB=%q: want 1 to 128", mb)
	}
	data := make([]byte, n<<20)
	rand.Read(data)
	client := &http.Client{Timeout: 5 * time.Minute, Transport: owner.client.Transport}
	call := func(method, path string, body []byte) []byte {
		req, _ := http.NewRequestWithContext(t.Context(), method, "http://"+apiAddr+path, bytes.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s = %d %v: %.300s", method, path, resp.StatusCode, err, out)
		}
		return out
	}
	start := time.Now()
	out := call(http.MethodPost, "/api/v1/storage/vault?name=bench.bin", data)
	store := time.Since(start)
	var stored struct {
		File vaultFile `json:"file"`
	}
	json.Unmarshal(out, &stored)
	start = time.Now()
	got := call(http.MethodGet, "/api/v1/storage/vault/read?id="+stored.File.ID, nil)
	read := time.Since(start)
	if !bytes.Equal(got, data) {
		t.Fatalf("the benchmark file read back differs")
	}
	mbps := func(d time.Duration) float64 { return float64(len(data)) * 8 / 1e6 / d.Seconds() }
	ref := netnstest.Iperf3(t, other.ns, owner.ns, otherAddr, 5)
	t.Logf("BENCH vault size_mib=%d store_mbps=%.1f read_mbps=%.1f overlay_tcp_mbps=%.1f", n, mbps(store), mbps(read), ref)
}
