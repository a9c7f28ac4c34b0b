package state

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
)

// DefaultDir is the state directory on a box: gokrazy mounts the writable
// partition at /perm.
const DefaultDir = "/perm/cloudbox"

// FileName is the name of the node state file inside the state directory.
const FileName = "node.json"

// DefaultName is the node name used when neither Config.Name nor the host
// name is usable.
const DefaultName = "cloudbox"

// keySize is the length of an X25519 private key in bytes.
const keySize = 32

// corruptTimeFormat is the UTC timestamp appended to a corrupt file's name.
const corruptTimeFormat = "20060102T150405Z"

// nodeIDEncoding is lowercase RFC 4648 base32 without padding: node IDs are
// valid DNS labels and safe in file names and URLs.
var nodeIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Node is the persistent identity of this box. Open returns it; it is not
// modified afterwards and is safe for concurrent reads.
type Node struct {
	// Name is the human-readable node name chosen on first start.
	Name string
	// Created is when the identity was created, in UTC, to the second.
	Created time.Time
	// PrivateKey is the node's X25519 key; the overlay uses it later.
	PrivateKey *ecdh.PrivateKey
}

// ID returns the node ID: the first 16 bytes of the SHA-256 hash of the
// 32-byte X25519 public key, in lowercase base32 without padding (26
// characters, e.g. "mzxw6ytboi4dsmzrgq3tmnzqha"). It depends only on the key,
// so it is stable for the life of the identity.
func (n *Node) ID() string {
	sum := sha256.Sum256(n.PrivateKey.PublicKey().Bytes())
	return nodeIDEncoding.EncodeToString(sum[:16])
}

// Config configures Open. The zero value opens DefaultDir and names a new
// node after the host.
type Config struct {
	// Dir is the state directory. It is created with mode 0700 if it does not
	// exist; its parent must exist. An existing directory is used as it is.
	// Zero means DefaultDir.
	Dir string

	// Name is the node name used when a new identity is created; it is
	// ignored when node.json already exists, but still checked: 1 to 63 bytes
	// of UTF-8 without control characters or surrounding spaces. Zero means
	// the host name if it is a valid name, else DefaultName.
	Name string

	// Logger receives the "state corrupt, moved aside" warning and the
	// "node identity created" event. Nil discards them.
	Logger *slog.Logger

	// Now is the clock for the creation time and the corrupt file's name.
	// Nil means time.Now.
	Now func() time.Time
}

// Open loads the node identity from cfg.Dir, or creates and stores a new one
// if there is none or the stored one is corrupt (see the package comment).
// Errors reading or writing the directory are returned with the path.
func Open(ctx context.Context, cfg Config) (*Node, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir := cfg.Dir
	if dir == "" {
		dir = DefaultDir
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	name := cfg.Name
	if name != "" {
		if err := checkName(name); err != nil {
			return nil, fmt.Errorf("node name %q: %w", name, err)
		}
	}

	if err := ensureDir(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, FileName)
	b, err := readFile(path)
	switch {
	case err == nil:
		n, derr := decode(b)
		if derr == nil {
			return n, nil
		}
		moved, err := moveAside(path, now())
		if err != nil {
			return nil, fmt.Errorf("moving corrupt %s aside: %w", path, err)
		}
		log.Warn("state corrupt, moved aside", "path", path, "moved_to", moved, "error", derr)
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, fmt.Errorf("reading node state: %w", err)
	}

	if name == "" {
		name = hostName()
	}
	key, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating node key: %w", err)
	}
	n := &Node{Name: name, Created: now().UTC().Truncate(time.Second), PrivateKey: key}
	b, err = encode(n)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("writing node state: %w", err)
	}
	log.Info("node identity created", "path", path, "node_id", n.ID(), "name", n.Name)
	return n, nil
}

// ensureDir creates dir with mode 0700 unless it exists. It does not create
// parents: on a box a missing /perm means the partition is not mounted, and
// the state must not end up elsewhere.
func ensureDir(dir string) error {
	err := os.Mkdir(dir, 0o700)
	if err == nil {
		// Mkdir is subject to the umask; the key needs exactly 0700.
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("creating state directory: %w", err)
		}
		return atomicfile.SyncDir(filepath.Dir(dir))
	}
	if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating state directory: %w; its parent must exist and be writable (on a box: is /perm mounted?)", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("checking state directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("state directory %s exists but is not a directory", dir)
	}
	return nil
}

// readFile reads at most maxFileSize+1 bytes of path, enough for decode to
// reject an oversized file without reading all of it.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxFileSize+1))
}

// moveAside renames path to path.corrupt-<UTC timestamp>, with a numeric
// suffix if that name is taken, and returns the new name.
func moveAside(path string, now time.Time) (string, error) {
	base := path + ".corrupt-" + now.UTC().Format(corruptTimeFormat)
	target := base
	for i := 1; ; i++ {
		_, err := os.Lstat(target)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return "", err
		}
		target = fmt.Sprintf("%s-%d", base, i)
	}
	if err := os.Rename(path, target); err != nil {
		return "", err
	}
	return target, atomicfile.SyncDir(filepath.Dir(path))
}

// hostName returns the host name if it is a valid node name, else
// DefaultName. Only the first label of a fully qualified name is used.
func hostName() string {
	h, err := os.Hostname()
	if err != nil {
		return DefaultName
	}
	h, _, _ = strings.Cut(strings.TrimSpace(h), ".")
	if checkName(h) != nil {
		return DefaultName
	}
	return h
}
