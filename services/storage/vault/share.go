package vault

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
)

// shareMagic starts every share: the format and its version.
var shareMagic = []byte("CBVS2\n")

// A share travels and rests in two forms. As the owner uploads it, and as
// its holder stores it, the hash list and the signed manifest follow the
// data, since the owner knows them only once it streamed every stripe:
//
//	magic | index (uint32) | data | hash list | signed manifest |
//	manifest length (uint32)
//
// As a holder serves it to a reader, the hash list comes first, so that
// the reader checks each shard before it uses it:
//
//	magic | index (uint32) | hash list | data from the offset asked for
//
// Integers are big endian; the lengths of the data and of the hash list
// follow from the manifest.
const (
	uploadHeader = 6 + 4
	uploadFooter = 4
)

// uploadHead returns the start of share idx as the owner uploads it.
func uploadHead(idx int) []byte {
	return binary.BigEndian.AppendUint32(bytes.Clone(shareMagic), uint32(idx))
}

// uploadTail returns the end of a share as the owner uploads it.
func uploadTail(hashes, manifest []byte) []byte {
	b := make([]byte, 0, len(hashes)+len(manifest)+uploadFooter)
	b = append(append(b, hashes...), manifest...)
	return binary.BigEndian.AppendUint32(b, uint32(len(manifest)))
}

// heldShare is a share as its holder stores it, parsed and checked.
type heldShare struct {
	Index    int
	Manifest *Manifest
	// Raw is the signed manifest, Hashes the hash list.
	Raw, Hashes []byte
}

// dataStart is where the data of a stored share starts.
const dataStart = uploadHeader

// hashListOffset returns where the hash list of a stored share starts.
func (h *heldShare) hashListOffset() int64 { return dataStart + h.Manifest.shareDataLen() }

// parseHeld checks a share of size bytes in r as the owner uploads it:
// framing, lengths, the manifest's signature (keys) and the hash list
// against it. It does not read the data: verifyData does. With keys nil,
// the signature is not checked (a share the store checked already).
func parseHeld(r io.ReaderAt, size int64, keys KeyFunc) (*heldShare, error) {
	if size < uploadHeader+uploadFooter {
		return nil, fmt.Errorf("share: %w: %d bytes", ErrMalformed, size)
	}
	var head [uploadHeader]byte
	if _, err := r.ReadAt(head[:], 0); err != nil {
		return nil, fmt.Errorf("reading share: %w", err)
	}
	if !bytes.Equal(head[:len(shareMagic)], shareMagic) {
		return nil, fmt.Errorf("share: %w: no share header", ErrMalformed)
	}
	idx := binary.BigEndian.Uint32(head[len(shareMagic):])
	var foot [uploadFooter]byte
	if _, err := r.ReadAt(foot[:], size-uploadFooter); err != nil {
		return nil, fmt.Errorf("reading share: %w", err)
	}
	ml := int64(binary.BigEndian.Uint32(foot[:]))
	if idx >= MaxShares || ml > MaxManifestSize || ml > size-uploadHeader-uploadFooter {
		return nil, fmt.Errorf("share: %w: index %d, manifest of %d bytes", ErrMalformed, idx, ml)
	}
	raw := make([]byte, ml)
	if _, err := r.ReadAt(raw, size-uploadFooter-ml); err != nil {
		return nil, fmt.Errorf("reading share: %w", err)
	}
	m, err := parseManifest(raw, keys, keys != nil)
	if err != nil {
		return nil, err
	}
	if int(idx) >= m.N {
		return nil, fmt.Errorf("share %d of file %s with n=%d: %w", idx, m.File, m.N, ErrMalformed)
	}
	if want := m.shareSize(len(raw)); size != want {
		return nil, fmt.Errorf("share %d of file %s: %d bytes, want %d: %w", idx, m.File, size, want, ErrCorruptShare)
	}
	h := &heldShare{Index: int(idx), Manifest: m, Raw: raw, Hashes: make([]byte, m.hashListLen())}
	if _, err := r.ReadAt(h.Hashes, h.hashListOffset()); err != nil {
		return nil, fmt.Errorf("reading share: %w", err)
	}
	if err := checkHashList(m, h.Index, h.Hashes); err != nil {
		return nil, err
	}
	return h, nil
}

// checkHashList checks the hash list of share idx against m.
func checkHashList(m *Manifest, idx int, hashes []byte) error {
	sum := sha256.Sum256(hashes)
	want, err := hex.DecodeString(m.Hashes[idx])
	if err != nil || len(hashes) != m.hashListLen() || subtle.ConstantTimeCompare(sum[:], want) != 1 {
		return fmt.Errorf("share %d of file %s: hash list: %w", idx, m.File, ErrCorruptShare)
	}
	return nil
}

// checkShard checks the shard of stripe j against a share's hash list.
func checkShard(m *Manifest, idx, j int, hashes, shard []byte) error {
	sum := sha256.Sum256(shard)
	if len(shard) != m.shardLen(j) || !bytes.Equal(sum[:], hashes[j*sha256.Size:(j+1)*sha256.Size]) {
		return fmt.Errorf("share %d of file %s, stripe %d: %w", idx, m.File, j, ErrCorruptShare)
	}
	return nil
}

// verifyData reads the data of a stored share and checks every shard.
func (h *heldShare) verifyData(r io.ReaderAt) error {
	m := h.Manifest
	br := bufio.NewReaderSize(io.NewSectionReader(r, dataStart, m.shareDataLen()), 64<<10)
	buf := make([]byte, m.shardLen(0))
	for j := range m.stripes() {
		b := buf[:m.shardLen(j)]
		if _, err := io.ReadFull(br, b); err != nil {
			return fmt.Errorf("reading share: %w", err)
		}
		if err := checkShard(m, h.Index, j, h.Hashes, b); err != nil {
			return err
		}
	}
	return nil
}

// readServedHead reads the head of share idx of m as a holder serves it
// and returns the checked hash list.
func readServedHead(r io.Reader, m *Manifest, idx int) ([]byte, error) {
	var head [uploadHeader]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, fmt.Errorf("reading share %d: %w", idx, err)
	}
	if !bytes.Equal(head[:len(shareMagic)], shareMagic) || binary.BigEndian.Uint32(head[len(shareMagic):]) != uint32(idx) {
		return nil, fmt.Errorf("share %d of file %s: %w: not the share asked for", idx, m.File, ErrCorruptShare)
	}
	hashes := make([]byte, m.hashListLen())
	if _, err := io.ReadFull(r, hashes); err != nil {
		return nil, fmt.Errorf("reading share %d: %w", idx, err)
	}
	if err := checkHashList(m, idx, hashes); err != nil {
		return nil, err
	}
	return hashes, nil
}
