package membership

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestCertificateRoundTrip(t *testing.T) {
	f := newFixture(t)
	b := mustMarshal(t, &f.m.Certificate)
	var got Certificate
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, f.m.Certificate) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, f.m.Certificate)
	}
	if again := mustMarshal(t, &got); !bytes.Equal(again, b) {
		t.Error("encoding is not canonical")
	}
}

type byteCase struct {
	name string
	b    []byte
}

// malformedCertificates returns encodings that UnmarshalBinary must reject
// with ErrMalformed. The fuzz target starts from them too.
func malformedCertificates(t testing.TB, f *fixture) []byteCase {
	good := f.m.Certificate
	enc := mustMarshal(t, &good)
	edit := func(e func(*Certificate)) []byte {
		c := good.clone()
		e(&c)
		return rawCert(c)
	}
	groups := func(g ...string) []byte { return edit(func(c *Certificate) { c.Groups = g }) }
	// nameAt is the offset of the name length byte.
	const nameAt = 4 + 1 + 10 + 8
	cases := []byteCase{
		{"empty", nil},
		{"truncated", enc[:len(enc)-1]},
		{"trailing byte", append(bytes.Clone(enc), 0)},
		{"bad magic", append([]byte("CBX1"), enc[4:]...)},
		{"version 2", setByte(enc, 4, 2)},
		{"name length beyond end", setByte(enc, nameAt, 0xff)},
		{"empty name", edit(func(c *Certificate) { c.Name = "" })},
		{"long name", edit(func(c *Certificate) { c.Name = strings.Repeat("n", 64) })},
		{"bad utf-8 name", edit(func(c *Certificate) { c.Name = "k\xc3" })},
		{"control character in name", edit(func(c *Certificate) { c.Name = "k\x00n" })},
		{"zero node key", edit(func(c *Certificate) { c.NodeKey = [32]byte{} })},
		{"uppercase group", groups("Admin")},
		{"empty group", groups("")},
		{"long group", groups(strings.Repeat("g", 33))},
		{"unsorted groups", groups("media", "admin")},
		{"duplicate groups", groups("admin", "admin")},
		{"17 groups", groups(strings.Split("a b c d e f g h i j k l m n o p q", " ")...)},
		{"not after before not before", edit(func(c *Certificate) { c.NotAfter = c.NotBefore.Add(-time.Second) })},
		{"not after equals not before", edit(func(c *Certificate) { c.NotAfter = c.NotBefore })},
		{"time after 9999", edit(func(c *Certificate) { c.NotAfter = time.Unix(maxUnix+1, 0) })},
		{"oversized", append(bytes.Clone(enc), make([]byte, MaxCertificateSize)...)},
	}
	huge := bytes.Clone(enc)
	binary.BigEndian.PutUint64(huge[len(huge)-64-32-8:], 1<<63)
	return append(cases, byteCase{"time huge", huge})
}

func setByte(b []byte, i int, v byte) []byte {
	b = bytes.Clone(b)
	b[i] = v
	return b
}

func TestUnmarshalCertificateMalformed(t *testing.T) {
	f := newFixture(t)
	for _, tc := range malformedCertificates(t, f) {
		t.Run(tc.name, func(t *testing.T) {
			c := Certificate{Name: "unchanged"}
			err := c.UnmarshalBinary(tc.b)
			checkErr(t, err, ErrMalformed)
			if c.Name != "unchanged" {
				t.Error("UnmarshalBinary changed its receiver on error")
			}
		})
	}
	// Every proper prefix of a valid encoding is truncated.
	enc := mustMarshal(t, &f.m.Certificate)
	for n := range len(enc) {
		var c Certificate
		if err := c.UnmarshalBinary(enc[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("prefix of %d bytes: got %v, want ErrMalformed", n, err)
		}
	}
}

func TestMarshalInvalidCertificate(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name string
		edit func(*Certificate)
	}{
		{"version 0", func(c *Certificate) { c.Version = 0 }},
		{"name too long for a length byte", func(c *Certificate) { c.Name = strings.Repeat("n", 300) }},
		{"ipv6 address", func(c *Certificate) { c.IPv4 = f.c.NodeIPv6(f.key) }},
		{"invalid ipv4", func(c *Certificate) { c.IPv4 = netip.Addr{} }},
		{"sub-second time", func(c *Certificate) { c.NotAfter = c.NotAfter.Add(time.Millisecond) }},
		{"time before 1970", func(c *Certificate) { c.NotBefore = time.Unix(-1, 0) }},
		{"short issuer key", func(c *Certificate) { c.IssuerKey = c.IssuerKey[:31] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := f.m.Certificate.clone()
			tc.edit(&c)
			if _, err := c.MarshalBinary(); err == nil {
				t.Fatal("MarshalBinary succeeded, want an error")
			}
		})
	}
}
