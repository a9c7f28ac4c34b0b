package vault

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"

	"github.com/klauspost/reedsolomon"
	"golang.org/x/crypto/chacha20poly1305"
)

// overhead is what encryption adds to each stripe: the AEAD tag.
const overhead = chacha20poly1305.Overhead

// coder encrypts and erasure-codes the stripes of one file, and back. It
// is not safe for concurrent use.
type coder struct {
	m    *Manifest
	aead cipher.AEAD
	enc  reedsolomon.Encoder
	ad   []byte
	// sealed is the buffer of one sealed stripe.
	sealed []byte
}

// newCoder returns the coder of m's file with its key; key may be nil
// for a coder that only rebuilds shards (a repair).
func newCoder(m *Manifest, key []byte) (*coder, error) {
	enc, err := reedsolomon.New(m.K, m.N-m.K)
	if err != nil {
		return nil, fmt.Errorf("erasure coding k=%d n=%d: %w", m.K, m.N, err)
	}
	c := &coder{m: m, enc: enc, ad: []byte(m.Owner + ":" + m.File)}
	if key != nil {
		if c.aead, err = chacha20poly1305.New(key); err != nil {
			return nil, fmt.Errorf("encrypting: %w", err)
		}
	}
	return c, nil
}

// nonce returns the nonce of stripe j: every key encrypts one file only,
// so the stripe's index is a unique nonce.
func nonce(j int) []byte {
	var n [chacha20poly1305.NonceSize]byte
	binary.BigEndian.PutUint64(n[4:], uint64(j))
	return n[:]
}

// encode encrypts plain, stripe j, and splits it into N new shards.
func (c *coder) encode(j int, plain []byte) ([][]byte, error) {
	size := c.m.shardLen(j)
	buf := make([]byte, size*c.m.N)
	// The sealed stripe goes straight into the data shards; the rest is
	// zero padding.
	sealed := c.aead.Seal(buf[:0], nonce(j), plain, c.ad)
	clear(buf[len(sealed) : size*c.m.K])
	shards := make([][]byte, c.m.N)
	for i := range shards {
		shards[i] = buf[i*size : (i+1)*size : (i+1)*size]
	}
	if err := c.enc.Encode(shards); err != nil {
		return nil, fmt.Errorf("erasure coding stripe %d: %w", j, err)
	}
	return shards, nil
}

// reconstruct fills in the nil shards of a stripe from at least K
// present ones (each verified already); with all, the parity shards too.
func (c *coder) reconstruct(shards [][]byte, all bool) error {
	var err error
	if all {
		err = c.enc.Reconstruct(shards)
	} else {
		err = c.enc.ReconstructData(shards)
	}
	if err != nil {
		return fmt.Errorf("rebuilding file %s: %w", c.m.File, err)
	}
	return nil
}

// decode rebuilds and decrypts stripe j from its shards and appends the
// plaintext to dst.
func (c *coder) decode(j int, shards [][]byte, dst []byte) ([]byte, error) {
	if err := c.reconstruct(shards, false); err != nil {
		return nil, err
	}
	n := c.m.stripePlain(j) + overhead
	c.sealed = c.sealed[:0]
	for _, s := range shards[:c.m.K] {
		c.sealed = append(c.sealed, s[:min(len(s), n-len(c.sealed))]...)
	}
	plain, err := c.aead.Open(dst, nonce(j), c.sealed, c.ad)
	if err != nil {
		return nil, fmt.Errorf("file %s: %w", c.m.File, ErrWrongKey)
	}
	return plain, nil
}
