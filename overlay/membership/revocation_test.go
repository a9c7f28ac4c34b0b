package membership

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRevoke(t *testing.T) {
	f := newFixture(t)
	k1, k2 := nodeKey(t, 1), nodeKey(t, 2)
	first, err := Revoke(f.root, nil, t0, RevokeNodeKeyEntry(k2, "lost"), RevokeInviteEntry([16]byte{5}, "leaked"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := Revoke(f.root, first, t0.Add(time.Hour),
		RevokeSerialEntry([8]byte{1}, ""), RevokeNodeKeyEntry(k1, "stolen"), RevokeNodeKeyEntry(k2, "new reason"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []*RevocationList{first, second} {
		if err := l.Verify(f.c); err != nil {
			t.Errorf("list %d: %v", l.Sequence, err)
		}
	}
	if first.Sequence != 1 || second.Sequence != 2 {
		t.Errorf("sequences %d, %d, want 1, 2", first.Sequence, second.Sequence)
	}
	want := []Revocation{
		RevokeNodeKeyEntry(min32(k1, k2), reasonOf(k1, k2, "stolen", "lost")),
		RevokeNodeKeyEntry(max32(k1, k2), reasonOf(k2, k1, "stolen", "lost")),
		RevokeSerialEntry([8]byte{1}, ""),
		RevokeInviteEntry([16]byte{5}, "leaked"),
	}
	if !reflect.DeepEqual(second.Entries, want) {
		t.Errorf("entries:\n got %+v\nwant %+v", second.Entries, want)
	}
	if len(first.Entries) != 2 {
		t.Errorf("Revoke changed the previous list: %+v", first.Entries)
	}

	_, otherKey := otherRoot(t)
	if _, err := Revoke(otherKey, first, t0); err == nil {
		t.Error("Revoke continued a list of another community")
	}
	for name, r := range map[string]Revocation{
		"unknown kind":     {Kind: 4, ID: make([]byte, 8)},
		"short id":         {Kind: RevokeSerial, ID: make([]byte, 7)},
		"long reason":      {Kind: RevokeSerial, ID: make([]byte, 8), Reason: strings.Repeat("r", 65)},
		"reason with tab":  {Kind: RevokeSerial, ID: make([]byte, 8), Reason: "a\tb"},
		"node key too big": {Kind: RevokeNodeKey, ID: make([]byte, 33)},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Revoke(f.root, first, t0, r); err == nil {
				t.Error("Revoke accepted the entry")
			}
		})
	}
}

func min32(a, b [32]byte) [32]byte {
	if bytes.Compare(a[:], b[:]) < 0 {
		return a
	}
	return b
}

func max32(a, b [32]byte) [32]byte {
	if bytes.Compare(a[:], b[:]) < 0 {
		return b
	}
	return a
}

// reasonOf returns ra if a sorts before b, else rb.
func reasonOf(a, b [32]byte, ra, rb string) string {
	if bytes.Compare(a[:], b[:]) < 0 {
		return ra
	}
	return rb
}

func TestRevocationListVerify(t *testing.T) {
	f := newFixture(t)
	other, otherKey := otherRoot(t)
	l, err := Revoke(f.root, nil, t0, RevokeNodeKeyEntry(f.key, "x"))
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := Revoke(otherKey, nil, t0, RevokeNodeKeyEntry(f.key, "x"))
	if err != nil {
		t.Fatal(err)
	}
	forged := *foreign
	forged.CommunityID = f.c.ID()
	tampered := *l
	tampered.Sequence = 7
	for _, tc := range []struct {
		name string
		l    *RevocationList
		c    Community
		want error
	}{
		{"valid", l, f.c, nil},
		{"other community", l, other, ErrWrongCommunity},
		{"signed by another root", &forged, f.c, ErrBadSignature},
		{"sequence changed", &tampered, f.c, ErrBadSignature},
		{"unsorted", &RevocationList{Version: 1, CommunityID: f.c.ID(), IssuedAt: t0, Entries: []Revocation{
			RevokeInviteEntry([16]byte{}, ""), RevokeSerialEntry([8]byte{}, ""),
		}}, f.c, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, tc.l.Verify(tc.c), tc.want)
		})
	}
}

