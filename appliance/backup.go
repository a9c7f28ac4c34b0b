package appliance

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/cloudbox/cloudbox/appliance/state"
	"github.com/cloudbox/cloudbox/internal/atomicfile"
)

// A backup is the box's state — its identity (node.json), the panel's
// accounts and settings, its community membership and roster (overlay/),
// its published services and its HTTPS authority — in one file encrypted
// with a password:
//
//	"CBBACKUP" | version 1 (1 byte) | Argon2id time (uint32 BE) |
//	memory in KiB (uint32 BE) | threads (1 byte) | salt (16 bytes) |
//	nonce (24 bytes) | XChaCha20-Poly1305 ciphertext
//
// The key is Argon2id (RFC 9106) of the password with the salt and the
// parameters of the header; the header is the AEAD's additional data, so
// changing any byte of the file makes it fail to open, like a wrong
// password. The plaintext is backupPayload as JSON. A component whose
// state belongs in a backup adds its directory to backupEntries.

// backupEntries are the names, in the state directory, that a backup
// holds and a restore replaces: everything else (the setup code, access
// logs) stays.
var backupEntries = []string{state.FileName, PanelDir, OverlayDir, CatalogDir, TLSDir, NetworkFile, VaultDir}

const (
	backupMagic   = "CBBACKUP"
	backupVersion = 1
	// backupHeaderLen is the length of the header before the ciphertext.
	backupHeaderLen = len(backupMagic) + 1 + 4 + 4 + 1 + 16 + chacha20poly1305.NonceSizeX
	// Bounds of the parameters a backup may ask for when it is opened, so
	// that a crafted file cannot exhaust the box's memory or time.
	maxBackupArgonTime   = 10
	minBackupArgonMemory = 8 * 1024
	maxBackupArgonMemory = 256 * 1024
	maxBackupThreads     = 16
	// maxBackupSize bounds a backup file, and the state it may hold.
	maxBackupSize = 16 << 20
	// restoreDir holds a restore until the next start applies it.
	restoreDir = ".restore"
	// restoreOldDir holds the replaced state while a restore is applied.
	restoreOldDir = ".restore-old"
	// restoreMarker, written last into restoreDir, lists the entries of
	// a complete restore.
	restoreMarker = "RESTORE"
	// BackupExt is the extension of backup files.
	BackupExt = ".cbbackup"
)

// Errors of opening a backup, shown to people.
var (
	errNotBackup       = errors.New("this is not a cloudbox backup file")
	errBackupVersion   = errors.New("this backup was made by a newer cloudbox; update this box first")
	errBackupParams    = errors.New("the backup asks for key derivation parameters out of bounds; it is damaged or not made by cloudbox")
	errBackupOpen      = errors.New("wrong password, or the file was changed or damaged")
	errBackupContent   = errors.New("the backup's content is not valid")
	errBackupTooLarge  = fmt.Errorf("the backup is larger than %d MiB", maxBackupSize>>20)
	errBackupIsRunning = errors.New("another backup or restore is running; wait for it")
)

// backupPayload is the plaintext of a backup.
type backupPayload struct {
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	NodeID  string    `json:"node_id"`
	// Files maps slash-separated paths in the state directory, under
	// backupEntries, to their content.
	Files map[string][]byte `json:"files"`
}

// backupHeader is the parsed header of a backup.
type backupHeader struct {
	time, memory uint32
	threads      uint8
	salt         []byte
	nonce        []byte
}

// backupKDF are the Argon2id parameters of new backups: slower than the
// login hash, since a stolen backup can be attacked offline. Tests lower
// them.
var backupKDF = struct {
	time, memory uint32 // memory in KiB
	threads      uint8
}{time: 3, memory: 64 * 1024, threads: 4}

// backupMu serializes backups and restores: each takes up to 64 MiB.
var backupMu sync.Mutex

// parseBackupHeader checks the header of b and returns it with the
// ciphertext.
func parseBackupHeader(b []byte) (backupHeader, []byte, error) {
	var h backupHeader
	if len(b) > maxBackupSize+backupHeaderLen+chacha20poly1305.Overhead {
		return h, nil, errBackupTooLarge
	}
	if len(b) < backupHeaderLen+chacha20poly1305.Overhead || string(b[:len(backupMagic)]) != backupMagic {
		return h, nil, errNotBackup
	}
	p := b[len(backupMagic):]
	if p[0] != backupVersion {
		return h, nil, errBackupVersion
	}
	h.time, h.memory, h.threads = binary.BigEndian.Uint32(p[1:5]), binary.BigEndian.Uint32(p[5:9]), p[9]
	if h.time < 1 || h.time > maxBackupArgonTime || h.memory < minBackupArgonMemory || h.memory > maxBackupArgonMemory ||
		h.threads < 1 || h.threads > maxBackupThreads {
		return h, nil, errBackupParams
	}
	h.salt = p[10:26]
	h.nonce = p[26 : 26+chacha20poly1305.NonceSizeX]
	return h, b[backupHeaderLen:], nil
}

