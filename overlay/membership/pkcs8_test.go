package membership

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"testing"
)

// TestPKCS8MatchesX509 checks the store's own PKCS #8 codec against
// crypto/x509: the same bytes out, the same key back, and other keys and
// forms refused.
func TestPKCS8MatchesX509(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	want, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if got := marshalPKCS8(key); !bytes.Equal(got, want) {
		t.Errorf("marshalPKCS8 = %x, crypto/x509 writes %x", got, want)
	}
	got, err := parsePKCS8(want)
	if err != nil || !got.Equal(key) {
		t.Errorf("parsePKCS8(crypto/x509's encoding) = %x, %v; want the key", got, err)
	}

	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := x509.MarshalPKCS8PrivateKey(x25519)
	if err != nil {
		t.Fatal(err)
	}
	for name, der := range map[string][]byte{
		"x25519 key":     other,
		"truncated":      want[:len(want)-1],
		"trailing byte":  append(bytes.Clone(want), 0),
		"version 2":      append(append(bytes.Clone(want[:4]), 1), want[5:]...),
		"empty":          nil,
		"prefix only":    pkcs8Ed25519Prefix,
		"long seed form": append(bytes.Clone(want), want[len(want)-32:]...),
	} {
		if k, err := parsePKCS8(der); err == nil {
			t.Errorf("parsePKCS8(%s) = %x, want an error", name, k)
		}
	}
}

// FuzzParsePKCS8: whatever the store's parser accepts, crypto/x509 reads
// as the same Ed25519 key, and it encodes back to the input.
func FuzzParsePKCS8(f *testing.F) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	f.Add(marshalPKCS8(key))
	f.Add(pkcs8Ed25519Prefix)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		k, err := parsePKCS8(der)
		if err != nil {
			return
		}
		x, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			t.Fatalf("parsePKCS8 accepted %x, crypto/x509 refuses it: %v", der, err)
		}
		if xk, ok := x.(ed25519.PrivateKey); !ok || !xk.Equal(k) {
			t.Fatalf("parsePKCS8(%x) = %x, crypto/x509 reads %#v", der, k, x)
		}
		if again := marshalPKCS8(k); !bytes.Equal(again, der) {
			t.Fatalf("marshalPKCS8(parsePKCS8(%x)) = %x", der, again)
		}
	})
}
