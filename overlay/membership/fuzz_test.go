package membership

import (
	"bytes"
	"encoding"
	"testing"
)

// Each fuzz target checks that parsing never panics and that whatever parses
// is in canonical form: encoding it again gives the input back. The seeds
// are the valid encodings and the malformed cases of the table tests.

// maxSeedSize leaves out the multi-megabyte "oversized" cases, which only
// slow the fuzzer down; the table tests cover them.
const maxSeedSize = MaxRevocationListSize + 1

type binaryCodec interface {
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

func fuzzCanonical[T any, P interface {
	*T
	binaryCodec
}](f *testing.F, valid [][]byte, malformed []byteCase) {
	for _, b := range valid {
		f.Add(b)
	}
	for _, tc := range malformed {
		if len(tc.b) <= maxSeedSize {
			f.Add(tc.b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v := P(new(T))
		if err := v.UnmarshalBinary(b); err != nil {
			return
		}
		again, err := v.MarshalBinary()
		if err != nil {
			t.Fatalf("parsed value does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("encoding is not canonical:\n  in %x\n out %x", b, again)
		}
	})
}

func FuzzUnmarshalCertificate(f *testing.F) {
	fx := newFixture(f)
	fuzzCanonical[Certificate](f,
		[][]byte{mustMarshal(f, &fx.m.Certificate), mustMarshal(f, &fx.renewed(f).Certificate)},
		malformedCertificates(f, fx))
}

func FuzzUnmarshalDelegation(f *testing.F) {
	fx := newFixture(f)
	fuzzCanonical[Delegation](f, [][]byte{mustMarshal(f, fx.m.Delegation)}, nil)
}

func FuzzUnmarshalMembership(f *testing.F) {
	fx := newFixture(f)
	fuzzCanonical[Membership](f,
		[][]byte{mustMarshal(f, fx.m), mustMarshal(f, fx.renewed(f))},
		malformedMemberships(f, fx))
}

func FuzzUnmarshalRevocationList(f *testing.F) {
	fx := newFixture(f)
	empty, err := Revoke(fx.root, nil, t0)
	if err != nil {
		f.Fatal(err)
	}
	fuzzCanonical[RevocationList](f,
		[][]byte{mustMarshal(f, testRevocationList(f, fx)), mustMarshal(f, empty)},
		malformedRevocationLists(f, fx))
}

func FuzzUnmarshalRedemptions(f *testing.F) {
	fx := newFixture(f)
	fuzzCanonical[Redemptions](f,
		[][]byte{mustMarshal(f, testRedemptions(f, fx)), mustMarshal(f, new(Redemptions))},
		malformedRedemptions(f, fx))
}

func FuzzParseInvitation(f *testing.F) {
	fx := newFixture(f)
	f.Add(fx.inv.Token())
	for _, tc := range malformedTokens(f, fx) {
		f.Add(tc.token)
	}
	f.Fuzz(func(t *testing.T, token string) {
		inv, err := ParseInvitation(token)
		if err != nil {
			return
		}
		if got := inv.Token(); got != token {
			t.Fatalf("token is not canonical:\n  in %q\n out %q", token, got)
		}
	})
}
