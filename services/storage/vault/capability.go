package vault

import (
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
)

// capPrefix starts every capability.
const capPrefix = "cbvault1:"

// Cap is a read capability: which file, whose, and its key. Whoever holds
// it can read the file; it cannot change the file, which only the owner's
// node key can sign for.
type Cap struct {
	Owner string
	File  string
	Key   [chacha20poly1305.KeySize]byte
}

// String returns the capability's text form,
// "cbvault1:<owner>:<file>:<key in base64url>".
func (c Cap) String() string {
	return capPrefix + c.Owner + ":" + c.File + ":" + base64.RawURLEncoding.EncodeToString(c.Key[:])
}

// ParseCap parses the text form of a capability.
func ParseCap(s string) (Cap, error) {
	var c Cap
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), capPrefix)
	if !ok {
		return c, fmt.Errorf("capability: %w: want %s...", ErrMalformed, capPrefix)
	}
	parts := strings.Split(rest, ":")
	if len(parts) != 3 || !validID(parts[0]) || !validFileID(parts[1]) {
		return c, fmt.Errorf("capability: %w: want %s<owner>:<file>:<key>", ErrMalformed, capPrefix)
	}
	key, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(key) != len(c.Key) {
		return c, fmt.Errorf("capability: %w: key is not %d bytes of base64url", ErrMalformed, len(c.Key))
	}
	c.Owner, c.File = parts[0], parts[1]
	copy(c.Key[:], key)
	return c, nil
}