// sealBackup encrypts payload with password.
func sealBackup(payload backupPayload, password string) ([]byte, error) {
	plain, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	if len(plain) > maxBackupSize {
		return nil, errBackupTooLarge
	}
	hdr := make([]byte, 0, backupHeaderLen)
	hdr = append(hdr, backupMagic...)
	hdr = append(hdr, backupVersion)
	hdr = binary.BigEndian.AppendUint32(hdr, backupKDF.time)
	hdr = binary.BigEndian.AppendUint32(hdr, backupKDF.memory)
	hdr = append(hdr, backupKDF.threads)
	salt := make([]byte, 16+chacha20poly1305.NonceSizeX)
	rand.Read(salt)
	hdr = append(hdr, salt...)
	h, _, err := parseBackupHeader(append(hdr, make([]byte, chacha20poly1305.Overhead)...))
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(argon2.IDKey([]byte(password), h.salt, h.time, h.memory, h.threads, chacha20poly1305.KeySize))
	if err != nil {
		return nil, err
	}
	return aead.Seal(hdr, h.nonce, plain, hdr), nil
}

// openBackup decrypts and validates a backup.
func openBackup(b []byte, password string) (backupPayload, error) {
	h, ct, err := parseBackupHeader(b)
	if err != nil {
		return backupPayload{}, err
	}
	aead, err := chacha20poly1305.NewX(argon2.IDKey([]byte(password), h.salt, h.time, h.memory, h.threads, chacha20poly1305.KeySize))
	if err != nil {
		return backupPayload{}, err
	}
	plain, err := aead.Open(nil, h.nonce, ct, b[:backupHeaderLen])
	if err != nil {
		return backupPayload{}, errBackupOpen
	}
	return decodeBackupPayload(plain)
}

// decodeBackupPayload parses and validates a decrypted payload: known
// version, only paths under backupEntries, a node identity that loads and
// matches NodeID, and panel accounts that load.
func decodeBackupPayload(plain []byte) (backupPayload, error) {
	var p backupPayload
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, fmt.Errorf("%w: %v", errBackupContent, err)
	}
	if dec.More() {
		return p, fmt.Errorf("%w: data after the content", errBackupContent)
	}
	if p.Version != 1 {
		return p, fmt.Errorf("%w: content version %d", errBackupContent, p.Version)
	}
	for name := range p.Files {
		if !validBackupPath(name) {
			return p, fmt.Errorf("%w: file %q is not part of a box's state", errBackupContent, name)
		}
	}
	if _, ok := p.Files[state.FileName]; !ok {
		return p, fmt.Errorf("%w: no node identity", errBackupContent)
	}
	if b, ok := p.Files[PanelDir+"/"+AccountsFile]; ok {
		if _, err := decodeAccounts(b); err != nil {
			return p, fmt.Errorf("%w: the accounts: %v", errBackupContent, err)
		}
	}
	return p, nil
}

// validBackupPath reports whether name is a clean relative path under one
// of backupEntries, without temporary files.
func validBackupPath(name string) bool {
	if name == "" || !fs.ValidPath(name) || path.Clean(name) != name || strings.Contains(name, "\\") {
		return false
	}
	top, _, _ := strings.Cut(name, "/")
	return slices.Contains(backupEntries, top) && !strings.HasPrefix(path.Base(name), ".")
}

// collectBackup reads the state that a backup holds from stateDir.
func collectBackup(stateDir, nodeID string, now time.Time) (backupPayload, error) {
	p := backupPayload{Version: 1, Created: now.UTC(), NodeID: nodeID, Files: make(map[string][]byte)}
	root, err := os.OpenRoot(stateDir)
	if err != nil {
		return p, fmt.Errorf("opening the state directory: %w", err)
	}
	defer root.Close()
	total := 0
	err = fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name == "." {
			return nil
		}
		top, _, _ := strings.Cut(name, "/")
		if !slices.Contains(backupEntries, top) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !validBackupPath(name) {
			return nil
		}
		b, err := root.ReadFile(name)
		if err != nil {
			return err
		}
		if total += len(b); total > maxBackupSize {
			return errBackupTooLarge
		}
		p.Files[name] = b
		return nil
	})
	if err != nil {
		return p, fmt.Errorf("reading the state for a backup: %w", err)
	}
	return p, nil
}

