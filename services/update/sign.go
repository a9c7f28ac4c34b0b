package update

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// signContext separates release signatures from any other use of the keys.
const signContext = "cloudbox release manifest v1\x00"

// MaxSignatures bounds the signatures of one release.
const MaxSignatures = 32

// Signatures is the content of a release's signature file.
type Signatures struct {
	Signatures []Signature `json:"signatures"`
}

// Signature is one release key's signature over the manifest bytes.
type Signature struct {
	// Key is the base64 (standard, padded) ed25519 public key.
	Key string `json:"key"`
	// Sig is the base64 ed25519 signature of signContext plus the manifest.
	Sig string `json:"sig"`
}

// ParseSignatures decodes a signature file.
func ParseSignatures(data []byte) (Signatures, error) {
	if len(data) > 64<<10 {
		return Signatures{}, fmt.Errorf("%w: signature file larger than 64 KiB", ErrMalformed)
	}
	var s Signatures
	if err := strictJSON(data, &s); err != nil {
		return Signatures{}, fmt.Errorf("%w: decoding signatures: %v", ErrMalformed, err)
	}
	if len(s.Signatures) > MaxSignatures {
		return Signatures{}, fmt.Errorf("%w: %d signatures, at most %d", ErrMalformed, len(s.Signatures), MaxSignatures)
	}
	return s, nil
}

// Encode returns the signature file's bytes.
func (s Signatures) Encode() []byte {
	b, _ := json.MarshalIndent(s, "", "  ") // cannot fail: strings only
	return append(b, '\n')
}

// Sign adds key's signature over manifest to sigs, replacing an earlier
// signature of the same key.
func Sign(sigs Signatures, key ed25519.PrivateKey, manifest []byte) Signatures {
	pub := EncodeKey(key.Public().(ed25519.PublicKey))
	sig := ed25519.Sign(key, append([]byte(signContext), manifest...))
	out := Signatures{}
	for _, s := range sigs.Signatures {
		if s.Key != pub {
			out.Signatures = append(out.Signatures, s)
		}
	}
	out.Signatures = append(out.Signatures, Signature{Key: pub, Sig: base64.StdEncoding.EncodeToString(sig)})
	return out
}

// EncodeKey returns the text form of a release public key.
func EncodeKey(k ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(k) }

// ParseKey parses the text form of a release public key.
func ParseKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: release key %q is not a base64 ed25519 public key", ErrMalformed, s)
	}
	return ed25519.PublicKey(b), nil
}

// Private key files hold this prefix and the base64 32-byte seed.
const privateKeyPrefix = "cloudbox-release-key:"

// EncodePrivateKey returns the content of a private key file.
func EncodePrivateKey(k ed25519.PrivateKey) []byte {
	return []byte(privateKeyPrefix + base64.StdEncoding.EncodeToString(k.Seed()) + "\n")
}

// ParsePrivateKey reads a private key file written by EncodePrivateKey.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	s, ok := strings.CutPrefix(strings.TrimSpace(string(data)), privateKeyPrefix)
	seed, err := base64.StdEncoding.DecodeString(s)
	if !ok || err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: not a cloudbox release key file (make one with `cloudbox release keygen`)", ErrMalformed)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// Trust is the set of release keys a community trusts and how many of them
// must sign a release.
type Trust struct {
	// Keys are the trusted ed25519 public keys. None means no release is
	// accepted.
	Keys []ed25519.PublicKey
	// Threshold is how many distinct trusted keys must sign; zero means 1.
	Threshold int
}

// trustFile is the JSON form of Trust.
type trustFile struct {
	Version   int      `json:"version"`
	Threshold int      `json:"threshold"`
	Keys      []string `json:"keys"`
}

