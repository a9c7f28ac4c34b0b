package appliance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
	"github.com/cloudbox/cloudbox/services/storage/vault"
)

// Every box keeps its own configuration backup in the community vault: the
// state a password backup holds (backupPayload, as JSON), stored as a
// vault file of no account. The vault encrypts it with the file's own key,
// which the capability carries: an administrator keeps the capability and,
// after losing the box's SD card, sets up a fresh box, joins it to the
// community and restores the old box's state from the vault with it
// (restoreFromVault). The box stores a new version when its state changed
// (checked every minute, at most every ten minutes) and at least every
// VaultBackupEvery, and keeps the newest VaultBackupKeep versions: older
// ones are deleted from the vault, which frees their shares.

// VaultDir, in the state directory, holds the box's vault index: the keys
// and manifests of its vault files. Backups hold it, so that a restored
// box can read and repair its files again.
const VaultDir = "vault"

// Defaults of StorageConfig's vault backups.
const (
	DefaultVaultBackupEvery = 24 * time.Hour
	DefaultVaultBackupKeep  = 3
)

const (
	// vaultBackupPrefix starts the names of the box's backups in the
	// vault; they belong to no account.
	vaultBackupPrefix = "cloudbox-config-"
	// vaultBackupCheck is how often the state is compared with the
	// newest backup; vaultBackupGap is the least time between two
	// automatic backups.
	vaultBackupCheck = time.Minute
	vaultBackupGap   = 10 * time.Minute
	// vaultBackupState, in the storage directory of the state directory
	// (not in backups), remembers the hash of the newest backup's state.
	vaultBackupState = "vault-backup.json"
	// vaultAdoptFile, in VaultDir, holds the capability of the backup a
	// restore came from, until the restored box adopts it as its own file
	// (a dot file: backups leave it out).
	vaultAdoptFile = ".adopt"
)

// VaultBackupInfo is the box's configuration backups in the vault, as
// GET /api/v1/storage shows them to administrators.
type VaultBackupInfo struct {
	// Every is how often a backup is stored at least ("" when only on
	// request); Keep how many versions are kept.
	Every string `json:"every"`
	Keep  int    `json:"keep"`
	// Cap restores the newest backup on a fresh box of the community.
	Cap string `json:"cap,omitempty"`
	// Versions are the backups kept, newest first.
	Versions []VaultFile `json:"versions"`
	// Last is when the box last checked or stored, Error why that
	// failed.
	Last  time.Time `json:"last,omitzero"`
	Error string    `json:"error,omitempty"`
}

// vaultBackupSaved is vaultBackupState.
type vaultBackupSaved struct {
	Version int    `json:"version"`
	Hash    string `json:"hash"`
}

// vaultBackups is the state of the storage component's backups; the
// storage component's bmu guards it.
type vaultBackups struct {
	hash    string // of the newest backup's state
	checked time.Time
	err     string
}

// statePath returns the path of vaultBackupState.
func (s *storageService) backupStatePath() string {
	return filepath.Join(s.stateDir, StorageDir, vaultBackupState)
}

// stateHash hashes the files of p that describe the box's configuration:
// the vault index changes with every backup and is left out.
func stateHash(p backupPayload) string {
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(p.Files)) {
		if strings.HasPrefix(name, VaultDir+"/") {
			continue
		}
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(p.Files[name]))
		h.Write(p.Files[name])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// vaultBackupFiles returns the box's backups in the vault, newest first.
func (s *storageService) vaultBackupFiles() []vault.FileInfo {
	var out []vault.FileInfo
	for _, f := range s.vault.Files() {
		if f.Account == "" && strings.HasPrefix(f.Name, vaultBackupPrefix) {
			out = append(out, f)
		}
	}
	return out
}

// errBackupUnchanged is backupToVault's answer when nothing is due.
var errBackupUnchanged = errors.New("the configuration has not changed since the last backup")

// backupToVault stores the box's state in the vault when it changed (or
// the newest backup is older than VaultBackupEvery), or always with force,
// and deletes the versions beyond VaultBackupKeep.
func (s *storageService) backupToVault(ctx context.Context, force bool) (vault.FileInfo, vault.Cap, error) {
	s.bmu.Lock()
	defer s.bmu.Unlock()
	now := s.now()
	s.backups.checked = now
	fi, c, err := s.backupToVaultLocked(ctx, force, now)
	switch {
	case err == nil, errors.Is(err, errBackupUnchanged):
		s.backups.err = ""
	default:
		s.backups.err = err.Error()
	}
	return fi, c, err
}

func (s *storageService) backupToVaultLocked(ctx context.Context, force bool, now time.Time) (vault.FileInfo, vault.Cap, error) {
	p, err := collectBackup(s.stateDir, s.nodeID, now)
	if err != nil {
		return vault.FileInfo{}, vault.Cap{}, err
	}
	hash := stateHash(p)
	if s.backups.hash == "" {
		var saved vaultBackupSaved
		if b, err := os.ReadFile(s.backupStatePath()); err == nil && json.Unmarshal(b, &saved) == nil && saved.Version == 1 {
			s.backups.hash = saved.Hash
		}
	}
	if !force {
		var newest time.Time
		if fs := s.vaultBackupFiles(); len(fs) > 0 {
			newest = fs[0].Created
		}
		age := now.Sub(newest)
		if age < vaultBackupGap || hash == s.backups.hash && age < s.backupEvery() {
			return vault.FileInfo{}, vault.Cap{}, errBackupUnchanged
		}
	}
	data, err := json.Marshal(p)
	if err != nil {
		return vault.FileInfo{}, vault.Cap{}, fmt.Errorf("encoding the backup: %w", err)
	}
	name := vaultBackupPrefix + s.nodeName + "-" + now.UTC().Format("20060102-150405") + ".json"
	fi, c, err := s.vault.Put(ctx, name, "", bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return vault.FileInfo{}, vault.Cap{}, fmt.Errorf("storing the backup in the vault: %w", err)
	}
	s.backups.hash = hash
	b, _ := json.Marshal(vaultBackupSaved{Version: 1, Hash: hash})
	if err := atomicfile.Write(s.backupStatePath(), b, 0o600); err != nil {
		s.log.Warn("vault backup state not saved", "error", err)
	}
	s.log.Info("configuration backed up to the vault", "file", fi.ID, "bytes", len(data))
	for _, old := range s.vaultBackupFiles()[min(s.backupKeep(), len(s.vaultBackupFiles())):] {
		if err := s.vault.Delete(ctx, old.ID); err != nil {
			s.log.Warn("old vault backup not deleted", "file", old.ID, "error", err)
		}
	}
	return fi, c, nil
}

