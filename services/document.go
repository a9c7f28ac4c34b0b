package services

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/cloudbox/cloudbox/internal/xeddsa"
)

// A catalog document is the signed list of one box's services:
//
//	magic "CBCATALOG1" (10 bytes) | XEdDSA signature (64 bytes) | payload
//
// The signature covers magic and payload and is made with the owner's
// X25519 node key. The payload is the JSON object [docPayload]. Receivers
// check the size, the magic and the signature against the key the roster
// holds for the expected owner before they parse the JSON.
const docMagic = "CBCATALOG1"

// docHeaderSize is the magic plus the signature.
const docHeaderSize = len(docMagic) + xeddsa.SignatureSize

// docFormat is the payload's "v".
const docFormat = 1

// maxClockSkew is how far in the future a document's issue time may be.
const maxClockSkew = 5 * time.Minute

// docPayload is the signed content of a catalog document.
type docPayload struct {
	V        int        `json:"v"`
	Owner    string     `json:"owner"`
	Epoch    uint64     `json:"epoch"`
	Version  uint64     `json:"version"`
	Issued   time.Time  `json:"issued"`
	Expires  time.Time  `json:"expires"`
	Services []docEntry `json:"services"`
}

// docEntry is one service in a document.
type docEntry struct {
	Instance    string            `json:"instance"`
	Type        string            `json:"type"`
	Port        uint16            `json:"port"`
	TXT         map[string]string `json:"txt,omitempty"`
	Description string            `json:"description,omitempty"`
	Addr        netip.Addr        `json:"addr,omitzero"`
	Healthy     bool              `json:"healthy"`
	Builtin     bool              `json:"builtin,omitempty"`
	Updated     time.Time         `json:"updated"`
}

func (e *docEntry) service() Service {
	return Service{Instance: e.Instance, Type: e.Type, Port: e.Port, TXT: e.TXT, Description: e.Description, Addr: e.Addr}
}

// rejectReason names why a document was dropped, as counted in the metrics.
type rejectReason string

const (
	rejectTooLarge     rejectReason = "too_large"
	rejectMalformed    rejectReason = "malformed"
	rejectSignature    rejectReason = "bad_signature"
	rejectUnknownOwner rejectReason = "unknown_owner"
	rejectWrongOwner   rejectReason = "wrong_owner"
	rejectExpired      rejectReason = "expired"
	rejectFuture       rejectReason = "future"
	rejectTooMany      rejectReason = "too_many_entries"
	rejectInvalidEntry rejectReason = "invalid_entry"
	rejectStale        rejectReason = "stale"
)

var rejectReasons = []rejectReason{rejectTooLarge, rejectMalformed, rejectSignature, rejectUnknownOwner,
	rejectWrongOwner, rejectExpired, rejectFuture, rejectTooMany, rejectInvalidEntry, rejectStale}

// docError is a rejected document: the reason for the metrics and the
// detail for the log.
type docError struct {
	reason rejectReason
	err    error
}

func (e *docError) Error() string { return fmt.Sprintf("catalog document %s: %v", e.reason, e.err) }
func (e *docError) Unwrap() error { return e.err }

func reject(reason rejectReason, format string, args ...any) error {
	return &docError{reason: reason, err: fmt.Errorf(format, args...)}
}

// reasonOf returns the reject reason of err, malformed when it has none.
func reasonOf(err error) rejectReason {
	var de *docError
	if errors.As(err, &de) {
		return de.reason
	}
	return rejectMalformed
}

// signDocument encodes and signs p. rand is the signature's randomness.
func signDocument(s *xeddsa.Signer, rand io.Reader, p *docPayload) ([]byte, error) {
	payload, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encoding catalog: %w", err)
	}
	if docHeaderSize+len(payload) > MaxDocSize {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d: publish fewer or shorter services", ErrDocumentTooLarge, docHeaderSize+len(payload), MaxDocSize)
	}
	msg := make([]byte, 0, len(docMagic)+len(payload))
	msg = append(append(msg, docMagic...), payload...)
	sig, err := s.Sign(rand, msg)
	if err != nil {
		return nil, fmt.Errorf("signing catalog: %w", err)
	}
	doc := make([]byte, 0, docHeaderSize+len(payload))
	doc = append(append(append(doc, docMagic...), sig...), payload...)
	return doc, nil
}

