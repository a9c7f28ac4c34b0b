package vault

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/klauspost/reedsolomon"
	"golang.org/x/crypto/chacha20poly1305"
)

// overhead is what encryption adds to a file: the AEAD tag.
const overhead = chacha20poly1305.Overhead

// seal encrypts a file. Every key encrypts one file only, so the nonce is
// fixed; the owner and file ID are bound as additional data.
func seal(key []byte, owner, file string, plain []byte) ([]byte, error) {
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, fmt.Errorf("encrypting: %w", err)
	}
	var nonce [chacha20poly1305.NonceSize]byte
	return aead.Seal(nil, nonce[:], plain, []byte(owner+":"+file)), nil
}

// open decrypts what seal encrypted.
func open(key []byte, owner, file string, ct []byte) ([]byte, error) {
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, fmt.Errorf("decrypting: %w", err)
	}
	var nonce [chacha20poly1305.NonceSize]byte
	plain, err := aead.Open(nil, nonce[:], ct, []byte(owner+":"+file))
	if err != nil {
		return nil, fmt.Errorf("file %s: %w", file, ErrWrongKey)
	}
	return plain, nil
}

// split erasure-codes ct into n shards of which any k rebuild it, and
// returns them with their hex SHA-256. The data shards alias ct.
func split(ct []byte, k, n int) (shards [][]byte, hashes []string, err error) {
	enc, err := reedsolomon.New(k, n-k)
	if err != nil {
		return nil, nil, fmt.Errorf("erasure coding k=%d n=%d: %w", k, n, err)
	}
	// Split uses spare capacity of its argument: give it none.
	shards, err = enc.Split(ct[:len(ct):len(ct)])
	if err != nil {
		return nil, nil, fmt.Errorf("splitting: %w", err)
	}
	if err := enc.Encode(shards); err != nil {
		return nil, nil, fmt.Errorf("erasure coding: %w", err)
	}
	for _, s := range shards {
		sum := sha256.Sum256(s)
		hashes = append(hashes, hex.EncodeToString(sum[:]))
	}
	return shards, hashes, nil
}

// rebuild fills in the nil shards from at least k present ones (each
// already verified against the manifest) and returns the ciphertext.
// With all, every missing shard is rebuilt (for a repair), else only the
// data shards.
func rebuild(m *Manifest, shards [][]byte, all bool) ([]byte, error) {
	enc, err := reedsolomon.New(m.K, m.N-m.K)
	if err != nil {
		return nil, fmt.Errorf("erasure coding k=%d n=%d: %w", m.K, m.N, err)
	}
	if all {
		err = enc.Reconstruct(shards)
	} else {
		err = enc.ReconstructData(shards)
	}
	if err != nil {
		return nil, fmt.Errorf("rebuilding file %s: %w", m.File, err)
	}
	var buf bytes.Buffer
	buf.Grow(int(m.Size))
	if err := enc.Join(&buf, shards, int(m.Size)); err != nil {
		return nil, fmt.Errorf("joining file %s: %w", m.File, err)
	}
	return buf.Bytes(), nil
}
