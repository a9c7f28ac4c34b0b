package membership

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or writes it with -update, and
// returns the file's content.
func golden(t *testing.T, name string, got []byte) []byte {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s changed; if the encoding change is intended, run go test -update and bump the version\n got:\n%s\nwant:\n%s", path, got, want)
	}
	return want
}

// hexLines formats b as hex, 32 bytes a line.
func hexLines(b []byte) []byte {
	var out []byte
	for len(b) > 0 {
		n := min(32, len(b))
		out = append(out, hex.EncodeToString(b[:n])+"\n"...)
		b = b[n:]
	}
	return out
}

func unhexLines(t *testing.T, s []byte) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(string(s), "\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGolden pins the encodings: the fixture is deterministic (fixed random
// stream, fixed times), so any change of the bytes is a format change. The
// stored bytes must also still parse and verify.
func TestGolden(t *testing.T) {
	f := newFixture(t)
	t.Run("certificate", func(t *testing.T) {
		b := unhexLines(t, golden(t, "certificate.hex", hexLines(mustMarshal(t, &f.m.Certificate))))
		var c Certificate
		if err := c.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("membership", func(t *testing.T) {
		b := unhexLines(t, golden(t, "membership.hex", hexLines(mustMarshal(t, f.m))))
		var m Membership
		if err := m.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if err := VerifyMembership(f.c, &m, t0, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("renewed membership", func(t *testing.T) {
		b := unhexLines(t, golden(t, "renewed.hex", hexLines(mustMarshal(t, f.renewed(t)))))
		var m Membership
		if err := m.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if err := VerifyMembership(f.c, &m, t0, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("invitation", func(t *testing.T) {
		token := golden(t, "invitation.token", []byte(f.inv.Token()+"\n"))
		inv, err := ParseInvitation(strings.TrimSuffix(string(token), "\n"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := inv.Issue(f.key, t0, 0, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("revocation list", func(t *testing.T) {
		b := unhexLines(t, golden(t, "revocations.hex", hexLines(mustMarshal(t, testRevocationList(t, f)))))
		var l RevocationList
		if err := l.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if err := l.Verify(f.c); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("redemptions", func(t *testing.T) {
		b := unhexLines(t, golden(t, "redemptions.hex", hexLines(mustMarshal(t, testRedemptions(t, f)))))
		var r Redemptions
		if err := r.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("community.json", func(t *testing.T) {
		s, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SaveCommunity(f.c); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(s.Dir(), CommunityFile))
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "community.json", b)
	})
}