// stageRestore writes p into the restore directory of stateDir, for the
// next start to apply (applyRestore); the running daemon's state is not
// touched. A failure removes what it wrote.
func stageRestore(stateDir string, p backupPayload) (err error) {
	dir := filepath.Join(stateDir, restoreDir)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing an old restore: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("preparing the restore: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("preparing the restore: %w", err)
	}
	defer root.Close()
	var tops []string
	for _, name := range slices.Sorted(maps.Keys(p.Files)) {
		if d := path.Dir(name); d != "." {
			if err := root.MkdirAll(d, 0o700); err != nil {
				return fmt.Errorf("preparing the restore: %w", err)
			}
		}
		if err := writeRootFile(root, name, p.Files[name]); err != nil {
			return fmt.Errorf("preparing the restore: %w", err)
		}
		top, _, _ := strings.Cut(name, "/")
		if !slices.Contains(tops, top) {
			tops = append(tops, top)
		}
	}
	// The identity must load, and be the one the backup names.
	n, err := state.Open(context.Background(), state.Config{Dir: dir})
	if err != nil || n.ID() != p.NodeID {
		return fmt.Errorf("%w: the node identity does not load", errBackupContent)
	}
	if err := atomicfile.Write(filepath.Join(dir, restoreMarker), []byte(strings.Join(tops, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("preparing the restore: %w", err)
	}
	return nil
}

func writeRootFile(root *os.Root, name string, b []byte) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// applyRestore replaces the state in stateDir by a complete staged restore,
// if there is one; it runs at start, before anything reads the state. It
// is idempotent: after a crash in the middle the next start finishes it.
// It reports whether it applied one.
func applyRestore(stateDir string) (bool, error) {
	if fi, err := os.Stat(stateDir); err != nil || !fi.IsDir() {
		return false, nil // opening the state reports it
	}
	dir := filepath.Join(stateDir, restoreDir)
	marker, err := os.ReadFile(filepath.Join(dir, restoreMarker))
	if errors.Is(err, fs.ErrNotExist) {
		// Nothing staged, or a restore that was never completed.
		if err := os.RemoveAll(dir); err != nil {
			return false, fmt.Errorf("removing an incomplete restore: %w", err)
		}
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the staged restore: %w", err)
	}
	inBackup := strings.Fields(string(marker))
	old := filepath.Join(stateDir, restoreOldDir)
	if err := os.MkdirAll(old, 0o700); err != nil {
		return false, fmt.Errorf("applying the restore: %w", err)
	}
	for _, name := range backupEntries {
		staged := filepath.Join(dir, name)
		_, serr := os.Lstat(staged)
		if serr != nil && !errors.Is(serr, fs.ErrNotExist) {
			return false, fmt.Errorf("applying the restore: %w", serr)
		}
		if serr != nil && slices.Contains(inBackup, name) {
			continue // moved in already by an interrupted run
		}
		cur := filepath.Join(stateDir, name)
		if _, err := os.Lstat(cur); err == nil {
			if err := os.RemoveAll(filepath.Join(old, name)); err != nil {
				return false, fmt.Errorf("applying the restore: %w", err)
			}
			if err := os.Rename(cur, filepath.Join(old, name)); err != nil {
				return false, fmt.Errorf("applying the restore: %w", err)
			}
		}
		if serr == nil {
			if err := os.Rename(staged, cur); err != nil {
				return false, fmt.Errorf("applying the restore: %w", err)
			}
		}
	}
	if err := atomicfile.SyncDir(stateDir); err != nil {
		return false, fmt.Errorf("applying the restore: %w", err)
	}
	return true, errors.Join(os.RemoveAll(dir), os.RemoveAll(old))
}

// readBackupUpload reads an uploaded backup, at most maxBackupSize plus
// its header.
func readBackupUpload(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(maxBackupSize+backupHeaderLen+chacha20poly1305.Overhead+1)))
	if err != nil {
		return nil, fmt.Errorf("reading the backup: %w", err)
	}
	return b, nil
}
