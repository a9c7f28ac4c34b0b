package update

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"testing"
	"time"
)

// testKey returns a deterministic release key for index i.
func testKey(i int) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte{byte(i), 'k'})
	return ed25519.NewKeyFromSeed(seed[:])
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// trustOf trusts the keys with the threshold.
func trustOf(threshold int, keys ...ed25519.PrivateKey) Trust {
	t := Trust{Threshold: threshold}
	for _, k := range keys {
		t.Keys = append(t.Keys, pub(k))
	}
	return t
}

// payload returns n bytes derived from tag: different tags give different
// chunks.
func payload(tag string, n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		s := sha256.Sum256([]byte(tag + string(rune(i))))
		b.Write(s[:])
	}
	return b.Bytes()[:n]
}

// release describes a test release.
type release struct {
	version, board, channel string
	root                    []byte
	boot                    []byte
	spread                  time.Duration
	chunkSize               int64
	downgrade               bool
	minVersion              string
}

// makeRelease writes r into dir, signed by signers, and returns the
// manifest.
func makeRelease(t testing.TB, dir string, r release, signers ...ed25519.PrivateKey) *Manifest {
	t.Helper()
	m := Manifest{Board: r.board, Version: r.version, Channel: r.channel, ChunkSize: r.chunkSize,
		Date: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), SpreadSeconds: int64(r.spread / time.Second),
		Downgrade: r.downgrade, MinVersion: r.minVersion}
	if m.Board == "" {
		m.Board = "amd64"
	}
	if m.Channel == "" {
		m.Channel = DefaultChannel
	}
	if m.ChunkSize == 0 {
		m.ChunkSize = 64 << 10
	}
	inputs := []Input{{Name: RootArtifact, Data: r.root}}
	if r.boot != nil {
		inputs = append(inputs, Input{Name: "boot/vmlinuz", Data: r.boot})
	}
	out, err := WriteRelease(dir, m, inputs)
	if err != nil {
		t.Fatalf("WriteRelease: %v", err)
	}
	for _, k := range signers {
		if _, err := SignDir(dir, EncodePrivateKey(k)); err != nil {
			t.Fatalf("SignDir: %v", err)
		}
	}
	return out
}
