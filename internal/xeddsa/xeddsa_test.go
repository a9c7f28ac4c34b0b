package xeddsa

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"testing"
)

func newKey(t testing.TB) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignVerify(t *testing.T) {
	for i := range 64 { // both sign bits of A occur with overwhelming probability
		k := newKey(t)
		s, err := NewSigner(k.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		pub := [32]byte(k.PublicKey().Bytes())
		ed, err := EdwardsPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ed, s.PublicKey()) {
			t.Fatalf("key %d: Edwards form of the X25519 public key %x, signer has %x", i, ed, s.PublicKey())
		}
		msg := []byte("catalog entry")
		sig, err := s.Sign(rand.Reader, msg)
		if err != nil {
			t.Fatal(err)
		}
		if !Verify(pub, msg, sig) {
			t.Fatalf("key %d: own signature does not verify", i)
		}
		if Verify(pub, []byte("catalog entrY"), sig) {
			t.Fatalf("key %d: signature verifies another message", i)
		}
		bad := bytes.Clone(sig)
		bad[40] ^= 1
		if Verify(pub, msg, bad) {
			t.Fatalf("key %d: tampered signature verifies", i)
		}
		other := [32]byte(newKey(t).PublicKey().Bytes())
		if Verify(other, msg, sig) {
			t.Fatalf("key %d: signature verifies under another key", i)
		}
	}
}

func TestRandomizedNonce(t *testing.T) {
	s, err := NewSigner(newKey(t).Bytes())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Sign(rand.Reader, []byte("m"))
	b, _ := s.Sign(rand.Reader, []byte("m"))
	if bytes.Equal(a, b) {
		t.Fatal("two signatures of one message are equal: nonce is not randomized")
	}
	if _, err := s.Sign(nil, []byte("m")); err == nil {
		t.Fatal("Sign with a nil random source succeeded")
	}
}

func TestBadPublicKeys(t *testing.T) {
	minusOne := [32]byte{0xec} // p - 1 = 2^255 - 20
	for i := 1; i < 31; i++ {
		minusOne[i] = 0xff
	}
	minusOne[31] = 0x7f
	p := minusOne
	p[0] = 0xed // p itself: not canonical
	high := [32]byte{31: 0x80}
	for name, u := range map[string][32]byte{"u=-1": minusOne, "u=p": p, "high bit": high} {
		if _, err := EdwardsPublicKey(u); err == nil {
			t.Errorf("%s: no error", name)
		}
		if Verify(u, []byte("m"), make([]byte, SignatureSize)) {
			t.Errorf("%s: verifies", name)
		}
	}
	if Verify([32]byte{9}, []byte("m"), make([]byte, 10)) {
		t.Error("short signature verifies")
	}
}

func FuzzVerify(f *testing.F) {
	s, _ := NewSigner(newKey(f).Bytes())
	sig, _ := s.Sign(rand.Reader, []byte("seed"))
	var pub [32]byte
	copy(pub[:], []byte{9})
	f.Add(pub[:], []byte("seed"), sig)
	f.Fuzz(func(t *testing.T, pub, msg, sig []byte) {
		if len(pub) != 32 {
			return
		}
		Verify([32]byte(pub), msg, sig) // must not panic
	})
}

func BenchmarkVerify(b *testing.B) {
	k := newKey(b)
	s, _ := NewSigner(k.Bytes())
	msg := make([]byte, 512)
	sig, _ := s.Sign(rand.Reader, msg)
	pub := [32]byte(k.PublicKey().Bytes())
	b.ReportAllocs()
	for b.Loop() {
		if !Verify(pub, msg, sig) {
			b.Fatal("bad")
		}
	}
}
