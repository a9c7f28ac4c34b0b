package disco

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"

	"golang.org/x/crypto/nacl/box"
)

// Type is the first byte of a message's plaintext.
type Type byte

// The message types.
const (
	// TypePing asks the receiver to answer with a Pong over the same path.
	TypePing Type = 1
	// TypePong answers a Ping and tells the pinger where it was seen from.
	TypePong Type = 2
	// TypeCallMeMaybe, sent through a relay, asks the receiver to ping the
	// listed endpoints now so that both sides open their NAT mappings at
	// the same time (hole punching).
	TypeCallMeMaybe Type = 3
)

func (t Type) String() string {
	switch t {
	case TypePing:
		return "ping"
	case TypePong:
		return "pong"
	case TypeCallMeMaybe:
		return "call-me-maybe"
	}
	return fmt.Sprintf("type(%d)", byte(t))
}

const (
	// version is the second plaintext byte. A receiver drops messages of a
	// version it does not know.
	version = 0
	// headerLen is the plaintext header: type, version.
	headerLen = 2
	// addrLen is an encoded netip.AddrPort: 16-byte address (IPv4 as
	// IPv4-mapped IPv6) and a big-endian port.
	addrLen = 18

	// TxIDLen is the length of a ping's transaction ID.
	TxIDLen = 12
	// MaxEndpoints is the most endpoints one CallMeMaybe carries; more are
	// dropped by the sender and rejected by the receiver.
	MaxEndpoints = 16
	// NonceLen is the length of the random nonce in front of each box.
	NonceLen = 24
	// Overhead is what sealing adds to a plaintext: nonce and Poly1305 tag.
	Overhead = NonceLen + box.Overhead
	// MaxPlaintextLen is the longest plaintext any message marshals to.
	MaxPlaintextLen = headerLen + MaxEndpoints*addrLen
)

// TxID identifies one ping; the pong echoes it.
type TxID [TxIDLen]byte

// NewTxID returns a random transaction ID.
func NewTxID() TxID {
	var id TxID
	rand.Read(id[:]) // never fails, see crypto/rand.Read
	return id
}

// A Message is one of *Ping, *Pong or *CallMeMaybe.
type Message interface {
	// AppendMarshal appends the plaintext encoding of the message to b.
	AppendMarshal(b []byte) []byte
	// Type reports the message type.
	Type() Type
}

// Ping asks for a Pong.
type Ping struct {
	TxID TxID
}

// Pong answers the Ping with the same TxID.
type Pong struct {
	TxID TxID
	// Src is the address the Ping arrived from, as the ponger saw it: the
	// pinger's public (possibly NATed) endpoint. It is the zero AddrPort when
	// the ping came through a relay.
	Src netip.AddrPort
}

// CallMeMaybe lists the sender's candidate endpoints.
type CallMeMaybe struct {
	Endpoints []netip.AddrPort
}

// Type implements Message.
func (*Ping) Type() Type { return TypePing }

// Type implements Message.
func (*Pong) Type() Type { return TypePong }

// Type implements Message.
func (*CallMeMaybe) Type() Type { return TypeCallMeMaybe }

// AppendMarshal implements Message.
func (m *Ping) AppendMarshal(b []byte) []byte {
	b = append(b, byte(TypePing), version)
	return append(b, m.TxID[:]...)
}

// AppendMarshal implements Message.
func (m *Pong) AppendMarshal(b []byte) []byte {
	b = append(b, byte(TypePong), version)
	b = append(b, m.TxID[:]...)
	return appendAddrPort(b, m.Src)
}

// AppendMarshal implements Message. Endpoints beyond MaxEndpoints are left
// out.
func (m *CallMeMaybe) AppendMarshal(b []byte) []byte {
	b = append(b, byte(TypeCallMeMaybe), version)
	for i, ep := range m.Endpoints {
		if i == MaxEndpoints {
			break
		}
		b = appendAddrPort(b, ep)
	}
	return b
}

