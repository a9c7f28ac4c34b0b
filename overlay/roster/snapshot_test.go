package roster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/overlay/membership"
	"github.com/google/go-cmp/cmp"
)

// validSnapshots are the table cases of valid snapshots.
func validSnapshots(t testing.TB) map[string]*Snapshot {
	f := newFixture(t)
	keyA, keyB := nodeKey(t, 1), nodeKey(t, 2)
	a, b := f.founder(keyA, t0), f.member("b", keyB, t0, 0)
	if compareKeys(keyA, keyB) > 0 {
		a, b = b, a
	}
	list := f.revoke(nil, t0, membership.RevokeNodeKeyEntry(nodeKey(t, 3), "lost"))
	red1, red2 := f.member("c", nodeKey(t, 4), t0, 0), f.member("d", nodeKey(t, 5), t0, 0)
	if bytes.Compare(red1.Delegation.InviteID[:], red2.Delegation.InviteID[:]) > 0 {
		red1, red2 = red2, red1
	}
	id := f.c.ID()
	return map[string]*Snapshot{
		"empty": {Community: id},
		"records": {Community: id, Records: []Record{
			{Membership: a, Endpoints: []netip.AddrPort{ep1, ep2}, Updated: t0.Add(123456789), RelayOK: true},
			{Membership: b},
		}},
		"max endpoints": {Community: id, Records: []Record{
			{Membership: a, Endpoints: manyEndpoints(MaxEndpoints), Updated: t0},
		}},
		"full": {Community: id,
			Records:     []Record{{Membership: a, Endpoints: []netip.AddrPort{ep3}, Updated: t0}, {Membership: b, Updated: t0}},
			Revocations: list,
			Redemptions: []*membership.Membership{red1, red2},
		},
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	for name, s := range validSnapshots(t) {
		t.Run(name, func(t *testing.T) {
			b := mustEncode(t, s)
			got, err := DecodeSnapshot(b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(s, got, cmpOpts); diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
			if again := mustEncode(t, got); !bytes.Equal(again, b) {
				t.Errorf("encoding again differs:\n%x\n%x", b, again)
			}
		})
	}
}

// snapshotBuilder writes snapshot encodings field by field, valid or not.
type snapshotBuilder struct{ e encoder }

func newBuilder(id membership.CommunityID, records int) *snapshotBuilder {
	b := &snapshotBuilder{}
	b.e.Raw([]byte(snapshotMagic))
	b.e.U8(snapshotVersion)
	b.e.Raw(id[:])
	b.e.U16(uint16(records))
	return b
}

func (b *snapshotBuilder) record(chain []byte, updated uint64, flags uint8, eps ...[]byte) *snapshotBuilder {
	b.e.Bytes16(chain)
	b.e.U64(updated)
	b.e.U8(flags)
	b.e.U8(uint8(len(eps)))
	for _, ep := range eps {
		b.e.Raw(ep)
	}
	return b
}

func (b *snapshotBuilder) tail(rev []byte, reds ...[]byte) []byte {
	b.e.Bytes32(rev)
	b.e.U32(uint32(len(reds)))
	for _, r := range reds {
		b.e.Bytes16(r)
	}
	return b.e.Bytes()
}

func rawEP(family byte, addr []byte, port uint16) []byte {
	return binary.BigEndian.AppendUint16(append([]byte{family}, addr...), port)
}

func manyRawEndpoints(n int) [][]byte {
	var out [][]byte
	for _, ap := range manyEndpoints(n) {
		out = append(out, rawEP(4, ap.Addr().AsSlice(), ap.Port()))
	}
	return out
}

type byteCase struct {
	name string
	b    []byte
}

// malformedSnapshots are encodings DecodeSnapshot must refuse.
func malformedSnapshots(t testing.TB) []byteCase {
	f := newFixture(t)
	id := f.c.ID()
	keyA, keyB := nodeKey(t, 1), nodeKey(t, 2)
	a, b := f.founder(keyA, t0), f.member("b", keyB, t0, 0)
	if compareKeys(keyA, keyB) > 0 {
		a, b = b, a
	}
	ca, cb := mustMarshal(t, a), mustMarshal(t, b)
	red1, red2 := f.member("c", nodeKey(t, 4), t0, 0), f.member("d", nodeKey(t, 5), t0, 0)
	if bytes.Compare(red1.Delegation.InviteID[:], red2.Delegation.InviteID[:]) > 0 {
		red1, red2 = red2, red1
	}
	r1, r2 := mustMarshal(t, red1), mustMarshal(t, red2)
	v4 := rawEP(4, []byte{192, 0, 2, 1}, 51820)
	upd := uint64(t0.UnixNano())
	valid := newBuilder(id, 2).record(ca, upd, 0, v4).record(cb, 0, 0).tail(nil, r1)
	var cases []byteCase
	add := func(name string, b []byte) { cases = append(cases, byteCase{name, b}) }
	add("empty input", nil)
	add("bad magic", append([]byte("CBX1"), valid[4:]...))
	add("version 2", append(append([]byte(snapshotMagic), 2), valid[5:]...))
	add("trailing byte", append(bytes.Clone(valid), 0))
	for _, n := range []int{5, 15, 17, 40, len(valid) - 1} {
		add("truncated", valid[:n])
	}
	add("records out of order", newBuilder(id, 2).record(cb, 0, 0).record(ca, 0, 0).tail(nil))
	add("record twice", newBuilder(id, 2).record(ca, 0, 0).record(ca, 0, 0).tail(nil))
	add("more records than allowed", newBuilder(id, MaxMembers+1).tail(nil))
	add("record count beyond input", newBuilder(id, 3).record(ca, 0, 0).tail(nil))
	add("garbage membership", newBuilder(id, 1).record([]byte("CBM1\x01junk"), 0, 0).tail(nil))
	add("membership with trailing byte", newBuilder(id, 1).record(append(bytes.Clone(ca), 0), 0, 0).tail(nil))
	add("too many endpoints", newBuilder(id, 1).record(ca, upd, 0, manyRawEndpoints(MaxEndpoints+1)...).tail(nil))
	add("endpoint family 5", newBuilder(id, 1).record(ca, upd, 0, rawEP(5, []byte{192, 0, 2, 1}, 1)).tail(nil))
	add("endpoint port 0", newBuilder(id, 1).record(ca, upd, 0, rawEP(4, []byte{192, 0, 2, 1}, 0)).tail(nil))
	add("endpoint unspecified", newBuilder(id, 1).record(ca, upd, 0, rawEP(4, []byte{0, 0, 0, 0}, 1)).tail(nil))
	add("endpoint multicast", newBuilder(id, 1).record(ca, upd, 0, rawEP(6, netip.MustParseAddr("ff02::1").AsSlice(), 1)).tail(nil))
	add("endpoint IPv4-mapped", newBuilder(id, 1).record(ca, upd, 0, rawEP(6, netip.MustParseAddr("::ffff:192.0.2.1").AsSlice(), 1)).tail(nil))
	add("endpoint twice", newBuilder(id, 1).record(ca, upd, 0, v4, v4).tail(nil))
	add("endpoints without update time", newBuilder(id, 1).record(ca, 0, 0, v4).tail(nil))
	add("relay without update time", newBuilder(id, 1).record(ca, 0, flagRelayOK).tail(nil))
	add("unknown flag", newBuilder(id, 1).record(ca, upd, 2).tail(nil))
	add("update time beyond int64", newBuilder(id, 1).record(ca, math.MaxInt64+1, 0).tail(nil))
	add("update time in 2262", newBuilder(id, 1).record(ca, math.MaxInt64, 0).tail(nil))
	add("garbage revocation list", newBuilder(id, 0).tail([]byte("CBR1\x01")))
	add("revocation length beyond input", append(newBuilder(id, 0).e.Bytes(), 0, 0, 1, 0, 0, 0, 0, 0))
	add("redemption without invitation", newBuilder(id, 0).tail(nil, mustMarshal(t, f.founder(nodeKey(t, 9), t0))))
	add("redemptions out of order", newBuilder(id, 0).tail(nil, r2, r1))
	add("redemption twice", newBuilder(id, 0).tail(nil, r1, r1))
	add("redemption count beyond input", append(newBuilder(id, 0).e.Bytes(), 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff))
	add("over the size limit", append(newBuilder(id, 0).tail(nil), make([]byte, MaxSnapshotSize)...))
	return cases
}

func TestDecodeSnapshotMalformed(t *testing.T) {
	for _, tc := range malformedSnapshots(t) {
		t.Run(tc.name, func(t *testing.T) {
			s, err := DecodeSnapshot(tc.b)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeSnapshot = %v, %v; want ErrMalformed", s, err)
			}
		})
	}
}

func TestDecodeSnapshotValidBuilder(t *testing.T) {
	// The builder writes valid encodings too, so the malformed cases differ
	// from a valid one only where their names say.
	f := newFixture(t)
	a := f.founder(nodeKey(t, 1), t0)
	red := f.member("c", nodeKey(t, 4), t0, 0)
	b := newBuilder(f.c.ID(), 1).
		record(mustMarshal(t, a), uint64(t0.UnixNano()), flagRelayOK, rawEP(4, []byte{192, 0, 2, 1}, 51820)).
		tail(nil, mustMarshal(t, red))
	s, err := DecodeSnapshot(b)
	if err != nil {
		t.Fatal(err)
	}
	want := &Snapshot{
		Community:   f.c.ID(),
		Records:     []Record{{Membership: a, Endpoints: []netip.AddrPort{ep1}, Updated: t0, RelayOK: true}},
		Redemptions: []*membership.Membership{red},
	}
	if diff := cmp.Diff(want, s, cmpOpts); diff != "" {
		t.Errorf("decoded (-want +got):\n%s", diff)
	}
}

func TestEncodeSnapshotInvalid(t *testing.T) {
	f := newFixture(t)
	keyA, keyB := nodeKey(t, 1), nodeKey(t, 2)
	a, b := f.founder(keyA, t0), f.member("b", keyB, t0, 0)
	if compareKeys(keyA, keyB) > 0 {
		a, b = b, a
	}
	id := f.c.ID()
	tests := []struct {
		name string
		s    *Snapshot
		want error
	}{
		{"nil membership", &Snapshot{Community: id, Records: []Record{{}}}, ErrMalformed},
		{"out of order", &Snapshot{Community: id, Records: []Record{{Membership: b}, {Membership: a}}}, ErrMalformed},
		{"endpoints without time", &Snapshot{Community: id, Records: []Record{{Membership: a, Endpoints: []netip.AddrPort{ep1}}}}, ErrMalformed},
		{"before 1970", &Snapshot{Community: id, Records: []Record{{Membership: a, Updated: time.Unix(-1, 0)}}}, ErrMalformed},
		{"after 2261", &Snapshot{Community: id, Records: []Record{{Membership: a, Updated: time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)}}}, ErrMalformed},
		{"too many endpoints", &Snapshot{Community: id, Records: []Record{{Membership: a, Updated: t0, Endpoints: manyEndpoints(MaxEndpoints + 1)}}}, ErrMalformed},
		{"zoned endpoint", &Snapshot{Community: id, Records: []Record{{Membership: a, Updated: t0, Endpoints: []netip.AddrPort{netip.MustParseAddrPort("[fe80::1%eth0]:1")}}}}, ErrMalformed},
		{"redemption without invitation", &Snapshot{Community: id, Redemptions: []*membership.Membership{f.founder(nodeKey(t, 7), t0)}}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.s.Encode(); !errors.Is(err, tt.want) {
				t.Errorf("Encode = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestEncodeSnapshotTooLarge(t *testing.T) {
	big := make([]byte, 60<<10)
	var recs []wireRecord
	for i := range 80 { // 80 × 60 KiB > 4 MiB
		var key [32]byte
		binary.BigEndian.PutUint32(key[:], uint32(i))
		recs = append(recs, wireRecord{key: key, chain: big})
	}
	if _, err := encodeSnapshot(membership.CommunityID{}, recs, nil, nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("encodeSnapshot = %v, want ErrTooLarge", err)
	}
}

// FuzzDecodeSnapshot checks that decoding never panics and that whatever
// decodes is canonical: encoding it gives the input back.
func FuzzDecodeSnapshot(f *testing.F) {
	for _, s := range validSnapshots(f) {
		f.Add(mustEncode(f, s))
	}
	for _, tc := range malformedSnapshots(f) {
		if len(tc.b) <= 64<<10 {
			f.Add(tc.b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSnapshot(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := s.Encode()
		if err != nil {
			t.Fatalf("decoded snapshot does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("encoding is not canonical:\n  in %x\n out %x", b, again)
		}
	})
}
