package wire

import (
	"encoding/binary"
	"fmt"
)

// Encoder appends the big-endian wire encoding of fields to a byte slice. It
// does not check limits: callers validate before encoding. The zero Encoder
// is ready to use.
type Encoder struct{ b []byte }

// NewEncoder returns an Encoder whose buffer starts empty with the given
// capacity.
func NewEncoder(capacity int) Encoder { return Encoder{b: make([]byte, 0, capacity)} }

// Bytes returns the encoding so far. It aliases the Encoder's buffer.
func (e *Encoder) Bytes() []byte { return e.b }

// Raw appends p as is.
func (e *Encoder) Raw(p []byte) { e.b = append(e.b, p...) }

// U8 appends v.
func (e *Encoder) U8(v uint8) { e.b = append(e.b, v) }

// U16 appends v in big-endian order.
func (e *Encoder) U16(v uint16) { e.b = binary.BigEndian.AppendUint16(e.b, v) }

// U32 appends v in big-endian order.
func (e *Encoder) U32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }

// U64 appends v in big-endian order.
func (e *Encoder) U64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }

// Str8 appends s after its length as one byte; s must be at most 255 bytes.
func (e *Encoder) Str8(s string) { e.U8(uint8(len(s))); e.b = append(e.b, s...) }

// Bytes16 appends p after its length as a uint16.
func (e *Encoder) Bytes16(p []byte) { e.U16(uint16(len(p))); e.Raw(p) }

// Bytes32 appends p after its length as a uint32.
func (e *Encoder) Bytes32(p []byte) { e.U32(uint32(len(p))); e.Raw(p) }

// Header appends magic and the version byte.
func (e *Encoder) Header(magic string, version uint8) {
	e.b = append(e.b, magic...)
	e.U8(version)
}

// Decoder reads what [Encoder] writes. The first error sticks: later reads
// return zero values, so parsers read every field and check the error once.
type Decoder struct {
	b   []byte
	err error
}

// NewDecoder returns a Decoder reading b.
func NewDecoder(b []byte) Decoder { return Decoder{b: b} }

// Err returns the first error, or nil.
func (d *Decoder) Err() error { return d.err }

// Failf records an error unless one is recorded already.
func (d *Decoder) Failf(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

// Take returns the next n bytes, aliasing the input, or nil after an error.
func (d *Decoder) Take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.Failf("%s: truncated", what)
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

// U8 reads one byte.
func (d *Decoder) U8(what string) uint8 {
	if p := d.Take(1, what); p != nil {
		return p[0]
	}
	return 0
}

// U16 reads a big-endian uint16.
func (d *Decoder) U16(what string) uint16 {
	if p := d.Take(2, what); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

// U32 reads a big-endian uint32.
func (d *Decoder) U32(what string) uint32 {
	if p := d.Take(4, what); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

// U64 reads a big-endian uint64.
func (d *Decoder) U64(what string) uint64 {
	if p := d.Take(8, what); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

// Array fills dst, which has the field's fixed size, with a copy of the input.
func (d *Decoder) Array(dst []byte, what string) { copy(dst, d.Take(len(dst), what)) }

// Str8 reads a string after its length as one byte. It copies the input.
func (d *Decoder) Str8(what string) string { return string(d.Take(int(d.U8(what)), what)) }

// Bytes16 returns the next field after its length as a uint16, without
// copying it; callers parse it right away.
func (d *Decoder) Bytes16(what string) []byte { return d.Take(int(d.U16(what)), what) }

// Bytes32 returns the next field after its length as a uint32, without
// copying it. The length is checked against the input before it is
// converted to int, so it cannot overflow on 32-bit platforms.
func (d *Decoder) Bytes32(what string) []byte {
	n := d.U32(what)
	if d.err == nil && uint64(n) > uint64(len(d.b)) {
		d.Failf("%s: truncated", what)
		return nil
	}
	return d.Take(int(n), what)
}

// Header reads and checks magic and the version byte.
func (d *Decoder) Header(magic string, version uint8) {
	if got := d.Take(len(magic), "magic"); d.err == nil && string(got) != magic {
		d.Failf("magic %q, want %q", got, magic)
	}
	if v := d.U8("version"); d.err == nil && v != version {
		d.Failf("unsupported version %d, want %d", v, version)
	}
}

// Done reports the first error, or trailing bytes.
func (d *Decoder) Done() error {
	if d.err == nil && len(d.b) > 0 {
		d.Failf("%d trailing bytes", len(d.b))
	}
	return d.err
}
