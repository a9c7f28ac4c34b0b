// Package xeddsa signs with X25519 keys, so that a box's one node key (its
// WireGuard static key, bound to it by its membership certificate) also
// authenticates what the box publishes: catalog entries, endpoint records.
//
// It implements XEdDSA from the Signal specification "The XEdDSA and VXEdDSA
// Signature Schemes" (revision 1, 2016), section 2.3 ("calculate_key_pair"),
// 3.3 ("xeddsa_sign"): the Montgomery private scalar is mapped to the twisted
// Edwards point with sign bit 0, and the signature is an ordinary Ed25519
// signature under that point, so verification is crypto/ed25519's.
//
// It does not do VXEdDSA (verifiable random functions), nor signing with
// anything but Curve25519.
package xeddsa

import (
	"crypto/ed25519"
	"crypto/sha512"
	"errors"
	"io"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// SignatureSize is the size of a signature: R (32 bytes) then s (32).
const SignatureSize = ed25519.SignatureSize

// ErrBadPublicKey is returned for a Montgomery u-coordinate that has no
// Edwards point (u = -1) or is not canonical (u >= 2^255-19).
var ErrBadPublicKey = errors.New("xeddsa: public key has no Edwards form")

// Signer signs with one X25519 private key. It is safe for concurrent use.
type Signer struct {
	a   *edwards25519.Scalar // private scalar, negated if A's sign bit was 1
	pub [32]byte             // A, the Edwards public key with sign bit 0
}

// NewSigner returns a Signer for the X25519 private key priv (32 bytes, the
// form crypto/ecdh and wireguard-go store; clamping is applied here).
func NewSigner(priv []byte) (*Signer, error) {
	if len(priv) != 32 {
		return nil, errors.New("xeddsa: private key must be 32 bytes")
	}
	a, err := edwards25519.NewScalar().SetBytesWithClamping(priv)
	if err != nil {
		return nil, err
	}
	A := new(edwards25519.Point).ScalarBaseMult(a)
	enc := A.Bytes()
	if enc[31]&0x80 != 0 {
		a.Negate(a)
		enc[31] &^= 0x80
	}
	s := &Signer{a: a}
	copy(s.pub[:], enc)
	return s, nil
}

// PublicKey returns the Ed25519 form of the signer's public key, the one
// [Verify] derives from the X25519 public key.
func (s *Signer) PublicKey() ed25519.PublicKey {
	return ed25519.PublicKey(append([]byte(nil), s.pub[:]...))
}

// Sign returns the signature of msg. rand supplies the 64 bytes of the
// nonce's randomness Z (the specification's §3.3); crypto/rand.Reader is the
// right choice, and a nil rand is an error rather than a deterministic nonce.
func (s *Signer) Sign(rand io.Reader, msg []byte) ([]byte, error) {
	if rand == nil {
		return nil, errors.New("xeddsa: nil random source")
	}
	var z [64]byte
	if _, err := io.ReadFull(rand, z[:]); err != nil {
		return nil, err
	}
	// r = hash1(a || M || Z) mod q, hash1(X) = SHA-512(2^256 - 2 || X).
	h := sha512.New()
	var prefix [32]byte
	prefix[0] = 0xfe
	for i := 1; i < 32; i++ {
		prefix[i] = 0xff
	}
	h.Write(prefix[:])
	h.Write(s.a.Bytes())
	h.Write(msg)
	h.Write(z[:])
	r, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	if err != nil {
		return nil, err
	}
	R := new(edwards25519.Point).ScalarBaseMult(r)
	// h = hash(R || A || M) mod q; s = r + h*a mod q.
	h.Reset()
	rb := R.Bytes()
	h.Write(rb)
	h.Write(s.pub[:])
	h.Write(msg)
	k, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	if err != nil {
		return nil, err
	}
	sig := make([]byte, 0, SignatureSize)
	sig = append(sig, rb...)
	sig = append(sig, edwards25519.NewScalar().MultiplyAdd(k, s.a, r).Bytes()...)
	return sig, nil
}

// EdwardsPublicKey converts an X25519 public key (a Montgomery u-coordinate)
// to the Ed25519 public key with sign bit 0 that XEdDSA signatures verify
// under: y = (u - 1) / (u + 1) (specification §2.2, "convert_mont").
func EdwardsPublicKey(u [32]byte) (ed25519.PublicKey, error) {
	if u[31]&0x80 != 0 {
		return nil, ErrBadPublicKey
	}
	var ue field.Element
	if _, err := ue.SetBytes(u[:]); err != nil {
		return nil, ErrBadPublicKey
	}
	if [32]byte(ue.Bytes()) != u { // u >= p: not canonical
		return nil, ErrBadPublicKey
	}
	one := new(field.Element).One()
	den := new(field.Element).Add(&ue, one)
	if den.Equal(new(field.Element).Zero()) == 1 {
		return nil, ErrBadPublicKey
	}
	num := new(field.Element).Subtract(&ue, one)
	y := new(field.Element).Multiply(num, new(field.Element).Invert(den))
	return ed25519.PublicKey(y.Bytes()), nil
}

// Verify reports whether sig is a valid XEdDSA signature of msg by the
// holder of the X25519 private key of pub.
func Verify(pub [32]byte, msg, sig []byte) bool {
	if len(sig) != SignatureSize {
		return false
	}
	ed, err := EdwardsPublicKey(pub)
	if err != nil {
		return false
	}
	return ed25519.Verify(ed, msg, sig)
}
