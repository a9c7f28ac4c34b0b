package dnsproxy

import (
	"encoding/binary"
	"fmt"
)

// Wire format constants (RFC 1035 §4.1, RFC 6891 §6.1).
const (
	headerLen = 12
	// maxNameLen is the longest domain name in wire format (RFC 1035 §2.3.4).
	maxNameLen = 255
	// maxLabelLen is the longest label (RFC 1035 §2.3.4).
	maxLabelLen = 63
	// optLen is an OPT record with an empty RDATA: root name, type, class
	// (UDP size), TTL (extended RCODE, version, flags), RDLENGTH.
	optLen = 11
	// minUDPSize is the payload every DNS client accepts over UDP (RFC 1035
	// §4.2.1); RFC 6891 §6.2.5 says smaller EDNS sizes mean this.
	minUDPSize = 512
	// maxMsgSize is the largest message TCP can carry (RFC 1035 §4.2.2).
	maxMsgSize = 65535
)

// Header flag bits of the second header word (RFC 1035 §4.1.1, RFC 4035
// §3.2 for AD and CD).
const (
	flagQR = 1 << 15
	flagAA = 1 << 10
	flagTC = 1 << 9
	flagRD = 1 << 8
	flagRA = 1 << 7
	flagAD = 1 << 5
	flagCD = 1 << 4

	opcodeMask = 0xf << 11
	rcodeMask  = 0xf
)

// Resource record types and classes used on the hot path.
const (
	typeA     = 1
	typeNS    = 2
	typeSOA   = 6
	typePTR   = 12
	typeTXT   = 16
	typeAAAA  = 28
	typeSRV   = 33
	typeOPT   = 41
	typeIXFR  = 251
	typeAXFR  = 252
	typeANY   = 255
	classINET = 1
)

// Response codes (RFC 1035 §4.1.1, RFC 6891 §9).
const (
	rcodeSuccess  = 0
	rcodeFormErr  = 1
	rcodeServFail = 2
	rcodeNXDomain = 3
	rcodeNotImp   = 4
	rcodeRefused  = 5
	rcodeBadVers  = 16
)

// query is what the server needs from a query packet. All offsets index the
// packet it was parsed from, so a query can be copied along with a copy of
// the packet.
type query struct {
	id    uint16
	flags uint16 // the second header word as sent
	// nameEnd is the offset just past QNAME; QNAME starts at headerLen.
	nameEnd int
	// end is the offset just past the question (QNAME, QTYPE, QCLASS).
	end    int
	qtype  uint16
	qclass uint16
	// edns reports an OPT record (RFC 6891 §6.1); udpSize and do are its
	// requestor's payload size and DNSSEC OK bit (RFC 3225 §3).
	edns    bool
	do      bool
	udpSize uint16
}

// nameLen is the length of QNAME in wire format.
func (q *query) nameLen() int { return q.nameEnd - headerLen }

// parseQuery reads the header, the single question and an optional OPT
// record of a query in the common shape: opcode QUERY, QDCOUNT 1, no
// answer or authority records, at most one additional record which is an
// EDNS(0) OPT record with an owner of the root, and nothing after it.
//
// It returns errNotQuery for responses, errShort and errMalformed for
// packets no valid query looks like (the server drops them), and errUnusual
// for anything else outside the common shape (the server hands those to
// miekg/dns). It does not allocate.
func parseQuery(p []byte) (query, error) {
	var q query
	if len(p) < headerLen {
		return q, errShort
	}
	q.id = binary.BigEndian.Uint16(p)
	q.flags = binary.BigEndian.Uint16(p[2:])
	if q.flags&flagQR != 0 {
		return q, errNotQuery
	}
	qd := binary.BigEndian.Uint16(p[4:])
	an := binary.BigEndian.Uint16(p[6:])
	ns := binary.BigEndian.Uint16(p[8:])
	ar := binary.BigEndian.Uint16(p[10:])
	if q.flags&opcodeMask != 0 || qd != 1 || an != 0 || ns != 0 || ar > 1 {
		return q, errUnusual
	}

	// QNAME: a sequence of labels ending with the root label (RFC 1035
	// §4.1.2). A compression pointer in a question is legal but so rare that
	// it goes to the slow path.
	off := headerLen
	for {
		if off >= len(p) {
			return q, errShort
		}
		l := int(p[off])
		if l == 0 {
			off++
			break
		}
		switch l & 0xc0 {
		case 0xc0:
			return q, errUnusual
		case 0x40, 0x80: // extended label types (RFC 6891 §5), unused
			return q, errMalformed
		}
		off += 1 + l
		if off-headerLen >= maxNameLen {
			return q, errMalformed
		}
	}
	q.nameEnd = off
	if len(p) < off+4 {
		return q, errShort
	}
	q.qtype = binary.BigEndian.Uint16(p[off:])
	q.qclass = binary.BigEndian.Uint16(p[off+2:])
	off += 4
	q.end = off

	if ar == 1 {
		// OPT pseudo-RR (RFC 6891 §6.1.2): NAME 0, TYPE 41, CLASS payload
		// size, TTL = extended RCODE, VERSION, DO and Z, then RDLEN, RDATA.
		if len(p) < off+optLen {
			return q, errShort
		}
		if p[off] != 0 || binary.BigEndian.Uint16(p[off+1:]) != typeOPT {
			return q, errUnusual // TSIG, SIG(0), or an OPT with a name
		}
		if p[off+6] != 0 { // VERSION (RFC 6891 §6.1.3): BADVERS
			return q, errUnusual
		}
		q.edns = true
		q.udpSize = binary.BigEndian.Uint16(p[off+3:])
		q.do = p[off+7]&0x80 != 0
		rdlen := int(binary.BigEndian.Uint16(p[off+9:]))
		off += optLen
		if len(p) < off+rdlen {
			return q, errShort
		}
		// Options (RFC 6891 §6.1.2): code, length, data; they must fill
		// RDATA exactly. None is acted on (cookies, padding, ECS are ignored,
		// which RFC 7873 §5.2 and RFC 7871 §7.1 allow).
		for o, end := off, off+rdlen; o < end; {
			if end-o < 4 {
				return q, errMalformed
			}
			o += 4 + int(binary.BigEndian.Uint16(p[o+2:]))
			if o > end {
				return q, errMalformed
			}
		}
		off += rdlen
	}
	if off != len(p) {
		return q, errUnusual
	}
	return q, nil
}

