package vault

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/cloudbox/cloudbox/internal/xeddsa"
	"golang.org/x/crypto/curve25519"
)

// fuzzKey is the owner key of the fuzz seeds.
func fuzzKey(t testing.TB) ([32]byte, *xeddsa.Signer) {
	var priv [32]byte
	priv[0] = 1
	pub, _ := curve25519.X25519(priv[:], curve25519.Basepoint)
	s, err := xeddsa.NewSigner(priv[:])
	if err != nil {
		t.Fatal(err)
	}
	return [32]byte(pub), s
}

// seedManifest returns a signed manifest of a small file, k=2 n=4.
func seedManifest(t testing.TB) []byte {
	_, s := fuzzKey(t)
	m, _ := seedShares(t, s)
	b, err := m.Sign(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seedShares encodes a file of two stripes into shares as the owner
// uploads them.
func seedShares(t testing.TB, s *xeddsa.Signer) (*Manifest, [][]byte) {
	plain := bytes.Repeat([]byte("some plaintext of a file. "), MinStripe/20)
	m := &Manifest{Version: manifestVersion, Owner: "owner1", File: strings.Repeat("0f", 16), Seq: 3, Size: int64(len(plain)),
		Stripe: MinStripe, K: 2, N: 4, Hashes: make([]string, 4), Holders: []string{"a", "b", "", "d"}}
	cod, err := newCoder(m, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	data, hashes := make([][]byte, m.N), make([][]byte, m.N)
	for j := range m.stripes() {
		shards, err := cod.encode(j, plain[j*m.Stripe:j*m.Stripe+m.stripePlain(j)])
		if err != nil {
			t.Fatal(err)
		}
		for i, sh := range shards {
			sum := sha256.Sum256(sh)
			data[i], hashes[i] = append(data[i], sh...), append(hashes[i], sum[:]...)
		}
	}
	for i := range m.Hashes {
		sum := sha256.Sum256(hashes[i])
		m.Hashes[i] = hex.EncodeToString(sum[:])
	}
	raw, err := m.Sign(s)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, m.N)
	for i := range out {
		out[i] = append(append(uploadHead(i), data[i]...), uploadTail(hashes[i], raw)...)
	}
	return m, out
}

func FuzzParseManifest(f *testing.F) {
	pub, _ := fuzzKey(f)
	f.Add(seedManifest(f))
	f.Add([]byte(`{"manifest":"e30=","sig":""}`))
	f.Add([]byte(`{}`))
	keys := func(string) ([32]byte, bool) { return pub, true }
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b, keys)
		if err != nil {
			return
		}
		if len(m.Hashes) != m.N || len(m.Holders) != m.N || m.K >= m.N {
			t.Fatalf("accepted manifest breaks its limits: %+v", m)
		}
	})
}

// FuzzParseHeld feeds shares as owners upload them to the holder's
// checks.
func FuzzParseHeld(f *testing.F) {
	pub, signer := fuzzKey(f)
	_, shares := seedShares(f, signer)
	f.Add(shares[1])
	f.Add([]byte("CBVS2\n\x00\x00\x00\x00\xff\xff\xff\xff"))
	keys := func(string) ([32]byte, bool) { return pub, true }
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHeld(bytes.NewReader(b), int64(len(b)), keys)
		if err != nil {
			return
		}
		if h.Index >= h.Manifest.N || int64(len(b)) != h.Manifest.shareSize(len(h.Raw)) {
			t.Fatalf("accepted share %d of %d bytes for %+v", h.Index, len(b), h.Manifest)
		}
		h.verifyData(bytes.NewReader(b))
	})
}

// FuzzReadServedHead feeds shares as holders serve them to a reader.
func FuzzReadServedHead(f *testing.F) {
	_, signer := fuzzKey(f)
	m, shares := seedShares(f, signer)
	h, err := parseHeld(bytes.NewReader(shares[2]), int64(len(shares[2])), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(append(uploadHead(2), h.Hashes...))
	f.Add([]byte("CBVS2\n\x00\x00\x00\x02"))
	f.Fuzz(func(t *testing.T, b []byte) {
		hashes, err := readServedHead(bytes.NewReader(b), m, 2)
		if err != nil {
			return
		}
		if checkHashList(m, 2, hashes) != nil {
			t.Fatalf("accepted a hash list that does not match the manifest")
		}
	})
}

func FuzzParseCap(f *testing.F) {
	var c Cap
	c.Owner, c.File = "owner1", strings.Repeat("ab", 16)
	rand.Read(c.Key[:])
	f.Add(c.String())
	f.Add("cbvault1:a:b:c")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCap(s)
		if err != nil {
			return
		}
		again, err := ParseCap(c.String())
		if err != nil || again != c {
			t.Fatalf("capability %q does not round-trip: %v", s, err)
		}
	})
}
