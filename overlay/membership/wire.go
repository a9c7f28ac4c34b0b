package membership

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cloudbox/cloudbox/overlay/internal/wire"
)

// Limits of the encodings, see the package comment.
const (
	maxNameLen   = 63 // community and node names, in bytes: a DNS label
	maxGroups    = 16
	maxGroupLen  = 32
	maxReasonLen = 64
	maxBootstrap = 16

	// maxUnix is 9999-12-31T23:59:59Z, the last second a timestamp may
	// hold, so every time formats as RFC 3339.
	maxUnix = 253402300799

	// formatVersion is the version byte after every magic.
	formatVersion = 1
)

// encoder appends the big-endian wire encoding of fields. It does not check
// limits: callers validate before encoding.
type encoder struct{ wire.Encoder }

func newEncoder(capacity int) encoder { return encoder{wire.NewEncoder(capacity)} }

func (e *encoder) unix(t time.Time) { e.U64(uint64(t.Unix())) }

func (e *encoder) header(magic string) { e.Header(magic, formatVersion) }

func (e *encoder) addr4(a netip.Addr) {
	b := a.As4()
	e.Raw(b[:])
}

func (e *encoder) groups(g []string) {
	e.U8(uint8(len(g)))
	for _, s := range g {
		e.Str8(s)
	}
}

// decoder reads what encoder writes. The first error sticks: later reads
// return zero values, so parsers read every field and check the error once.
// Nothing it returns aliases the input, except bytes16 fields, which callers
// parse right away.
type decoder struct{ wire.Decoder }

func newDecoder(b []byte) decoder { return decoder{wire.NewDecoder(b)} }

func (d *decoder) header(magic string) { d.Header(magic, formatVersion) }

func (d *decoder) unix(what string) time.Time {
	v := d.U64(what)
	if d.Err() == nil && v > maxUnix {
		d.Failf("%s: %d seconds is after the year 9999", what, v)
	}
	return time.Unix(int64(v), 0).UTC()
}

func (d *decoder) addr4(what string) netip.Addr {
	var b [4]byte
	d.Array(b[:], what)
	return netip.AddrFrom4(b)
}

func (d *decoder) publicKey(what string) ed25519.PublicKey {
	k := make(ed25519.PublicKey, ed25519.PublicKeySize)
	d.Array(k, what)
	return k
}

func (d *decoder) groups() []string {
	n := d.U8("groups")
	if d.Err() == nil && n > maxGroups {
		d.Failf("groups: %d, at most %d allowed", n, maxGroups)
	}
	var g []string
	for i := 0; i < int(n) && d.Err() == nil; i++ {
		g = append(g, d.Str8("group"))
	}
	return g
}

// malformed wraps a parse or validation error of the named encoding.
func malformed(what string, err error) error {
	return fmt.Errorf("parsing %s: %w: %w", what, ErrMalformed, err)
}

// checkName reports whether s can be a community or node name: 1 to 63
// bytes of UTF-8 without control characters or surrounding spaces.
func checkName(s string) error {
	return checkText(s, 1, maxNameLen)
}

func checkText(s string, minLen, maxLen int) error {
	switch {
	case len(s) < minLen:
		return errors.New("missing")
	case len(s) > maxLen:
		return fmt.Errorf("%d bytes long, at most %d allowed", len(s), maxLen)
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	case s != strings.TrimSpace(s):
		return errors.New("starts or ends with white space")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("contains control character %U", r)
		}
	}
	return nil
}

// checkGroups reports whether g is a valid group list: at most 16 names of 1
// to 32 characters [a-z0-9-], in strictly ascending order (so the encoding
// is canonical and has no duplicates).
func checkGroups(g []string) error {
	if len(g) > maxGroups {
		return fmt.Errorf("groups: %d, at most %d allowed", len(g), maxGroups)
	}
	for i, s := range g {
		if len(s) == 0 || len(s) > maxGroupLen {
			return fmt.Errorf("group %q: %d bytes long, want 1 to %d", s, len(s), maxGroupLen)
		}
		for _, c := range []byte(s) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Errorf("group %q: character %q is not one of [a-z0-9-]", s, c)
			}
		}
		if i > 0 && g[i-1] >= s {
			return fmt.Errorf("groups %q and %q are not in strictly ascending order", g[i-1], s)
		}
	}
	return nil
}

// checkTime reports whether t can be encoded: a whole second between 1970
// and the end of 9999.
func checkTime(what string, t time.Time) error {
	if t.Nanosecond() != 0 || t.Unix() < 0 || t.Unix() > maxUnix {
		return fmt.Errorf("%s: %s is not a whole second between 1970 and 9999", what, t.Format(time.RFC3339Nano))
	}
	return nil
}

// checkIPv4 reports whether a is a plain IPv4 address.
func checkIPv4(a netip.Addr) error {
	if !a.Is4() {
		return fmt.Errorf("ipv4: %v is not an IPv4 address", a)
	}
	return nil
}

// verifySignature is ed25519.Verify without its panic on a short key.
func verifySignature(pub ed25519.PublicKey, msg []byte, sig [ed25519.SignatureSize]byte) bool {
	return len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, msg, sig[:])
}

// truncateTime drops sub-second precision, which the encodings do not keep.
func truncateTime(t time.Time) time.Time {
	return time.Unix(t.Unix(), 0).UTC()
}
