package update

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a release version: one to four dot-separated decimal numbers,
// with an optional leading "v" ("1.4.2", "v2.0"). The zero Version is the
// "dev" version of a box built without one: older than every release.
type Version struct {
	parts [4]uint32
	n     int // number of parts given; 0 for dev
}

// ParseVersion parses s. "dev" and "" give the zero Version.
func ParseVersion(s string) (Version, error) {
	if s == "" || s == "dev" {
		return Version{}, nil
	}
	t := strings.TrimPrefix(s, "v")
	fields := strings.Split(t, ".")
	if len(fields) > 4 {
		return Version{}, fmt.Errorf("%w: version %q has more than four numbers", ErrMalformed, s)
	}
	var v Version
	for i, f := range fields {
		if f == "" || len(f) > 9 || strings.TrimLeft(f, "0123456789") != "" {
			return Version{}, fmt.Errorf("%w: version %q: want numbers separated by dots, like 1.4.2", ErrMalformed, s)
		}
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return Version{}, fmt.Errorf("%w: version %q: %v", ErrMalformed, s, err)
		}
		v.parts[i] = uint32(n)
	}
	v.n = len(fields)
	return v, nil
}

// IsDev reports whether v is the zero (dev) Version.
func (v Version) IsDev() bool { return v.n == 0 }

// Compare returns -1, 0 or +1 as v is older than, equal to or newer than w.
// Missing numbers count as 0 ("1.2" equals "1.2.0"); dev is oldest.
func (v Version) Compare(w Version) int {
	switch {
	case v.n == 0 && w.n == 0:
		return 0
	case v.n == 0:
		return -1
	case w.n == 0:
		return 1
	}
	for i := range v.parts {
		if v.parts[i] != w.parts[i] {
			if v.parts[i] < w.parts[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

func (v Version) String() string {
	if v.n == 0 {
		return "dev"
	}
	s := make([]string, v.n)
	for i := range v.n {
		s[i] = strconv.FormatUint(uint64(v.parts[i]), 10)
	}
	return strings.Join(s, ".")
}
