package update

import (
	"crypto/ed25519"
	"errors"
	"testing"
)

func TestVerify(t *testing.T) {
	k1, k2, k3, stranger := testKey(1), testKey(2), testKey(3), testKey(9)
	dir := t.TempDir()
	makeRelease(t, dir, release{version: "2.0.0", root: payload("r", 1000)})
	manifest, _, err := ReadReleaseDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sigs := func(keys ...ed25519.PrivateKey) []byte {
		var s Signatures
		for _, k := range keys {
			s = Sign(s, k, manifest)
		}
		return s.Encode()
	}
	one := Sign(Signatures{}, k1, manifest).Signatures[0]
	twice := Signatures{Signatures: []Signature{one, one}}.Encode()
	tampered := append([]byte{}, manifest...)
	tampered[len(tampered)-3] = ' ' // still valid JSON, different bytes
	tests := []struct {
		name     string
		trust    Trust
		manifest []byte
		sigs     []byte
		want     error
	}{
		{"one of one", trustOf(1, k1), manifest, sigs(k1), nil},
		{"two of three", trustOf(2, k1, k2, k3), manifest, sigs(k1, k3), nil},
		{"untrusted key", trustOf(1, k1), manifest, sigs(stranger), ErrUntrusted},
		{"below threshold", trustOf(2, k1, k2, k3), manifest, sigs(k2, stranger), ErrUntrusted},
		{"same key twice", trustOf(2, k1, k2), manifest, twice, ErrUntrusted},
		{"tampered manifest", trustOf(1, k1), tampered, sigs(k1), ErrUntrusted},
		{"no trust", Trust{}, manifest, sigs(k1), ErrUntrusted},
		{"garbage signatures", trustOf(1, k1), manifest, []byte(`{"signatures":[{"key":"x","sig":"y"}]}`), ErrUntrusted},
		{"bad signature file", trustOf(1, k1), manifest, []byte(`[]`), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Verify(tt.trust, tt.manifest, tt.sigs)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Verify: got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCheckApplicable(t *testing.T) {
	base := Manifest{Board: "amd64", Channel: "stable", Version: "2.0.0"}
	v := func(s string) Version { x, _ := ParseVersion(s); return x }
	tests := []struct {
		name    string
		change  func(m *Manifest)
		running string
		ok      bool
	}{
		{"newer", nil, "1.0.0", true},
		{"from dev", nil, "dev", true},
		{"other board", func(m *Manifest) { m.Board = "rpi" }, "1.0.0", false},
		{"other channel", func(m *Manifest) { m.Channel = "testing" }, "1.0.0", false},
		{"same", nil, "2.0.0", false},
		{"older", nil, "3.0.0", false},
		{"signed downgrade", func(m *Manifest) { m.Downgrade = true }, "3.0.0", true},
		{"below minimum", func(m *Manifest) { m.MinVersion = "1.5" }, "1.0.0", false},
		{"at minimum", func(m *Manifest) { m.MinVersion = "1.5" }, "1.5.0", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := base
			if tt.change != nil {
				tt.change(&m)
			}
			err := CheckApplicable(&m, "amd64", "stable", v(tt.running))
			if tt.ok != (err == nil) {
				t.Fatalf("CheckApplicable: got %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrNotApplicable) {
				t.Errorf("error %v does not wrap ErrNotApplicable", err)
			}
		})
	}
}

func TestTrustRoundTrip(t *testing.T) {
	tr := trustOf(2, testKey(1), testKey(2), testKey(3))
	got, err := ParseTrust(tr.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if got.Threshold != 2 || len(got.Keys) != 3 || !got.Keys[1].Equal(tr.Keys[1]) {
		t.Fatalf("round trip: got %+v", got)
	}
	for _, bad := range []string{
		`{"version":1,"threshold":0,"keys":[]}`,
		`{"version":1,"threshold":4,"keys":["` + EncodeKey(pub(testKey(1))) + `"]}`,
		`{"version":2,"threshold":1,"keys":["` + EncodeKey(pub(testKey(1))) + `"]}`,
		`{"version":1,"threshold":1,"keys":["` + EncodeKey(pub(testKey(1))) + `","` + EncodeKey(pub(testKey(1))) + `"]}`,
		`{"version":1,"threshold":1,"keys":["abc"]}`,
	} {
		if _, err := ParseTrust([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseTrust(%s): got %v, want ErrMalformed", bad, err)
		}
	}
}

func TestPrivateKeyRoundTrip(t *testing.T) {
	k := testKey(4)
	got, err := ParsePrivateKey(EncodePrivateKey(k))
	if err != nil || !got.Equal(k) {
		t.Fatalf("ParsePrivateKey: %v", err)
	}
	if _, err := ParsePrivateKey([]byte("hello")); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParsePrivateKey(garbage): got %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	k := testKey(1)
	manifest := validManifest(f)
	f.Add(manifest, Sign(Signatures{}, k, manifest).Encode())
	f.Add([]byte(`{}`), []byte(`{"signatures":[]}`))
	tr := trustOf(1, k)
	f.Fuzz(func(t *testing.T, manifest, sigs []byte) {
		m, err := Verify(tr, manifest, sigs)
		if err != nil {
			return
		}
		if m.Validate() != nil {
			t.Fatal("verified manifest does not validate")
		}
	})
}

// FuzzParseTrust: a trust file (a box's state, a release's, a package's)
// either is refused or keeps 1 <= threshold <= distinct keys and encodes
// back to a file that parses to the same trust.
func FuzzParseTrust(f *testing.F) {
	f.Add(trustOf(2, testKey(1), testKey(2), testKey(3)).Encode())
	f.Add([]byte(`{"version":1,"threshold":1,"keys":["abc"]}`))
	f.Add([]byte(`{"version":1,"threshold":0,"keys":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := ParseTrust(data)
		if err != nil {
			return
		}
		if tr.Threshold < 1 || tr.Threshold > len(tr.Keys) {
			t.Fatalf("accepted threshold %d of %d keys", tr.Threshold, len(tr.Keys))
		}
		again, err := ParseTrust(tr.Encode())
		if err != nil || again.Threshold != tr.Threshold || len(again.Keys) != len(tr.Keys) {
			t.Fatalf("re-encoded trust: %+v, %v; want %+v", again, err, tr)
		}
		for i := range tr.Keys {
			if !again.Keys[i].Equal(tr.Keys[i]) {
				t.Fatalf("key %d changed in the round trip", i)
			}
		}
	})
}
