package membership

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
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

// encoder appends the big-endian wire encoding of fields to b. It does not
// check limits: callers validate before encoding.
type encoder struct{ b []byte }

func (e *encoder) raw(p []byte)     { e.b = append(e.b, p...) }
func (e *encoder) u8(v uint8)       { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16)     { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32)     { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64)     { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) unix(t time.Time) { e.u64(uint64(t.Unix())) }
func (e *encoder) str8(s string)    { e.u8(uint8(len(s))); e.b = append(e.b, s...) }
func (e *encoder) bytes16(p []byte) { e.u16(uint16(len(p))); e.raw(p) }

func (e *encoder) header(magic string) {
	e.b = append(e.b, magic...)
	e.u8(formatVersion)
}

func (e *encoder) addr4(a netip.Addr) {
	b := a.As4()
	e.raw(b[:])
}

func (e *encoder) groups(g []string) {
	e.u8(uint8(len(g)))
	for _, s := range g {
		e.str8(s)
	}
}

// decoder reads what encoder writes. The first error sticks: later reads
// return zero values, so parsers read every field and check err once.
// Nothing it returns aliases the input.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) failf(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

// take returns the next n bytes, or nil after an error.
func (d *decoder) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.failf("%s: truncated", what)
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) u8(what string) uint8 {
	if p := d.take(1, what); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u16(what string) uint16 {
	if p := d.take(2, what); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (d *decoder) u32(what string) uint32 {
	if p := d.take(4, what); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) u64(what string) uint64 {
	if p := d.take(8, what); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

// array fills dst, which has the field's fixed size.
func (d *decoder) array(dst []byte, what string) { copy(dst, d.take(len(dst), what)) }

func (d *decoder) str8(what string) string { return string(d.take(int(d.u8(what)), what)) }

// bytes16 returns the next length-prefixed field without copying it; callers
// parse it right away.
func (d *decoder) bytes16(what string) []byte { return d.take(int(d.u16(what)), what) }

func (d *decoder) header(magic string) {
	if got := d.take(len(magic), "magic"); d.err == nil && string(got) != magic {
		d.failf("magic %q, want %q", got, magic)
	}
	if v := d.u8("version"); d.err == nil && v != formatVersion {
		d.failf("unsupported version %d, want %d", v, formatVersion)
	}
}

func (d *decoder) unix(what string) time.Time {
	v := d.u64(what)
	if d.err == nil && v > maxUnix {
		d.failf("%s: %d seconds is after the year 9999", what, v)
	}
	return time.Unix(int64(v), 0).UTC()
}

func (d *decoder) addr4(what string) netip.Addr {
	var b [4]byte
	d.array(b[:], what)
	return netip.AddrFrom4(b)
}

func (d *decoder) publicKey(what string) ed25519.PublicKey {
	k := make(ed25519.PublicKey, ed25519.PublicKeySize)
	d.array(k, what)
	return k
}

func (d *decoder) groups() []string {
	n := d.u8("groups")
	if d.err == nil && n > maxGroups {
		d.failf("groups: %d, at most %d allowed", n, maxGroups)
	}
	var g []string
	for i := 0; i < int(n) && d.err == nil; i++ {
		g = append(g, d.str8("group"))
	}
	return g
}

// done reports the first error, or trailing bytes.
func (d *decoder) done() error {
	if d.err == nil && len(d.b) > 0 {
		d.failf("%d trailing bytes", len(d.b))
	}
	return d.err
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
