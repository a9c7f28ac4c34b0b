package appliance

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Passwords are hashed with Argon2id (RFC 9106), not bcrypt: it is the
// memory-hard choice that RFC 9106 and OWASP recommend, it has no 72-byte
// input limit, and golang.org/x/crypto, already a dependency, implements
// it. The parameters are OWASP's minimum for Argon2id (19 MiB, 2 passes,
// 1 lane): about 50 ms on a Raspberry Pi 4, and at most maxHashing hashes
// run at once, so a flood of logins cannot exhaust the box's memory.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
	// maxHashing bounds the concurrent password hashes (19 MiB each).
	maxHashing = 2
)

// Password length bounds, in bytes. The maximum keeps hashing bounded.
const (
	minPasswordLen = 10
	maxPasswordLen = 256
)

// hashing is the semaphore of maxHashing.
var hashing = make(chan struct{}, maxHashing)

var b64 = base64.RawStdEncoding

// hashPassword returns the PHC string of password:
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>.
func hashPassword(password string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("reading random salt: %w", err)
	}
	key := argonKey(password, salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

func argonKey(password string, salt []byte, t, m uint32, p uint8, n uint32) []byte {
	defer releaseHashMemory() // runs last: the hash's memory is garbage by then
	hashing <- struct{}{}
	defer func() { <-hashing }()
	return argon2.IDKey([]byte(password), salt, t, m, p, n)
}

// errBadHash means a stored password hash does not parse.
var errBadHash = errors.New("malformed password hash")

// checkPassword reports whether password matches the PHC string encoded;
// it fails on a hash it cannot parse or whose parameters are out of the
// bounds this box can afford.
func checkPassword(encoded, password string) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return false, errBadHash
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil ||
		m < 8 || m > 256*1024 || t < 1 || t > 10 || p < 1 || p > 4 {
		return false, errBadHash
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return false, errBadHash
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) < 16 || len(want) > 64 {
		return false, errBadHash
	}
	got := argonKey(password, salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// checkNewPassword says what is wrong with a new password, "" if nothing.
func checkNewPassword(password, again string) string {
	switch {
	case len(password) < minPasswordLen:
		return fmt.Sprintf("The password is too short: use at least %d characters (a few words are easy to remember).", minPasswordLen)
	case len(password) > maxPasswordLen:
		return fmt.Sprintf("The password is too long: use at most %d characters.", maxPasswordLen)
	case password != again:
		return "The two passwords differ: type the same password twice."
	}
	return ""
}
