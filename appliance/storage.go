package appliance

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudbox/cloudbox/appliance/state"
	"github.com/cloudbox/cloudbox/overlay/roster"
	"github.com/cloudbox/cloudbox/services"
	"github.com/cloudbox/cloudbox/services/storage"
	"github.com/cloudbox/cloudbox/services/storage/vault"
)

// StorageDir is the directory, inside the state directory, of the shared
// folders and the vault, unless StorageConfig.Dir names another.
const StorageDir = "storage"

// The catalog types of storage: the shared folders (WebDAV, RFC 4918 with
// the DNS-SD type of RFC 6763's registry) and the vault space a box offers.
const (
	webdavType = "_webdav._tcp"
	vaultType  = "_cb-vault._tcp"
)

// davCacheTTL is how long a WebDAV client's checked password is
// remembered, so that a client's many requests need one Argon2id check.
const davCacheTTL = 5 * time.Minute

// StorageConfig configures the storage component: the shared folders
// (WebDAV at /dav/ of the panel) and the community vault. The zero value
// serves the folders from <state>/storage with storage.DefaultQuota per
// account, stores this box's vault files on other boxes, and offers no
// vault space to others.
type StorageConfig struct {
	// Disabled turns the shared folders and the vault off.
	Disabled bool
	// Dir holds the folders (an attached disk, say); zero means
	// StorageDir in the state directory. The vault's own files (keys,
	// shares held for others) stay in the state directory.
	Dir string
	// Quota is each account's quota in bytes; zero means
	// storage.DefaultQuota, negative none.
	Quota int64
	// VaultOffer is how many bytes of other boxes' shares this box holds
	// at most; zero offers none (the box is not a vault box).
	VaultOffer int64
	// VaultOwnerCap is how many bytes of one other box's shares this box
	// holds at most; zero means VaultOffer / vault.DefaultOwnerShare,
	// negative no cap but VaultOffer.
	VaultOwnerCap int64
	// VaultK and VaultN: any K of N shares rebuild a file; zero means
	// vault.DefaultK and vault.DefaultN.
	VaultK, VaultN int
	// VaultRepairAfter is how long a holder must be gone from the catalog
	// before its shares are rebuilt elsewhere; zero means
	// vault.DefaultRepairAfter.
	VaultRepairAfter time.Duration
	// VaultBackupEvery is how often the box stores its configuration
	// backup in the vault even when it did not change (it does after a
	// change anyway); zero means DefaultVaultBackupEvery, negative only
	// when an administrator asks. VaultBackupKeep is how many versions
	// stay in the vault; zero means DefaultVaultBackupKeep.
	VaultBackupEvery time.Duration
	VaultBackupKeep  int
}

// storageService is the storage component.
type storageService struct {
	// Immutable after openStorage.
	cfg     StorageConfig
	folders *storage.Folders
	store   *vault.Store
	vault   *vault.Vault
	ov      *overlayService
	port    uint16 // the overlay's TCP port
	log     *slog.Logger
	now     func() time.Time
	// stateDir, nodeID and nodeName are for the vault backups.
	stateDir, nodeID, nodeName string
	// dir holds the folders; diskErr says why the chosen disk is not used.
	dir, diskErr string

	// bmu serializes the vault backups and guards backups.
	bmu     sync.Mutex
	backups vaultBackups

	// mu guards the following.
	mu sync.Mutex
	// davOK caches WebDAV passwords that checked out: hash of
	// name:password -> expiry.
	davOK map[[32]byte]time.Time
}

// openStorage opens the folders and the vault; nil when disabled.
func openStorage(cfg StorageConfig, stateDir string, node *state.Node, ov *overlayService, logger *slog.Logger, now func() time.Time) (*storageService, error) {
	if cfg.Disabled || !storageInProfile {
		return nil, nil
	}
	log := logger.With("component", "storage")
	dir := cfg.Dir
	if dir == "" {
		dir = filepath.Join(stateDir, StorageDir)
	}
	dir, diskErr := resolveStorageDir(stateDir, dir)
	if diskErr != "" {
		logger.Warn("storage disk not used", "component", "storage", "error", diskErr)
	}
	folders, err := storage.New(storage.Config{Root: dir, Quota: cfg.Quota, Logger: log, Now: now})
	if err != nil {
		return nil, fmt.Errorf("%w (check --storage-dir)", err)
	}
	s := &storageService{cfg: cfg, folders: folders, ov: ov, port: ov.cfg.ListenPort, log: log, now: now,
		stateDir: stateDir, nodeID: node.ID(), nodeName: node.Name, dir: dir, diskErr: diskErr, davOK: make(map[[32]byte]time.Time)}
	keys := func(id string) ([32]byte, bool) { return ov.memberKey(id) }
	vdir := filepath.Join(stateDir, StorageDir, "vault")
	if err := moveVaultIndex(stateDir); err != nil {
		return nil, err
	}
	s.vault, err = vault.New(vault.Config{
		Dir: filepath.Join(stateDir, VaultDir), Self: node.ID(), PrivateKey: ov.key, Keys: keys,
		Boxes: s.vaultBoxes, Locate: s.locate, Changed: ov.changed.Wait,
		K: cfg.VaultK, N: cfg.VaultN, RepairAfter: cfg.VaultRepairAfter, Logger: log, Now: now,
	})
	if err != nil {
		return nil, err
	}
	s.store, err = vault.NewStore(vault.StoreConfig{Dir: filepath.Join(vdir, "held"), Self: node.ID(), Offer: cfg.VaultOffer,
		OwnerCap: cfg.VaultOwnerCap, Keys: keys, Own: s.vault.Manifest, Logger: log})
	if err != nil {
		return nil, err
	}
	ov.vault = s.store.Handler(ov.memberFrom)
	return s, nil
}

