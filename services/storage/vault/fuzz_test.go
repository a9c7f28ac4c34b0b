package vault

import (
	"crypto/rand"
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

func seedManifest(t testing.TB) []byte {
	_, s := fuzzKey(t)
	shards, hashes, _ := split([]byte("some ciphertext of a file, long enough"), 2, 4)
	m := &Manifest{Version: 1, Owner: "owner1", File: strings.Repeat("0f", 16), Seq: 3, Size: 38, K: 2, N: 4,
		ShardSize: len(shards[0]), Hashes: hashes, Holders: []string{"a", "b", "", "d"}}
	b, err := m.Sign(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
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

func FuzzParseShare(f *testing.F) {
	pub, _ := fuzzKey(f)
	raw := seedManifest(f)
	shards, _, _ := split([]byte("some ciphertext of a file, long enough"), 2, 4)
	f.Add((&Share{Index: 1, Manifest: raw, Data: shards[1]}).Encode())
	f.Add([]byte("CBVS1\n\x00\x00\x00\x00\xff\xff\xff\xff"))
	keys := func(string) ([32]byte, bool) { return pub, true }
	f.Fuzz(func(t *testing.T, b []byte) {
		s, m, err := ParseVerifiedShare(b, keys)
		if err != nil {
			return
		}
		if s.Index >= m.N || len(s.Data) != m.ShardSize {
			t.Fatalf("accepted share %d of %d bytes for %+v", s.Index, len(s.Data), m)
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
