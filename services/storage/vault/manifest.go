package vault

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/cloudbox/cloudbox/internal/xeddsa"
)

// Limits of the format; parsers refuse what exceeds them.
const (
	// MaxShares is the largest N.
	MaxShares = 32
	// MaxFileSize is the largest file the vault stores, in bytes.
	MaxFileSize = 128 << 20
	// MaxManifestSize is the largest signed manifest, in bytes.
	MaxManifestSize = 16 << 10
	// maxIDLen bounds node and file IDs.
	maxIDLen = 64
)

// manifestVersion is the version of the manifest format.
const manifestVersion = 1

// Manifest describes one vault file: who owns it, how it is split, the
// hash of every share and who holds it. The owner signs it; a new
// placement (a repair) is a new manifest with a higher Seq and the same
// hashes.
type Manifest struct {
	Version int `json:"v"`
	// Owner is the node ID of the owner box; File the file's random ID
	// (32 hex digits).
	Owner string `json:"owner"`
	File  string `json:"file"`
	// Seq orders the manifests of one file: the highest wins.
	Seq uint64 `json:"seq"`
	// Size is the length of the ciphertext, which the shares hold padded.
	Size int64 `json:"size"`
	// K shares of N rebuild the file; each share holds ShardSize bytes.
	K         int `json:"k"`
	N         int `json:"n"`
	ShardSize int `json:"shard_size"`
	// Hashes are the hex SHA-256 of the shares, by index.
	Hashes []string `json:"hashes"`
	// Holders are the node IDs of the boxes holding each share, by index;
	// "" while a share has no holder.
	Holders []string `json:"holders"`
	// Created is when the owner stored the file.
	Created time.Time `json:"created"`
}

// signedManifest is the wire form: the manifest's JSON and the owner's
// XEdDSA signature over it.
type signedManifest struct {
	Manifest []byte `json:"manifest"`
	Sig      []byte `json:"sig"`
}

// manifestContext separates manifest signatures from the node key's other
// uses.
const manifestContext = "cloudbox vault manifest v1\x00"

// Sign returns the signed wire form of m.
func (m *Manifest) Sign(signer *xeddsa.Signer) ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("signing manifest: %w", err)
	}
	body, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding manifest: %w", err)
	}
	sig, err := signer.Sign(rand.Reader, append([]byte(manifestContext), body...))
	if err != nil {
		return nil, fmt.Errorf("signing manifest: %w", err)
	}
	return json.Marshal(signedManifest{Manifest: body, Sig: sig})
}

// KeyFunc returns the node key of a member by node ID; false when it is
// not a member.
type KeyFunc func(nodeID string) ([32]byte, bool)

// ParseManifest decodes a signed manifest, checks its fields and verifies
// its signature with the owner's key from keys.
func ParseManifest(b []byte, keys KeyFunc) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("manifest of %d bytes: %w", len(b), ErrMalformed)
	}
	var sm signedManifest
	if err := strictJSON(b, &sm); err != nil {
		return nil, fmt.Errorf("manifest: %w: %v", ErrMalformed, err)
	}
	var m Manifest
	if err := strictJSON(sm.Manifest, &m); err != nil {
		return nil, fmt.Errorf("manifest body: %w: %v", ErrMalformed, err)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	key, ok := keys(m.Owner)
	if !ok {
		return nil, fmt.Errorf("manifest of file %s by %s: %w", m.File, m.Owner, ErrUnknownOwner)
	}
	if !xeddsa.Verify(key, append([]byte(manifestContext), sm.Manifest...), sm.Sig) {
		return nil, fmt.Errorf("manifest of file %s by %s: %w", m.File, m.Owner, ErrBadSignature)
	}
	return &m, nil
}

func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("data after the JSON value")
	}
	return nil
}

// validate checks the limits documented on Manifest.
func (m *Manifest) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("manifest: %w: %s", ErrMalformed, fmt.Sprintf(format, a...))
	}
	switch {
	case m.Version != manifestVersion:
		return bad("version %d, want %d", m.Version, manifestVersion)
	case !validID(m.Owner):
		return bad("owner %q", m.Owner)
	case !validFileID(m.File):
		return bad("file ID %q", m.File)
	case m.N < 2 || m.N > MaxShares || m.K < 1 || m.K >= m.N:
		return bad("k=%d n=%d, want 1 <= k < n <= %d", m.K, m.N, MaxShares)
	case m.Size < 0 || m.Size > MaxFileSize+overhead:
		return bad("size %d", m.Size)
	case m.ShardSize < 0 || int64(m.ShardSize)*int64(m.K) < m.Size || int64(m.ShardSize) > (m.Size+int64(m.K)-1)/int64(m.K)+64:
		return bad("shard size %d for size %d and k=%d", m.ShardSize, m.Size, m.K)
	case len(m.Hashes) != m.N || len(m.Holders) != m.N:
		return bad("%d hashes and %d holders for n=%d", len(m.Hashes), len(m.Holders), m.N)
	}
	for i, h := range m.Hashes {
		if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
			return bad("hash %d %q", i, h)
		}
	}
	for i, h := range m.Holders {
		if h != "" && !validID(h) {
			return bad("holder %d %q", i, h)
		}
		if h != "" && slices.Index(m.Holders, h) != i {
			return bad("holder %s twice", h)
		}
	}
	return nil
}

// validID reports whether s can be a node ID: 1 to 64 letters and digits.
func validID(s string) bool {
	if len(s) == 0 || len(s) > maxIDLen {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// validFileID reports whether s is 32 lowercase hex digits.
func validFileID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// sameContent reports whether a and b describe the same shares (they may
// differ in Seq and Holders).
func sameContent(a, b *Manifest) bool {
	return a.Owner == b.Owner && a.File == b.File && a.Size == b.Size && a.K == b.K && a.N == b.N &&
		a.ShardSize == b.ShardSize && slices.Equal(a.Hashes, b.Hashes)
}
