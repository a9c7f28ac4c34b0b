package appliance

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/appliance/state"
	"github.com/cloudbox/cloudbox/services/storage/vault"
)

// TestVaultBackupVersions: the box stores its state in the vault when it
// changed (not more often than every ten minutes) or when asked, keeps the
// newest three versions and frees the shares of older ones; each backup
// holds the vault index and decodes as a backup of this box.
func TestVaultBackupVersions(t *testing.T) {
	stateDir := t.TempDir()
	logger := slog.New(slog.DiscardHandler)
	node, err := state.Open(t.Context(), state.Config{Dir: stateDir, Name: "box", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		now = testStart
	)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	advance := func(d time.Duration) {
		mu.Lock()
		now = now.Add(d)
		mu.Unlock()
	}
	ov := &overlayService{cfg: OverlayConfig{}.withDefaults(), log: logger}
	ov.catalog = newCatalogService(stateDir, logger, &ov.changed)
	copy(ov.key[:], node.PrivateKey.Bytes())
	s, err := openStorage(StorageConfig{}, stateDir, node, ov, logger, clock)
	if err != nil {
		t.Fatal(err)
	}
	// Five holders on loopback that take this box's shares.
	pub := [32]byte(node.PrivateKey.PublicKey().Bytes())
	keys := func(id string) ([32]byte, bool) { return pub, id == node.ID() }
	var stores []*vault.Store
	var boxes []vault.Box
	for i := range 5 {
		id := "holder" + string(rune('a'+i))
		st, err := vault.NewStore(vault.StoreConfig{Dir: t.TempDir(), Self: id, Offer: 64 << 20, OwnerCap: -1, Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(st.Handler(func(*http.Request) (string, bool) { return node.ID(), true }))
		t.Cleanup(srv.Close)
		stores = append(stores, st)
		boxes = append(boxes, vault.Box{ID: id, Name: id, URL: srv.URL, Free: 64 << 20})
	}
	s.vault, err = vault.New(vault.Config{Dir: filepath.Join(stateDir, VaultDir), Self: node.ID(), PrivateKey: ov.key, Keys: keys,
		Boxes: func() []vault.Box { return boxes }, Client: &http.Client{}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	first, c1, err := s.backupToVault(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if first.Live != 5 || first.Account != "" {
		t.Fatalf("first backup %+v, want 5 live shares and no account", first)
	}
	if _, _, err := s.backupToVault(ctx, false); err != errBackupUnchanged {
		t.Fatalf("backup right after = %v, want errBackupUnchanged", err)
	}
	advance(11 * time.Minute)
	if _, _, err := s.backupToVault(ctx, false); err != errBackupUnchanged {
		t.Fatalf("backup of the same state later = %v, want errBackupUnchanged", err)
	}
	// A settings change: the next check stores it.
	if err := saveNetwork(stateDir, networkSettings{DNSUpstreams: []string{"192.0.2.53"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.backupToVault(ctx, false); err != nil {
		t.Fatalf("backup after a change: %v", err)
	}
	for range 2 {
		advance(time.Second)
		if _, _, err := s.backupToVault(ctx, true); err != nil {
			t.Fatalf("backup on request: %v", err)
		}
	}
	info := s.backupInfo()
	if len(info.Versions) != DefaultVaultBackupKeep {
		t.Fatalf("%d versions kept, want %d: %+v", len(info.Versions), DefaultVaultBackupKeep, info.Versions)
	}
	for _, v := range info.Versions {
		if v.ID == first.ID {
			t.Errorf("the oldest backup %s was kept", first.ID)
		}
	}
	if !info.Versions[0].Created.After(info.Versions[2].Created) || info.Cap != info.Versions[0].Cap {
		t.Errorf("versions not newest first, or the capability is not the newest's: %+v", info)
	}
	shares := 0
	for _, st := range stores {
		shares += st.Stats().Shares
	}
	if shares != 5*DefaultVaultBackupKeep {
		t.Errorf("the holders keep %d shares, want %d: the deleted version's were not freed", shares, 5*DefaultVaultBackupKeep)
	}
	if _, err := s.vault.Get(ctx, c1, 1<<20); err == nil {
		t.Error("the deleted first backup still reads")
	}
	newest, err := vault.ParseCap(info.Cap)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.vault.Get(ctx, newest, 2*maxBackupSize)
	if err != nil {
		t.Fatal(err)
	}
	p, err := decodeBackupPayload(b)
	if err != nil {
		t.Fatal(err)
	}
	if p.NodeID != node.ID() || p.Files[NetworkFile] == nil || p.Files[VaultDir+"/files.json"] == nil {
		t.Errorf("the newest backup is of %s with files %v; want this box's, with %s and the vault index", p.NodeID,
			len(p.Files), NetworkFile)
	}
	// The Storage page shows administrators the capability, members not.
	h, _ := newStorageServer(t)
	h.cfg.storage = s
	for _, tc := range []struct {
		account string
		want    bool
	}{{"admin", true}, {"alice", false}} {
		tok, _, err := h.cfg.auth.accounts.newToken(tc.account, "test", testStart)
		if err != nil {
			t.Fatal(err)
		}
		resp := do(t, h, http.MethodGet, "/storage", "Authorization", "Bearer "+tok)
		if b := body(t, resp); resp.StatusCode != http.StatusOK || strings.Contains(b, info.Cap) != tc.want {
			t.Errorf("the Storage page for %s = %d, shows the backup's capability: %v, want %v", tc.account, resp.StatusCode,
				strings.Contains(b, info.Cap), tc.want)
		}
	}
}