// openDocument checks doc's size, magic and signature under pub, then parses
// and validates its payload (see [parsePayload]). It does not check the
// owner, the times or the version: the caller knows what it expects.
func openDocument(doc []byte, pub [32]byte) (*docPayload, error) {
	if len(doc) > MaxDocSize {
		return nil, reject(rejectTooLarge, "%d bytes, limit %d", len(doc), MaxDocSize)
	}
	if len(doc) < docHeaderSize || string(doc[:len(docMagic)]) != docMagic {
		return nil, reject(rejectMalformed, "not a catalog document")
	}
	sig := doc[len(docMagic):docHeaderSize]
	payload := doc[docHeaderSize:]
	msg := make([]byte, 0, len(docMagic)+len(payload))
	msg = append(append(msg, docMagic...), payload...)
	if !xeddsa.Verify(pub, msg, sig) {
		return nil, reject(rejectSignature, "signature does not verify")
	}
	return parsePayload(payload)
}

// parsePayload decodes a payload and checks every field: format version,
// owner present, times set and ordered, at most MaxEntries services, each
// valid as by [Service.Validate] and unique per type and instance. Unknown
// JSON fields are ignored (newer writers may add some); trailing data is an
// error.
func parsePayload(payload []byte) (*docPayload, error) {
	if len(payload) > MaxDocSize {
		return nil, reject(rejectTooLarge, "payload of %d bytes", len(payload))
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	var p docPayload
	if err := dec.Decode(&p); err != nil {
		return nil, reject(rejectMalformed, "decoding payload: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, reject(rejectMalformed, "data after the payload")
	}
	switch {
	case p.V != docFormat:
		return nil, reject(rejectMalformed, "format version %d, want %d", p.V, docFormat)
	case p.Owner == "" || len(p.Owner) > 128:
		return nil, reject(rejectMalformed, "owner missing or too long")
	case p.Issued.IsZero() || p.Expires.IsZero() || !p.Expires.After(p.Issued):
		return nil, reject(rejectMalformed, "issue and expiry times missing or out of order")
	case len(p.Services) > MaxEntries:
		return nil, reject(rejectTooMany, "%d services, limit %d", len(p.Services), MaxEntries)
	}
	seen := make(map[string]bool, len(p.Services))
	for i := range p.Services {
		s := p.Services[i].service()
		if err := s.validate(); err != nil {
			return nil, reject(rejectInvalidEntry, "service %d: %v", i, err)
		}
		if seen[s.key()] {
			return nil, reject(rejectInvalidEntry, "service %q of type %s appears twice", s.Instance, s.Type)
		}
		seen[s.key()] = true
	}
	return &p, nil
}

// docHash is the digest announced in gossip for a document.
func docHash(doc []byte) [16]byte {
	sum := sha256.Sum256(doc)
	return [16]byte(sum[:16])
}

// meta is what a box announces in its memberlist node metadata:
//
//	format (1 byte, 1) | epoch (8) | version (8) | entries (2) | hash (16)
//
// big-endian. Epoch is random per process start; version increases within
// an epoch; hash is [docHash] of the signed document; entries is its number
// of services, so an empty catalog needs no pull.
type meta struct {
	Epoch, Version uint64
	Entries        uint16
	Hash           [16]byte
}

const metaSize = 1 + 8 + 8 + 2 + 16

func (m meta) encode() []byte {
	b := make([]byte, metaSize)
	b[0] = 1
	binary.BigEndian.PutUint64(b[1:], m.Epoch)
	binary.BigEndian.PutUint64(b[9:], m.Version)
	binary.BigEndian.PutUint16(b[17:], m.Entries)
	copy(b[19:], m.Hash[:])
	return b
}

// parseMeta decodes node metadata; anything but the exact format is an
// error (memberlist carries up to 512 bytes from any member).
func parseMeta(b []byte) (meta, error) {
	if len(b) != metaSize || b[0] != 1 {
		return meta{}, fmt.Errorf("node metadata of %d bytes is not a catalog summary", len(b))
	}
	m := meta{
		Epoch:   binary.BigEndian.Uint64(b[1:]),
		Version: binary.BigEndian.Uint64(b[9:]),
		Entries: binary.BigEndian.Uint16(b[17:]),
	}
	copy(m.Hash[:], b[19:])
	return m, nil
}