// vaultBoxes returns the boxes of the catalog that offer vault space.
func (s *storageService) vaultBoxes() []vault.Box {
	cat := s.ov.catalog.current()
	if cat == nil {
		return nil
	}
	var out []vault.Box
	for _, rec := range cat.Services(services.Filter{Type: vaultType}) {
		free, _ := strconv.ParseInt(rec.TXT["free"], 10, 64)
		ownerCap, _ := strconv.ParseInt(rec.TXT["owner_cap"], 10, 64)
		out = append(out, vault.Box{ID: rec.OwnerID, Name: rec.OwnerName, Free: free, OwnerCap: max(ownerCap, 0),
			URL: "http://" + netip.AddrPortFrom(rec.OwnerIPv6, rec.Port).String()})
	}
	return out
}

// locate returns the overlay service URL of the member nodeID.
func (s *storageService) locate(nodeID string) (string, bool) {
	m, ok := s.ov.member(nodeID)
	if !ok {
		return "", false
	}
	return "http://" + netip.AddrPortFrom(m.IPv6, s.port).String(), true
}

// member returns the roster's member nodeID; false while the overlay does
// not run.
func (o *overlayService) member(nodeID string) (roster.MemberInfo, bool) {
	o.mu.Lock()
	run := o.running
	o.mu.Unlock()
	if run == nil {
		return roster.MemberInfo{}, false
	}
	for _, m := range run.roster.Members() {
		if m.NodeID == nodeID {
			return m, true
		}
	}
	return roster.MemberInfo{}, false
}

// memberFrom names the member a request over the overlay comes from, by
// its source address (rosterHandler lets only overlay requests through).
func (o *overlayService) memberFrom(r *http.Request) (string, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return "", false
	}
	from := ap.Addr().Unmap()
	o.mu.Lock()
	run := o.running
	o.mu.Unlock()
	if run == nil {
		return "", false
	}
	for _, m := range run.roster.Members() {
		if m.IPv4 == from || m.IPv6 == from {
			return m.NodeID, true
		}
	}
	return "", false
}

// run repairs the vault's files until ctx is done.
func (s *storageService) run(ctx context.Context) error {
	if s == nil || !storageInProfile {
		<-ctx.Done()
		return nil
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.runBackups(ctx) })
	err := s.vault.Run(ctx)
	wg.Wait()
	return err
}

// moveVaultIndex moves the vault index of older versions (under the
// storage directory) to VaultDir, where backups find it.
func moveVaultIndex(stateDir string) error {
	old := filepath.Join(stateDir, StorageDir, "vault", "own")
	if _, err := os.Stat(old); err != nil {
		return nil
	}
	dst := filepath.Join(stateDir, VaultDir)
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	if err := os.Rename(old, dst); err != nil {
		return fmt.Errorf("moving the vault index to %s: %w", dst, err)
	}
	return nil
}

// builtinServices returns the catalog entries: the shared folders on the
// panel's port (when others can reach it) and the vault space offered.
func (s *storageService) builtinServices(node string, httpAddr net.Addr) []services.Service {
	if s == nil || !storageInProfile {
		return nil
	}
	suffix := " (" + node + ")"
	var out []services.Service
	if ap, err := netip.ParseAddrPort(httpAddr.String()); err == nil && !ap.Addr().IsLoopback() {
		out = append(out, services.Service{Instance: cutUTF8("shared folders", 63-len(suffix)) + suffix, Type: webdavType,
			Port: ap.Port(), Description: "WebDAV folders of this box's accounts", TXT: map[string]string{"path": s.folders.Prefix() + "/"}})
	}
	if s.cfg.VaultOffer > 0 {
		// Rounded to MiB, so that the entry changes (and is gossiped)
		// rarely.
		free := s.store.Free() &^ (1<<20 - 1)
		out = append(out, services.Service{Instance: cutUTF8("vault", 63-len(suffix)) + suffix, Type: vaultType, Port: s.port,
			Description: "Vault space for the community's encrypted shares", TXT: map[string]string{"free": strconv.FormatInt(free, 10), "owner_cap": strconv.FormatInt(s.store.OwnerCap(), 10)}})
	}
	return out
}

