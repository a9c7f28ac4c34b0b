//go:build !router

package appliance

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
	"github.com/cloudbox/cloudbox/stream"
)

// StreamKeysFile is where, inside the state directory, the publish keys of
// streams are kept (SHA-256 of each key, by stream name).
const StreamKeysFile = "streams/keys.json"

// streamKeysVersion is the version of the keys file.
const streamKeysVersion = 1

// streamKeys are the publish keys of streams: a key lets a WHIP client
// (OBS, a camera) publish that one stream without an account. Only
// hashes are stored.
type streamKeys struct {
	path string

	mu   sync.Mutex
	hash map[string][32]byte // by stream name
}

type streamKeysDoc struct {
	Version int               `json:"version"`
	Keys    map[string]string `json:"keys"` // name -> hex SHA-256
}

// loadStreamKeys reads the keys file of stateDir; a missing file means no
// keys.
func loadStreamKeys(stateDir string) (*streamKeys, error) {
	k := &streamKeys{path: filepath.Join(stateDir, StreamKeysFile), hash: make(map[string][32]byte)}
	b, err := os.ReadFile(k.path)
	if errors.Is(err, fs.ErrNotExist) {
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading stream keys: %w", err)
	}
	var doc streamKeysDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("reading stream keys %s: %w", k.path, err)
	}
	if doc.Version != streamKeysVersion {
		return nil, fmt.Errorf("stream keys %s: version %d, want %d", k.path, doc.Version, streamKeysVersion)
	}
	for name, h := range doc.Keys {
		var sum [32]byte
		if stream.ValidName(name) != nil || len(h) != 64 {
			return nil, fmt.Errorf("stream keys %s: bad entry %q", k.path, name)
		}
		if _, err := fmt.Sscanf(h, "%x", &sum); err != nil {
			return nil, fmt.Errorf("stream keys %s: entry %q: %w", k.path, name, err)
		}
		k.hash[name] = sum
	}
	return k, nil
}

// issue creates a new publish key for stream name, replacing any old one.
func (k *streamKeys) issue(name string) (string, error) {
	var raw [24]byte
	rand.Read(raw[:])
	key := "cbs1_" + base64.RawURLEncoding.EncodeToString(raw[:])
	k.mu.Lock()
	defer k.mu.Unlock()
	old, had := k.hash[name]
	k.hash[name] = sha256.Sum256([]byte(key))
	if err := k.saveLocked(); err != nil {
		if had {
			k.hash[name] = old
		} else {
			delete(k.hash, name)
		}
		return "", err
	}
	return key, nil
}

func (k *streamKeys) saveLocked() error {
	doc := streamKeysDoc{Version: streamKeysVersion, Keys: make(map[string]string)}
	for name, h := range k.hash {
		doc.Keys[name] = fmt.Sprintf("%x", h)
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(k.path), 0o700); err != nil {
		return fmt.Errorf("saving stream keys: %w", err)
	}
	if err := atomicfile.Write(k.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving stream keys: %w", err)
	}
	return nil
}

// allows reports whether r carries the publish key of stream name
// (Authorization: Bearer KEY, as WHIP clients send it, RFC 9725 §4.5).
func (k *streamKeys) allows(r *http.Request, name string) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !strings.HasPrefix(tok, "cbs1_") {
		return false
	}
	k.mu.Lock()
	want, found := k.hash[name]
	k.mu.Unlock()
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return found && subtle.ConstantTimeCompare(got[:], want[:]) == 1
}