func (s *storageService) backupEvery() time.Duration {
	if s.cfg.VaultBackupEvery == 0 {
		return DefaultVaultBackupEvery
	}
	return s.cfg.VaultBackupEvery
}

func (s *storageService) backupKeep() int {
	if s.cfg.VaultBackupKeep <= 0 {
		return DefaultVaultBackupKeep
	}
	return s.cfg.VaultBackupKeep
}

// runBackups adopts the backup a restore came from, then stores backups
// until ctx is done. It returns nil.
func (s *storageService) runBackups(ctx context.Context) error {
	if !s.adopt(ctx) {
		return nil
	}
	if s.cfg.VaultBackupEvery < 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(vaultBackupCheck)
	defer t.Stop()
	for {
		if len(s.vaultBoxes()) >= s.vaultN() {
			if _, _, err := s.backupToVault(ctx, false); err != nil && !errors.Is(err, errBackupUnchanged) && ctx.Err() == nil {
				s.log.Warn("vault backup failed", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// vaultN is the number of boxes a vault file needs.
func (s *storageService) vaultN() int {
	if s.cfg.VaultN == 0 {
		return vault.DefaultN
	}
	return s.cfg.VaultN
}

// adopt adds the backup a restore came from to the vault index, retrying
// until the vault boxes answer; false when ctx ended first.
func (s *storageService) adopt(ctx context.Context) bool {
	path := filepath.Join(s.stateDir, VaultDir, vaultAdoptFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	c, err := vault.ParseCap(string(b))
	if err != nil || c.Owner != s.nodeID {
		s.log.Warn("restored backup not adopted", "error", err, "owner", c.Owner)
		os.Remove(path)
		return true
	}
	for {
		name := vaultBackupPrefix + s.nodeName + "-restored.json"
		fi, err := s.vault.Adopt(ctx, c, name, "")
		if err == nil {
			s.log.Info("restored backup adopted", "file", fi.ID)
			os.Remove(path)
			// The restored index may predate repairs of its files.
			s.vault.Refresh(ctx)
			return true
		}
		s.log.Debug("restored backup not adopted yet", "error", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(5 * time.Second):
		}
	}
}

// backupInfo returns the backups for GET /api/v1/storage.
func (s *storageService) backupInfo() *VaultBackupInfo {
	s.bmu.Lock()
	info := &VaultBackupInfo{Keep: s.backupKeep(), Last: s.backups.checked, Error: s.backups.err, Versions: []VaultFile{}}
	s.bmu.Unlock()
	if s.cfg.VaultBackupEvery >= 0 {
		info.Every = s.backupEvery().String()
	}
	for _, f := range s.vaultBackupFiles() {
		c, _ := s.vault.Cap(f.ID)
		info.Versions = append(info.Versions, VaultFile{FileInfo: f, Cap: c.String()})
	}
	if len(info.Versions) > 0 {
		info.Cap = info.Versions[0].Cap
	}
	return info
}

// Errors of a restore from the vault, shown to people.
var (
	errVaultCap       = errors.New("this is not a vault capability (cbvault1:...)")
	errVaultNotBackup = errors.New("the capability's file is not a cloudbox configuration backup")
)

// restoreFromVault reads the backup of capability text from the vault,
// stages it for the next start like an uploaded backup, and asks the
// daemon to restart. The restored box then adopts the backup as its own
// vault file. Nothing changes unless it returns nil.
func (h *handler) restoreFromVault(ctx context.Context, text string) error {
	s := h.cfg.storage
	if s == nil || !storageInProfile {
		return errors.New(errNoStorage)
	}
	c, err := vault.ParseCap(text)
	if err != nil {
		return errVaultCap
	}
	data, err := s.vault.Get(ctx, c, 2*maxBackupSize)
	if err != nil {
		return fmt.Errorf("reading the backup from the vault: %w", err)
	}
	if !backupMu.TryLock() {
		return errBackupIsRunning
	}
	defer backupMu.Unlock()
	p, err := decodeBackupPayload(data)
	if err != nil {
		return fmt.Errorf("%w: %v", errVaultNotBackup, err)
	}
	if p.NodeID != c.Owner {
		return fmt.Errorf("%w: it holds box %s, stored by box %s", errVaultNotBackup, p.NodeID, c.Owner)
	}
	p.Files[VaultDir+"/"+vaultAdoptFile] = []byte(c.String())
	if err := stageRestore(h.cfg.stateDir, p); err != nil {
		return err
	}
	h.cfg.logger.Info("backup restored from the vault, restarting", "node_id", p.NodeID, "created", p.Created)
	if h.cfg.restart != nil {
		h.cfg.restart()
	}
	return nil
}