func TestRevocationListNewer(t *testing.T) {
	one, two := &RevocationList{Sequence: 1}, &RevocationList{Sequence: 2}
	for _, tc := range []struct {
		name     string
		l, other *RevocationList
		want     bool
	}{
		{"higher", two, one, true},
		{"lower", one, two, false},
		{"same", two, &RevocationList{Sequence: 2}, false},
		{"against none", one, nil, true},
		{"none", nil, one, false},
		{"none against none", nil, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.l.Newer(tc.other); got != tc.want {
				t.Errorf("Newer = %v, want %v", got, tc.want)
			}
		})
	}
}

func testRevocationList(t testing.TB, f *fixture) *RevocationList {
	t.Helper()
	l, err := Revoke(f.root, nil, t0,
		RevokeNodeKeyEntry(f.key, "stolen box"),
		RevokeSerialEntry(f.m.Certificate.Serial, ""),
		RevokeInviteEntry(f.m.Delegation.InviteID, "token posted online"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestRevocationListRoundTrip(t *testing.T) {
	f := newFixture(t)
	l := testRevocationList(t, f)
	b := mustMarshal(t, l)
	var got RevocationList
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, l) {
		t.Errorf("round trip:\n got %+v\nwant %+v", &got, l)
	}
	if err := got.Verify(f.c); err != nil {
		t.Error(err)
	}
	for _, m := range []*Membership{f.m, f.renewed(t)} {
		if _, ok := got.Lookup(m); !ok {
			t.Error("Lookup does not find a revoked member")
		}
	}
}

func malformedRevocationLists(t testing.TB, f *fixture) []byteCase {
	l := testRevocationList(t, f)
	enc := mustMarshal(t, l)
	const countAt = 4 + 1 + 10 + 8 + 8
	entry := countAt + 2 // first entry: the node key
	edit := func(e func(*RevocationList)) []byte {
		n := *l
		n.Entries = append([]Revocation(nil), l.Entries...)
		e(&n)
		return append(n.signed(), n.Signature[:]...)
	}
	huge := bytes.Clone(enc)
	binary.BigEndian.PutUint16(huge[countAt:], 0xffff)
	return []byteCase{
		{"empty", nil},
		{"truncated", enc[:len(enc)-1]},
		{"trailing byte", append(bytes.Clone(enc), 0)},
		{"bad magic", setByte(enc, 3, '2')},
		{"version 0", setByte(enc, 4, 0)},
		{"huge count", huge},
		{"kind 0", setByte(enc, entry, 0)},
		{"kind 4", setByte(enc, entry, 4)},
		{"reason beyond end", setByte(enc, entry+1+32, 0xff)},
		{"unsorted", edit(func(n *RevocationList) { n.Entries[0], n.Entries[1] = n.Entries[1], n.Entries[0] })},
		{"duplicate", edit(func(n *RevocationList) { n.Entries[1] = n.Entries[0] })},
		{"reason too long", edit(func(n *RevocationList) { n.Entries[0].Reason = strings.Repeat("r", 65) })},
		{"reason bad utf-8", edit(func(n *RevocationList) { n.Entries[0].Reason = "\xff" })},
		{"issued after 9999", edit(func(n *RevocationList) { n.IssuedAt = time.Unix(maxUnix+1, 0) })},
		{"oversized", make([]byte, MaxRevocationListSize+1)},
	}
}

func TestUnmarshalRevocationListMalformed(t *testing.T) {
	f := newFixture(t)
	for _, tc := range malformedRevocationLists(t, f) {
		t.Run(tc.name, func(t *testing.T) {
			var l RevocationList
			checkErr(t, l.UnmarshalBinary(tc.b), ErrMalformed)
		})
	}
}

func TestRevocationListLimit(t *testing.T) {
	f := newFixture(t)
	var l *RevocationList
	reason := strings.Repeat("r", maxReasonLen)
	// Add the largest entries until the list is full.
	for i := 0; ; i++ {
		var k [32]byte
		binary.BigEndian.PutUint32(k[:], uint32(i))
		next, err := Revoke(f.root, l, t0, RevokeNodeKeyEntry(k, reason))
		if err != nil {
			if i < 650 {
				t.Fatalf("list full after %d entries: %v", i, err)
			}
			break
		}
		l = next
	}
	if b := mustMarshal(t, l); len(b) > MaxRevocationListSize {
		t.Fatalf("list of %d bytes", len(b))
	}
}
