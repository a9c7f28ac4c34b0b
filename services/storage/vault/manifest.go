package vault

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
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
	// MaxStripes is the largest number of stripes of a file.
	MaxStripes = 1 << 16
	// MinStripe and MaxStripe bound a file's stripe, the plaintext bytes
	// encrypted and erasure-coded at once.
	MinStripe = 4 << 10
	MaxStripe = 16 << 20
	// DefaultStripe is the stripe of Config's zero value: the owner and
	// a reader hold a few stripes in memory at a time.
	DefaultStripe = 1 << 20
	// MaxFileSize is the largest file the vault stores, in bytes.
	MaxFileSize = 64 << 30
	// MaxManifestSize is the largest signed manifest, in bytes.
	MaxManifestSize = 16 << 10
	// maxIDLen bounds node and file IDs.
	maxIDLen = 64
)

// manifestVersion is the version of the manifest format.
const manifestVersion = 2

// Manifest describes one vault file: who owns it, how it is split, the
// hash of every share and who holds it. The owner signs it; a new
// placement (a repair) is a new manifest with a higher Seq and the same
// hashes.
//
// A file is cut into stripes of Stripe bytes (the last one shorter; an
// empty file has one empty stripe). Each stripe is encrypted on its own
// (the stripe's index is its nonce) and erasure-coded into N shards of
// which any K rebuild it; share i is shard i of every stripe, in order.
// Each share carries the SHA-256 of each of its shards (its hash list);
// Hashes holds the SHA-256 of each share's hash list, so that a reader
// checks every shard as it streams, before it uses it.
type Manifest struct {
	Version int `json:"v"`
	// Owner is the node ID of the owner box; File the file's random ID
	// (32 hex digits).
	Owner string `json:"owner"`
	File  string `json:"file"`
	// Seq orders the manifests of one file: the highest wins.
	Seq uint64 `json:"seq"`
	// Size is the length of the file (plaintext); Stripe the plaintext
	// bytes per stripe.
	Size   int64 `json:"size"`
	Stripe int   `json:"stripe"`
	// K shares of N rebuild the file.
	K int `json:"k"`
	N int `json:"n"`
	// Hashes are the hex SHA-256 of the shares' hash lists, by index.
	Hashes []string `json:"hashes"`
	// Holders are the node IDs of the boxes holding each share, by index;
	// "" while a share has no holder.
	Holders []string `json:"holders"`
	// Created is when the owner stored the file.
	Created time.Time `json:"created"`
}

// stripes returns the number of stripes of the file.
func (m *Manifest) stripes() int {
	return max(1, int((m.Size+int64(m.Stripe)-1)/int64(m.Stripe)))
}

// stripePlain returns the plaintext length of stripe j.
func (m *Manifest) stripePlain(j int) int {
	return int(min(int64(m.Stripe), m.Size-int64(j)*int64(m.Stripe)))
}

// shardLen returns the length of each shard of stripe j.
func (m *Manifest) shardLen(j int) int {
	return (m.stripePlain(j) + overhead + m.K - 1) / m.K
}

// dataOffset returns where the shard of stripe j starts in a share's
// data.
func (m *Manifest) dataOffset(j int) int64 {
	return int64(j) * int64(m.shardLen(0))
}

// shareDataLen returns the length of each share's data.
func (m *Manifest) shareDataLen() int64 {
	n := m.stripes()
	return m.dataOffset(n-1) + int64(m.shardLen(n-1))
}

// hashListLen returns the length of each share's hash list.
func (m *Manifest) hashListLen() int { return m.stripes() * sha256.Size }

// shareSize returns the length of a share as a holder stores it, with a
// manifest of manifestLen bytes.
func (m *Manifest) shareSize(manifestLen int) int64 {
	return uploadHeader + m.shareDataLen() + int64(m.hashListLen()) + int64(manifestLen) + uploadFooter
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
	return parseManifest(b, keys, true)
}

// parseManifest is ParseManifest, without the signature's check unless
// verify: for what a holder checked as it stored it.
func parseManifest(b []byte, keys KeyFunc, verify bool) (*Manifest, error) {
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
	if !verify {
		return &m, nil
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
	case m.Size < 0 || m.Size > MaxFileSize:
		return bad("size %d", m.Size)
	case m.Stripe < MinStripe || m.Stripe > MaxStripe:
		return bad("stripe %d, want %d to %d", m.Stripe, MinStripe, MaxStripe)
	case (m.Size+int64(m.Stripe)-1)/int64(m.Stripe) > MaxStripes:
		return bad("%d bytes in stripes of %d: more than %d stripes", m.Size, m.Stripe, MaxStripes)
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
	return a.Owner == b.Owner && a.File == b.File && a.Size == b.Size && a.Stripe == b.Stripe && a.K == b.K && a.N == b.N &&
		slices.Equal(a.Hashes, b.Hashes)
}
