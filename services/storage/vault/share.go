package vault

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
)

// shareMagic starts every share: the format and its version.
var shareMagic = []byte("CBVS1\n")

// shareHeader is magic, index (uint32) and manifest length (uint32), big
// endian; the signed manifest and the shard follow.
const shareHeader = 6 + 4 + 4

// Share is one of a file's N shares: its index, the signed manifest the
// owner stored it with, and the shard.
type Share struct {
	Index    int
	Manifest []byte // signed wire form
	Data     []byte
}

// MaxShareSize is the largest encoded share.
const MaxShareSize = shareHeader + MaxManifestSize + MaxFileSize + overhead

// Encode returns the wire form of s.
func (s *Share) Encode() []byte {
	r, n := s.Reader()
	b := bytes.NewBuffer(make([]byte, 0, n))
	b.ReadFrom(r) // reads from memory: no error
	return b.Bytes()
}

// Reader returns the wire form of s as a reader that does not copy the
// data, and its length.
func (s *Share) Reader() (io.Reader, int64) {
	h := make([]byte, 0, shareHeader)
	h = append(h, shareMagic...)
	h = binary.BigEndian.AppendUint32(h, uint32(s.Index))
	h = binary.BigEndian.AppendUint32(h, uint32(len(s.Manifest)))
	return io.MultiReader(bytes.NewReader(h), bytes.NewReader(s.Manifest), bytes.NewReader(s.Data)),
		int64(len(h) + len(s.Manifest) + len(s.Data))
}

// ParseShare splits the wire form of a share; it checks the framing only.
// The returned share aliases b.
func ParseShare(b []byte) (*Share, error) {
	if len(b) < shareHeader || !bytes.Equal(b[:len(shareMagic)], shareMagic) {
		return nil, fmt.Errorf("share: %w: no share header", ErrMalformed)
	}
	if len(b) > MaxShareSize {
		return nil, fmt.Errorf("share: %w: %d bytes", ErrMalformed, len(b))
	}
	idx := binary.BigEndian.Uint32(b[6:])
	ml := binary.BigEndian.Uint32(b[10:])
	if idx >= MaxShares || ml > MaxManifestSize || int(ml) > len(b)-shareHeader {
		return nil, fmt.Errorf("share: %w: index %d, manifest of %d bytes", ErrMalformed, idx, ml)
	}
	end := shareHeader + int(ml)
	return &Share{Index: int(idx), Manifest: b[shareHeader:end:end], Data: b[end:]}, nil
}

// Verify checks the share against m: index, size and hash.
func (s *Share) Verify(m *Manifest) error {
	if s.Index < 0 || s.Index >= m.N {
		return fmt.Errorf("share %d of file %s with n=%d: %w", s.Index, m.File, m.N, ErrMalformed)
	}
	if len(s.Data) != m.ShardSize {
		return fmt.Errorf("share %d of file %s: %d bytes, want %d: %w", s.Index, m.File, len(s.Data), m.ShardSize, ErrCorruptShare)
	}
	sum := sha256.Sum256(s.Data)
	if hex.EncodeToString(sum[:]) != m.Hashes[s.Index] {
		return fmt.Errorf("share %d of file %s: %w", s.Index, m.File, ErrCorruptShare)
	}
	return nil
}

// ParseVerifiedShare parses a share, its manifest (with keys) and checks
// the share against it.
func ParseVerifiedShare(b []byte, keys KeyFunc) (*Share, *Manifest, error) {
	s, err := ParseShare(b)
	if err != nil {
		return nil, nil, err
	}
	m, err := ParseManifest(s.Manifest, keys)
	if err != nil {
		return nil, nil, err
	}
	if err := s.Verify(m); err != nil {
		return nil, nil, err
	}
	return s, m, nil
}
