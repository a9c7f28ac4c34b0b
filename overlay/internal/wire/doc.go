// Package wire is a small, bounded, big-endian encoder and decoder for
// cloudbox's canonical binary formats, shared by the membership and roster
// encodings.
//
// An [Encoder] appends fixed-size integers, raw bytes and length-prefixed
// fields to a byte slice. A [Decoder] reads them back with sticky errors: the
// first error is kept, later reads return zero values, so parsers read every
// field and check the error once, at [Decoder.Done], which also rejects
// trailing bytes. Every length prefix is checked against the remaining input
// before anything is sliced, so a decoder never reads out of bounds or
// allocates on behalf of a hostile length.
//
// The package does not validate what it carries: an Encoder does not check
// that a length fits its prefix (callers validate before encoding), and a
// Decoder knows nothing of limits, text rules, timestamps or addresses.
// Those, and the formats themselves, belong to the packages that use it.
package wire
