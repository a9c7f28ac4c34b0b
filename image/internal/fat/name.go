package fat

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxNameUnits is the longest long file name, in UTF-16 code units.
const maxNameUnits = 255

// checkName reports whether name can be stored as a long file name. Names
// ending in a dot or space are refused because Windows and Linux strip them.
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("element %q is not a file name", name)
	case !utf8.ValidString(name):
		return fmt.Errorf("element %q is not valid UTF-8", name)
	case len(utf16.Encode([]rune(name))) > maxNameUnits:
		return fmt.Errorf("element %.20q... is longer than %d UTF-16 units", name, maxNameUnits)
	case strings.HasSuffix(name, ".") || strings.HasSuffix(name, " "):
		return fmt.Errorf("element %q ends in a dot or space", name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7F || strings.ContainsRune(`"*/:<>?\|`, r) {
			return fmt.Errorf("element %q contains %q, which FAT does not allow", name, r)
		}
	}
	return nil
}

// isShortChar reports whether c may appear in a short name.
func isShortChar(c byte) bool {
	return 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c != 0 && strings.IndexByte("$%'-_@~`!(){}^#&", c) >= 0
}

// upper upper-cases an ASCII letter; short names fold case this way.
func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// upperASCII upper-cases the ASCII letters of s.
func upperASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = upper(c)
	}
	return string(b)
}

// packShort pads base and ext with spaces into an 11-byte short name.
func packShort(base, ext string) [11]byte {
	var s [11]byte
	copy(s[:], "           ")
	copy(s[:8], base)
	copy(s[8:], ext)
	return s
}

// upperShort upper-cases the ASCII letters of a short name.
func upperShort(s [11]byte) [11]byte {
	for i, c := range s {
		s[i] = upper(c)
	}
	return s
}

// displayShort returns the short name as "BASE.EXT" or "BASE".
func displayShort(s [11]byte) string {
	base := strings.TrimRight(string(s[:8]), " ")
	if ext := strings.TrimRight(string(s[8:]), " "); ext != "" {
		return base + "." + ext
	}
	return base
}

// exactShort returns the short name of name if, upper-cased, it is a valid
// 8.3 name: 1-8 characters, optionally a dot and 1-3 characters, ASCII only.
func exactShort(name string) ([11]byte, bool) {
	base, ext, _ := strings.Cut(upperASCII(name), ".")
	if base == "" || len(base) > 8 || len(ext) > 3 {
		return [11]byte{}, false
	}
	for _, c := range []byte(base + ext) {
		if !isShortChar(c) {
			return [11]byte{}, false
		}
	}
	return packShort(base, ext), true
}

// shortBasis derives the base and extension of a generated short name from
// a long name (Microsoft FAT specification, "basis-name generation"):
// upper-case it, replace characters short names cannot hold with '_', drop
// spaces and leading dots, split at the last dot and truncate to 8.3.
func shortBasis(name string) (base, ext string) {
	var b strings.Builder
	for _, r := range strings.TrimLeft(strings.ReplaceAll(name, " ", ""), ".") {
		switch {
		case r == '.':
			b.WriteByte('.')
		case r < 0x80 && isShortChar(upper(byte(r))):
			b.WriteByte(upper(byte(r)))
		default:
			b.WriteByte('_')
		}
	}
	s := b.String()
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		s, ext = s[:i], s[i+1:]
	}
	base = strings.ReplaceAll(s, ".", "")
	base, ext = base[:min(len(base), 8)], ext[:min(len(ext), 3)]
	if base == "" {
		base = "_"
	}
	return base, ext
}

// assignShortNames gives every child of dir a short name that is unique in
// dir. Names that are valid 8.3 names apart from case keep their upper-cased
// form, which is what gokrazy's reader looks up; all others get a numeric
// tail ("LONGFI~1.TXT"). Children whose name differs from their short name
// get long file name entries.
func assignShortNames(dir *node) error {
	used := make(map[[11]byte]bool, len(dir.children))
	var generate []*node
	for _, c := range dir.children {
		s, ok := exactShort(c.name)
		if !ok {
			generate = append(generate, c)
			continue
		}
		if !strings.Contains(c.name, ".") {
			// gokrazy's reader matches names without extension
			// case-sensitively against the raw short name.
			s = packShort(c.name, "")
		}
		c.short = s
		used[upperShort(s)] = true
		if displayShort(upperShort(s)) != c.name {
			c.longName = utf16.Encode([]rune(c.name))
		}
	}
	lastTail := make(map[[11]byte]int) // per basis, so that many similar names stay linear
	for _, c := range generate {
		base, ext := shortBasis(c.name)
		basis := packShort(base, ext)
		for n := lastTail[basis] + 1; ; n++ {
			tail := "~" + strconv.Itoa(n)
			if len(tail) > 7 {
				return fmt.Errorf("%w: no unique short name for %q", ErrNoSpace, c.name)
			}
			s := packShort(base[:min(len(base), 8-len(tail))]+tail, ext)
			if !used[s] {
				c.short, used[s], lastTail[basis] = s, true, n
				break
			}
		}
		c.longName = utf16.Encode([]rune(c.name))
	}
	return nil
}