// ParseTrust decodes a trust file: {"version": 1, "threshold": k, "keys":
// [base64 public keys]}, with 1 <= k <= len(keys).
func ParseTrust(data []byte) (Trust, error) {
	var f trustFile
	if err := strictJSON(data, &f); err != nil {
		return Trust{}, fmt.Errorf("%w: decoding trust file: %v", ErrMalformed, err)
	}
	if f.Version != 1 {
		return Trust{}, fmt.Errorf("%w: trust file field version: %d, want 1", ErrMalformed, f.Version)
	}
	t := Trust{Threshold: f.Threshold}
	seen := map[string]bool{}
	for i, s := range f.Keys {
		k, err := ParseKey(s)
		if err != nil {
			return Trust{}, fmt.Errorf("trust file field keys[%d]: %w", i, err)
		}
		if seen[string(k)] {
			return Trust{}, fmt.Errorf("%w: trust file field keys[%d]: key listed twice", ErrMalformed, i)
		}
		seen[string(k)] = true
		t.Keys = append(t.Keys, k)
	}
	if f.Threshold < 1 || f.Threshold > len(t.Keys) {
		return Trust{}, fmt.Errorf("%w: trust file field threshold: %d, want 1 to %d (the number of keys)", ErrMalformed, f.Threshold, len(t.Keys))
	}
	return t, nil
}

// ReadTrustFile reads the trust file at path and checks it (ParseTrust):
// for the builders that install one into an image or a package.
func ReadTrustFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the release trust file: %w", err)
	}
	if _, err := ParseTrust(data); err != nil {
		return nil, fmt.Errorf("release trust file %s: %w", path, err)
	}
	return data, nil
}

// Encode returns the trust file's bytes.
func (t Trust) Encode() []byte {
	f := trustFile{Version: 1, Threshold: t.threshold(), Keys: []string{}}
	for _, k := range t.Keys {
		f.Keys = append(f.Keys, EncodeKey(k))
	}
	b, _ := json.MarshalIndent(f, "", "  ")
	return append(b, '\n')
}

func (t Trust) threshold() int { return max(t.Threshold, 1) }

// Verify checks that at least t.Threshold distinct keys of t signed
// manifest and returns the parsed manifest. Signatures of unknown keys are
// ignored; it reads no clock.
func Verify(t Trust, manifest, signatures []byte) (*Manifest, error) {
	m, err := ParseManifest(manifest)
	if err != nil {
		return nil, err
	}
	sigs, err := ParseSignatures(signatures)
	if err != nil {
		return nil, err
	}
	if len(t.Keys) == 0 {
		return nil, fmt.Errorf("%w: this box trusts no release keys (set them in the update trust file)", ErrUntrusted)
	}
	msg := append([]byte(signContext), manifest...)
	valid := map[string]bool{}
	for _, s := range sigs.Signatures {
		k, err := ParseKey(s.Key)
		if err != nil {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil || len(sig) != ed25519.SignatureSize {
			continue
		}
		for _, tk := range t.Keys {
			if bytes.Equal(tk, k) && ed25519.Verify(tk, msg, sig) {
				valid[string(tk)] = true
			}
		}
	}
	if len(valid) < t.threshold() {
		return nil, fmt.Errorf("%w: %d valid signatures of trusted keys, %d required", ErrUntrusted, len(valid), t.threshold())
	}
	return m, nil
}

// CheckApplicable says whether a verified release may be installed on a box
// of board and channel running version running.
func CheckApplicable(m *Manifest, board, channel string, running Version) error {
	if m.Board != board {
		return fmt.Errorf("%w: release is for board %s, this box is %s", ErrNotApplicable, m.Board, board)
	}
	if m.Channel != channel {
		return fmt.Errorf("%w: release is for channel %s, this box follows %s", ErrNotApplicable, m.Channel, channel)
	}
	v, err := ParseVersion(m.Version)
	if err != nil {
		return err
	}
	switch c := v.Compare(running); {
	case c == 0:
		return fmt.Errorf("%w: version %s is already running", ErrNotApplicable, m.Version)
	case c < 0 && !m.Downgrade:
		return fmt.Errorf("%w: version %s is older than the running %s and not signed as a downgrade", ErrNotApplicable, m.Version, running)
	}
	if m.MinVersion != "" && !running.IsDev() {
		mv, err := ParseVersion(m.MinVersion)
		if err != nil {
			return err
		}
		if running.Compare(mv) < 0 {
			return fmt.Errorf("%w: the running version %s is below the release's minimum %s; install %s first", ErrNotApplicable, running, m.MinVersion, m.MinVersion)
		}
	}
	return nil
}

// strictJSON decodes exactly one JSON value without unknown fields.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}
