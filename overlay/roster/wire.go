package roster

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"
)

// encoder appends the big-endian fields of the snapshot encoding.
type encoder struct{ b []byte }

func (e *encoder) raw(p []byte)     { e.b = append(e.b, p...) }
func (e *encoder) u8(v uint8)       { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16)     { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32)     { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64)     { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) bytes16(p []byte) { e.u16(uint16(len(p))); e.raw(p) }
func (e *encoder) bytes32(p []byte) { e.u32(uint32(len(p))); e.raw(p) }

// endpoint writes family, address and port; ap must pass checkEndpoint.
func (e *encoder) endpoint(ap netip.AddrPort) {
	if a := ap.Addr(); a.Is4() {
		e.u8(4)
		b := a.As4()
		e.raw(b[:])
	} else {
		e.u8(6)
		b := a.As16()
		e.raw(b[:])
	}
	e.u16(ap.Port())
}

// decoder reads what encoder writes. The first error sticks: later reads
// return zero values, so parsers read every field and check err once.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) failf(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

// take returns the next n bytes (aliasing the input), or nil after an error.
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

func (d *decoder) bytes16(what string) []byte { return d.take(int(d.u16(what)), what) }

func (d *decoder) bytes32(what string) []byte {
	n := d.u32(what)
	if d.err == nil && uint64(n) > uint64(len(d.b)) {
		d.failf("%s: truncated", what)
		return nil
	}
	return d.take(int(n), what)
}

func (d *decoder) header(magic string, version uint8) {
	if got := d.take(len(magic), "magic"); d.err == nil && string(got) != magic {
		d.failf("magic %q, want %q", got, magic)
	}
	if v := d.u8("version"); d.err == nil && v != version {
		d.failf("unsupported version %d, want %d", v, version)
	}
}

func (d *decoder) endpoint(what string) netip.AddrPort {
	var a netip.Addr
	switch fam := d.u8(what + " family"); {
	case d.err != nil:
		return netip.AddrPort{}
	case fam == 4:
		var b [4]byte
		copy(b[:], d.take(len(b), what))
		a = netip.AddrFrom4(b)
	case fam == 6:
		var b [16]byte
		copy(b[:], d.take(len(b), what))
		a = netip.AddrFrom16(b)
	default:
		d.failf("%s: family %d, want 4 or 6", what, fam)
	}
	ap := netip.AddrPortFrom(a, d.u16(what+" port"))
	if d.err == nil {
		if err := checkEndpoint(ap); err != nil {
			d.failf("%s: %w", what, err)
		}
	}
	return ap
}

// done reports the first error, or trailing bytes.
func (d *decoder) done() error {
	if d.err == nil && len(d.b) > 0 {
		d.failf("%d trailing bytes", len(d.b))
	}
	return d.err
}

// checkEndpoint reports whether ap may be a member's underlay endpoint: a
// unicast address without zone (IPv4 never as IPv4-mapped IPv6) and a port.
func checkEndpoint(ap netip.AddrPort) error {
	a := ap.Addr()
	switch {
	case !a.IsValid():
		return fmt.Errorf("endpoint %v: no address", ap)
	case a.Is4In6():
		return fmt.Errorf("endpoint %v: IPv4-mapped IPv6 address, write it as IPv4", ap)
	case a.Zone() != "":
		return fmt.Errorf("endpoint %v: address has a zone", ap)
	case a.IsUnspecified() || a.IsMulticast():
		return fmt.Errorf("endpoint %v: not a unicast address", ap)
	case ap.Port() == 0:
		return fmt.Errorf("endpoint %v: port 0", ap)
	}
	return nil
}

// checkEndpoints checks a member's endpoint list: at most MaxEndpoints,
// each valid, none twice.
func checkEndpoints(eps []netip.AddrPort) error {
	if len(eps) > MaxEndpoints {
		return fmt.Errorf("%d endpoints, at most %d allowed", len(eps), MaxEndpoints)
	}
	for i, ap := range eps {
		if err := checkEndpoint(ap); err != nil {
			return err
		}
		if slices.Contains(eps[:i], ap) {
			return fmt.Errorf("endpoint %v: listed twice", ap)
		}
	}
	return nil
}

// cleanEndpoints returns the first MaxEndpoints distinct valid endpoints of
// eps, with IPv4-mapped addresses unmapped; the others are dropped.
func cleanEndpoints(eps []netip.AddrPort) []netip.AddrPort {
	var out []netip.AddrPort
	for _, ap := range eps {
		if len(out) == MaxEndpoints {
			break
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if checkEndpoint(ap) == nil && !slices.Contains(out, ap) {
			out = append(out, ap)
		}
	}
	return out
}

// maxUpdatedYear keeps Unix nanoseconds inside an int64 (which ends in
// April 2262).
const maxUpdatedYear = 2261

// encodeUpdated returns t as Unix nanoseconds, 0 for the zero time.
func encodeUpdated(t time.Time) (uint64, error) {
	if t.IsZero() {
		return 0, nil
	}
	if t.Year() > maxUpdatedYear || t.UnixNano() <= 0 {
		return 0, fmt.Errorf("updated %s: want a time between 1970 and %d", t.Format(time.RFC3339Nano), maxUpdatedYear)
	}
	return uint64(t.UnixNano()), nil
}

func decodeUpdated(v uint64) (time.Time, error) {
	if v == 0 {
		return time.Time{}, nil
	}
	if v > math.MaxInt64 {
		return time.Time{}, fmt.Errorf("updated %d: beyond the year %d", v, maxUpdatedYear)
	}
	t := time.Unix(0, int64(v)).UTC()
	if t.Year() > maxUpdatedYear {
		return time.Time{}, fmt.Errorf("updated %d: beyond the year %d", v, maxUpdatedYear)
	}
	return t, nil
}