func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	var a [16]byte
	if ap.Addr().IsValid() {
		a = ap.Addr().As16()
	}
	b = append(b, a[:]...)
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

func parseAddrPort(b []byte) netip.AddrPort {
	a := netip.AddrFrom16([16]byte(b[:16])).Unmap()
	port := binary.BigEndian.Uint16(b[16:18])
	if a.IsUnspecified() && port == 0 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a, port)
}

// Parse decodes a plaintext message.
func Parse(b []byte) (Message, error) {
	if len(b) < headerLen {
		return nil, ErrShort
	}
	t, v, body := Type(b[0]), b[1], b[headerLen:]
	if v != version {
		return nil, fmt.Errorf("%w: %d", ErrVersion, v)
	}
	switch t {
	case TypePing:
		if len(body) < TxIDLen {
			return nil, ErrShort
		}
		if len(body) != TxIDLen {
			return nil, fmt.Errorf("%w: ping of %d bytes", ErrMalformed, len(body))
		}
		return &Ping{TxID: TxID(body)}, nil
	case TypePong:
		if len(body) < TxIDLen+addrLen {
			return nil, ErrShort
		}
		if len(body) != TxIDLen+addrLen {
			return nil, fmt.Errorf("%w: pong of %d bytes", ErrMalformed, len(body))
		}
		return &Pong{TxID: TxID(body[:TxIDLen]), Src: parseAddrPort(body[TxIDLen:])}, nil
	case TypeCallMeMaybe:
		if len(body)%addrLen != 0 || len(body)/addrLen > MaxEndpoints {
			return nil, fmt.Errorf("%w: call-me-maybe of %d bytes", ErrMalformed, len(body))
		}
		m := &CallMeMaybe{Endpoints: make([]netip.AddrPort, 0, len(body)/addrLen)}
		for ; len(body) > 0; body = body[addrLen:] {
			m.Endpoints = append(m.Endpoints, parseAddrPort(body))
		}
		return m, nil
	}
	return nil, fmt.Errorf("%w: %d", ErrUnknownType, byte(t))
}

// SharedKey is the NaCl box key that two node keys share (X25519 then
// HSalsa20). Computing it once per peer keeps sealing cheap.
type SharedKey [32]byte

// Shared computes the key shared by our private key and a peer's public key.
// Both sides compute the same value.
func Shared(peerPublic, private *[32]byte) SharedKey {
	var k [32]byte
	box.Precompute(&k, peerPublic, private)
	return SharedKey(k)
}

// Seal appends nonce and box of m under k to dst and returns the result. It
// reads the nonce from rnd (nil means crypto/rand).
func Seal(dst []byte, m Message, k *SharedKey, rnd io.Reader) ([]byte, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	var nonce [NonceLen]byte
	if _, err := io.ReadFull(rnd, nonce[:]); err != nil {
		return nil, fmt.Errorf("reading nonce: %w", err)
	}
	var pt [MaxPlaintextLen]byte
	plain := m.AppendMarshal(pt[:0])
	dst = append(dst, nonce[:]...)
	return box.SealAfterPrecomputation(dst, plain, &nonce, (*[32]byte)(k)), nil
}

// Open authenticates and decrypts a sealed message (nonce followed by box)
// and parses it. Any failure to authenticate returns ErrAuth.
func Open(sealed []byte, k *SharedKey) (Message, error) {
	if len(sealed) < Overhead {
		return nil, ErrShort
	}
	if len(sealed) > Overhead+MaxPlaintextLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(sealed))
	}
	nonce := (*[NonceLen]byte)(sealed[:NonceLen])
	var pt [MaxPlaintextLen]byte
	plain, ok := box.OpenAfterPrecomputation(pt[:0], sealed[NonceLen:], nonce, (*[32]byte)(k))
	if !ok {
		return nil, ErrAuth
	}
	return Parse(plain)
}
