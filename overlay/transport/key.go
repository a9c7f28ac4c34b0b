package transport

import (
	"encoding/hex"
	"fmt"

	"golang.org/x/crypto/curve25519"
)

// Key is a node's X25519 public key: its WireGuard static key and its disco
// box key.
type Key [32]byte

// String returns the key in lowercase hex, the form ParseEndpoint accepts.
func (k Key) String() string { return hex.EncodeToString(k[:]) }

// ShortString returns the first 8 hex digits, for logs.
func (k Key) ShortString() string { return hex.EncodeToString(k[:4]) }

// IsZero reports whether k is all zeros.
func (k Key) IsZero() bool { return k == Key{} }

// ParseKey parses 64 hex digits.
func ParseKey(s string) (Key, error) {
	var k Key
	if len(s) != 2*len(k) {
		return k, fmt.Errorf("parsing key: want %d hex digits, got %d", 2*len(k), len(s))
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return k, fmt.Errorf("parsing key: %w", err)
	}
	return k, nil
}

// PublicKey returns the public key of an X25519 private key (clamped as
// WireGuard and NaCl box clamp it).
func PublicKey(private [32]byte) Key {
	pub, err := curve25519.X25519(private[:], curve25519.Basepoint)
	if err != nil {
		// Only a low-order result can fail, and the base point is not one.
		return Key{}
	}
	return Key(pub)
}
