package update_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/services/update"
	"github.com/cloudbox/cloudbox/services/update/updatetest"
)

// TestScale: a release injected at one of 24 boxes reaches all of them,
// and no box uploads more than a small multiple of the release (every box
// is a mirror: the boxes fetch different chunks first and serve each
// other).
func TestScale(t *testing.T) {
	const boxes = 24
	seed := sha256.Sum256([]byte("scale key"))
	key := ed25519.NewKeyFromSeed(seed[:])
	trust := update.Trust{Keys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, Threshold: 1}

	dir := t.TempDir()
	root := make([]byte, 1<<20)
	rand.NewChaCha8(seed).Read(root)
	size := int64(len(root))
	if _, err := update.WriteRelease(dir, update.Manifest{Board: "amd64", Channel: "stable", Version: "2.0.0", ChunkSize: 32 << 10},
		[]update.Input{{Name: update.RootArtifact, Data: root}}); err != nil {
		t.Fatal(err)
	}
	if _, err := update.SignDir(dir, update.EncodePrivateKey(key)); err != nil {
		t.Fatal(err)
	}

	net := updatetest.New(t.TempDir())
	defer net.Close()
	for range boxes {
		if _, err := net.Add(update.Config{Trust: trust, Running: "1.0.0"}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if err := net.Inject(net.Nodes()[0], dir); err != nil {
		t.Fatalf("inject: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	if err := net.WaitComplete(ctx, "2.0.0"); err != nil {
		t.Fatal(err)
	}
	up, down := net.Traffic()
	maxUp := slices.Max(up)
	var total int64
	for _, d := range down {
		total += d
	}
	ratio := float64(maxUp) / float64(size)
	t.Logf("%d boxes in %v; busiest upload %.2fx the release, injection point %.2fx; %d bytes moved (%.2fx the minimum)",
		boxes, time.Since(start).Round(time.Millisecond), ratio, float64(up[0])/float64(size), total, float64(total)/float64(size*(boxes-1)))
	if total != size*(boxes-1) {
		t.Errorf("boxes downloaded %d bytes, want exactly %d (each chunk once per box)", total, size*(boxes-1))
	}
	if ratio > 5 {
		t.Errorf("busiest box uploaded %.2fx the release, want at most 5x", ratio)
	}
}