// appendKey appends the cache key of q in p: QNAME in wire format with
// ASCII letters lowered (RFC 4343 §3: DNS names compare case-insensitively
// in ASCII only), QTYPE, QCLASS and the DO bit.
func appendKey(dst []byte, p []byte, q *query) []byte {
	dst = appendLower(dst, p[headerLen:q.nameEnd])
	dst = binary.BigEndian.AppendUint16(dst, q.qtype)
	dst = binary.BigEndian.AppendUint16(dst, q.qclass)
	if q.do {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// appendLower appends a wire-format name with A-Z lowered. Length octets are
// at most 63, below 'A', so they are left as they are.
func appendLower(dst, name []byte) []byte {
	for _, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// keyName, keyType, keyClass and keyDO take a cache key apart.
func keyName(k string) string  { return k[:len(k)-5] }
func keyType(k string) uint16  { return uint16(k[len(k)-5])<<8 | uint16(k[len(k)-4]) }
func keyClass(k string) uint16 { return uint16(k[len(k)-3])<<8 | uint16(k[len(k)-2]) }
func keyDO(k string) bool      { return k[len(k)-1] == 1 }

// inZone reports whether the wire-format name is zone or below it, both
// lowered, comparing at label boundaries.
func inZone(name, zone []byte) bool {
	d := len(name) - len(zone)
	if d < 0 || string(name[d:]) != string(zone) {
		return false
	}
	off := 0
	for off < d {
		off += 1 + int(name[off])
	}
	return off == d
}

// responseFlags builds the second header word of a response to q: QR, the
// opcode and the RD and CD bits copied (RFC 1035 §4.1.1, RFC 4035 §3.2.2),
// and the given bits and RCODE.
func responseFlags(q *query, bits uint16, rcode int) uint16 {
	return flagQR | q.flags&(opcodeMask|flagRD|flagCD) | bits | uint16(rcode&rcodeMask)
}

// appendResponse appends a response to q in p: the header, the client's own
// question as sent (keeping the case of its letters, which resolvers using
// 0x20 randomization check), body, and an OPT record when the query had
// one (RFC 6891 §7). Compression pointers in body may point into the
// question: it has the same length and label layout as the one body was
// packed with.
func appendResponse(dst []byte, p []byte, q *query, flags uint16, an, ns, ar uint16, body []byte, udpSize uint16, rcode int) []byte {
	if q.edns {
		ar++
	}
	dst = append(dst,
		byte(q.id>>8), byte(q.id),
		byte(flags>>8), byte(flags),
		0, 1,
		byte(an>>8), byte(an),
		byte(ns>>8), byte(ns),
		byte(ar>>8), byte(ar))
	dst = append(dst, p[headerLen:q.end]...)
	dst = append(dst, body...)
	if q.edns {
		var do byte
		if q.do {
			do = 0x80
		}
		// The upper 8 bits of a 12-bit RCODE live in the OPT TTL
		// (RFC 6891 §6.1.3).
		dst = append(dst, 0, byte(typeOPT>>8), byte(typeOPT&0xff),
			byte(udpSize>>8), byte(udpSize), byte(rcode>>4), 0, do, 0, 0, 0)
	}
	return dst
}

// responseLimit is the largest response q may get (RFC 1035 §4.2.1, RFC 6891
// §6.2.5): over TCP a whole message, over UDP 512 bytes without EDNS, else
// the requestor's payload size, at least 512, at most our own.
func responseLimit(q *query, tcp bool, ours int) int {
	if tcp {
		return maxMsgSize
	}
	if !q.edns {
		return minUDPSize
	}
	n := int(q.udpSize)
	if n < minUDPSize {
		n = minUDPSize
	}
	return min(n, ours)
}

// rrTTLOffsets appends the offset of the TTL field of each of the count
// resource records starting at off in msg, and returns the offset past
// them. It follows RFC 1035 §4.1.3 and §4.1.4 (compression pointers end a
// name). It is used on messages packed by miekg/dns, but checks every bound.
func rrTTLOffsets(dst []int, msg []byte, off, count int) ([]int, int, error) {
	for range count {
		var err error
		if off, err = skipName(msg, off); err != nil {
			return dst, off, err
		}
		if len(msg) < off+10 {
			return dst, off, errShort
		}
		dst = append(dst, off+4)
		rdlen := int(binary.BigEndian.Uint16(msg[off+8:]))
		off += 10 + rdlen
		if off > len(msg) {
			return dst, off, errShort
		}
	}
	return dst, off, nil
}

// skipName returns the offset just past the name at off.
func skipName(msg []byte, off int) (int, error) {
	for n := 0; ; n++ {
		if off >= len(msg) {
			return off, errShort
		}
		l := int(msg[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l&0xc0 == 0xc0:
			if off+2 > len(msg) {
				return off, errShort
			}
			return off + 2, nil
		case l&0xc0 != 0:
			return off, fmt.Errorf("%w: label type %#x", errMalformed, l&0xc0)
		}
		off += 1 + l
		if n > maxNameLen/2 {
			return off, errMalformed
		}
	}
}
