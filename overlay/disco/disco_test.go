package disco

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/curve25519"
)

func newKey(t testing.TB) (priv, pub [32]byte) {
	t.Helper()
	rand.Read(priv[:])
	p, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	if err != nil {
		t.Fatal(err)
	}
	return priv, [32]byte(p)
}

var tableMessages = []struct {
	name string
	msg  Message
}{
	{"ping", &Ping{TxID: TxID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}}},
	{"pong-v4", &Pong{TxID: TxID{9}, Src: netip.MustParseAddrPort("192.0.2.7:51820")}},
	{"pong-v6", &Pong{TxID: TxID{9}, Src: netip.MustParseAddrPort("[2001:db8::1]:1")}},
	{"pong-relayed", &Pong{TxID: TxID{9}}},
	{"call-me-maybe", &CallMeMaybe{Endpoints: []netip.AddrPort{
		netip.MustParseAddrPort("198.51.100.1:51820"),
		netip.MustParseAddrPort("[2001:db8::2]:4242"),
	}}},
	{"call-me-maybe-empty", &CallMeMaybe{Endpoints: []netip.AddrPort{}}},
}

func TestMarshalParse(t *testing.T) {
	for _, tt := range tableMessages {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.msg.AppendMarshal(nil)
			got, err := Parse(b)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.msg, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	ping := (&Ping{}).AppendMarshal(nil)
	for _, tt := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"one-byte", []byte{1}, ErrShort},
		{"bad-version", []byte{1, 9}, ErrVersion},
		{"unknown-type", []byte{77, 0}, ErrUnknownType},
		{"short-ping", ping[:len(ping)-1], ErrShort},
		{"long-ping", append(append([]byte{}, ping...), 0), ErrMalformed},
		{"short-pong", []byte{2, 0, 1, 2, 3}, ErrShort},
		{"ragged-call-me-maybe", []byte{3, 0, 1, 2, 3}, ErrMalformed},
		{"too-many-endpoints", append([]byte{3, 0}, make([]byte, addrLen*(MaxEndpoints+1))...), ErrMalformed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.in)
			if !errors.Is(err, tt.want) {
				t.Errorf("Parse(%x) = %v, want %v", tt.in, err, tt.want)
			}
		})
	}
}

func TestSealOpen(t *testing.T) {
	aPriv, aPub := newKey(t)
	bPriv, bPub := newKey(t)
	_, cPub := newKey(t)
	ab := Shared(&bPub, &aPriv)
	ba := Shared(&aPub, &bPriv)
	if ab != ba {
		t.Fatal("shared keys differ between the two sides")
	}
	wrong := Shared(&cPub, &aPriv)
	for _, tt := range tableMessages {
		t.Run(tt.name, func(t *testing.T) {
			sealed, err := Seal(nil, tt.msg, &ab, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Open(sealed, &ba)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if got.Type() != tt.msg.Type() {
				t.Errorf("got %v, want %v", got.Type(), tt.msg.Type())
			}
			if _, err := Open(sealed, &wrong); !errors.Is(err, ErrAuth) {
				t.Errorf("Open with the wrong key = %v, want ErrAuth", err)
			}
			// Flip every byte in turn: each tampered copy must fail.
			for i := range sealed {
				tampered := bytes.Clone(sealed)
				tampered[i] ^= 0x40
				if _, err := Open(tampered, &ba); !errors.Is(err, ErrAuth) {
					t.Fatalf("Open with byte %d flipped = %v, want ErrAuth", i, err)
				}
			}
			if _, err := Open(sealed[:len(sealed)-1], &ba); err == nil {
				t.Error("Open of a truncated box succeeded")
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, tt := range tableMessages {
		f.Add(tt.msg.AppendMarshal(nil))
	}
	f.Add([]byte{3, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		// Whatever parses must marshal back to a message that parses the
		// same way.
		again, err := Parse(m.AppendMarshal(nil))
		if err != nil {
			t.Fatalf("re-parse of %T: %v", m, err)
		}
		if again.Type() != m.Type() {
			t.Fatalf("type changed: %v -> %v", m.Type(), again.Type())
		}
	})
}

func FuzzOpen(f *testing.F) {
	var priv, pub [32]byte
	priv[0] = 1
	p, _ := curve25519.X25519(priv[:], curve25519.Basepoint)
	copy(pub[:], p)
	k := Shared(&pub, &priv)
	for _, tt := range tableMessages {
		sealed, err := Seal(nil, tt.msg, &k, nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sealed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		Open(b, &k) // must not panic
	})
}

func BenchmarkSealOpen(b *testing.B) {
	var priv, pub [32]byte
	priv[0] = 1
	p, _ := curve25519.X25519(priv[:], curve25519.Basepoint)
	copy(pub[:], p)
	k := Shared(&pub, &priv)
	m := &Ping{TxID: NewTxID()}
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		sealed, err := Seal(buf[:0], m, &k, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Open(sealed, &k); err != nil {
			b.Fatal(err)
		}
	}
}