// status is the "storage" component of the status.
func (s *storageService) status(context.Context) ComponentStatus {
	if s == nil || !storageInProfile {
		return ComponentStatus{OK: true, Detail: map[string]string{"state": "disabled"}}
	}
	st, vs := s.store.Stats(), s.vault.Stats()
	d := map[string]string{
		"state":        "running",
		"dir":          s.dir,
		"vault_files":  strconv.Itoa(vs.Files),
		"vault_boxes":  strconv.Itoa(len(s.vaultBoxes())),
		"vault_offer":  strconv.FormatInt(st.Offer, 10),
		"vault_used":   strconv.FormatInt(st.Used, 10),
		"vault_shares": strconv.Itoa(st.Shares),
		// The box's configuration backups in the vault.
		"vault_backups": strconv.Itoa(len(s.vaultBackupFiles())),
	}
	if s.diskErr != "" {
		return ComponentStatus{OK: false, Detail: d, Error: s.diskErr}
	}
	if vs.AtRisk > 0 {
		return ComponentStatus{OK: false, Detail: d,
			Error: fmt.Sprintf("%d vault files have too few live shares; wait for the repair, or bring their holders back", vs.AtRisk)}
	}
	return ComponentStatus{OK: true, Detail: d}
}

// davAccount authenticates a WebDAV request: a bearer token or session
// (the panel's own pages), else Basic auth with an account's name and its
// password or one of its API tokens. ok is false after it answered.
func (h *handler) davAccount(w http.ResponseWriter, r *http.Request) (string, bool) {
	a := h.cfg.auth
	if p, ok, bad := a.identify(r); ok && !p.wizard {
		if !isSafeMethod(r.Method) && p.session != nil && !p.session.checkCSRF(r.Header.Get(csrfHeader)) {
			http.Error(w, "a request with the session cookie must carry the header "+csrfHeader, http.StatusForbidden)
			return "", false
		}
		return p.account, true
	} else if bad && !strings.HasPrefix(r.Header.Get("Authorization"), "Basic ") {
		http.Error(w, "the API token is not valid", http.StatusUnauthorized)
		return "", false
	}
	name, pass, ok := r.BasicAuth()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="cloudbox", charset="UTF-8"`)
		http.Error(w, "log in with your account's name and password (or an API token as password)", http.StatusUnauthorized)
		return "", false
	}
	name = strings.ToLower(strings.TrimSpace(name))
	if acc, ok := a.accounts.tokenAccount(pass); ok && acc.Name == name {
		return name, true
	}
	sum := sha256.Sum256([]byte(name + "\x00" + pass))
	s := h.cfg.storage
	s.mu.Lock()
	exp, cached := s.davOK[sum]
	s.mu.Unlock()
	if cached && h.cfg.now().Before(exp) {
		if _, ok := a.accounts.lookup(name); ok {
			return name, true
		}
	}
	keys := map[string]limit{clientKey(r): loginPerClient, "account:" + name: loginPerAccount}
	if d := a.limiter.wait(keys); d > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(d.Seconds())+1))
		http.Error(w, "too many failed attempts; wait and try again", http.StatusTooManyRequests)
		return "", false
	}
	if _, ok := a.accounts.authenticate(name, pass); !ok {
		a.limiter.fail(keys)
		a.logger.Warn("webdav login failed", "account", name, "client", clientKey(r))
		w.Header().Set("WWW-Authenticate", `Basic realm="cloudbox", charset="UTF-8"`)
		http.Error(w, "wrong name or password", http.StatusUnauthorized)
		return "", false
	}
	s.mu.Lock()
	now := h.cfg.now()
	for k, e := range s.davOK {
		if now.After(e) {
			delete(s.davOK, k)
		}
	}
	s.davOK[sum] = now.Add(davCacheTTL)
	s.mu.Unlock()
	return name, true
}

// userContentPolicy is the Content-Security-Policy of the members' files
// (WebDAV and share links): served from the panel's origin, an uploaded
// page must not run scripts there.
const userContentPolicy = "default-src 'none'; sandbox"

// dav serves the shared folders over WebDAV.
func (h *handler) dav(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", userContentPolicy)
	if h.cfg.storage == nil || !storageInProfile {
		http.Error(w, errNoStorage, http.StatusServiceUnavailable)
		return
	}
	name, ok := h.davAccount(w, r)
	if !ok {
		return
	}
	h.cfg.storage.folders.ServeDAV(w, r, name)
}

// shareLink serves a share link, to anyone who has it.
func (h *handler) shareLink(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", userContentPolicy)
	if h.cfg.storage == nil || !storageInProfile {
		http.Error(w, errNoStorage, http.StatusServiceUnavailable)
		return
	}
	h.cfg.storage.folders.ServeLink(w, r, r.PathValue("token"))
}

// errNoStorage is the answer of the storage endpoints when the component
// is off.
const errNoStorage = "shared folders and the vault are turned off on this box"
