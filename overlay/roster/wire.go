package roster

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/cloudbox/cloudbox/overlay/internal/wire"
)

// encoder appends the big-endian fields of the snapshot encoding.
type encoder struct{ wire.Encoder }

func newEncoder(capacity int) encoder { return encoder{wire.NewEncoder(capacity)} }

// endpoint writes family, address and port; ap must pass checkEndpoint.
func (e *encoder) endpoint(ap netip.AddrPort) {
	if a := ap.Addr(); a.Is4() {
		e.U8(4)
		b := a.As4()
		e.Raw(b[:])
	} else {
		e.U8(6)
		b := a.As16()
		e.Raw(b[:])
	}
	e.U16(ap.Port())
}

// decoder reads what encoder writes. The first error sticks: later reads
// return zero values, so parsers read every field and check the error once.
type decoder struct{ wire.Decoder }

func newDecoder(b []byte) decoder { return decoder{wire.NewDecoder(b)} }

func (d *decoder) endpoint(what string) netip.AddrPort {
	var a netip.Addr
	switch fam := d.U8(what + " family"); {
	case d.Err() != nil:
		return netip.AddrPort{}
	case fam == 4:
		var b [4]byte
		copy(b[:], d.Take(len(b), what))
		a = netip.AddrFrom4(b)
	case fam == 6:
		var b [16]byte
		copy(b[:], d.Take(len(b), what))
		a = netip.AddrFrom16(b)
	default:
		d.Failf("%s: family %d, want 4 or 6", what, fam)
	}
	ap := netip.AddrPortFrom(a, d.U16(what+" port"))
	if d.Err() == nil {
		if err := checkEndpoint(ap); err != nil {
			d.Failf("%s: %w", what, err)
		}
	}
	return ap
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
