package openwrt

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/boards"
	"github.com/cloudbox/cloudbox/services/update"
)

// TestBuildRelease: a router's release carries the package's cloudboxd as
// its only artifact, in chunks, and verifies once signed; what the chunks
// rebuild is the binary, byte for byte.
func TestBuildRelease(t *testing.T) {
	b, err := boards.Lookup("openwrt-mipsle")
	if err != nil {
		t.Fatal(err)
	}
	bin := daemon(t, b)
	want, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "rel")
	cfg := Config{Board: b, Version: "1.4.2", SourceDateEpoch: 1700000000, Binary: bin}
	m, err := BuildRelease(t.Context(), cfg, update.Manifest{Channel: "testing", SpreadSeconds: 3600}, out)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Artifacts) != 1 || m.Artifacts[0].Name != update.DaemonArtifact || m.Artifacts[0].Size != int64(len(want)) {
		t.Fatalf("artifacts %+v, want cloudboxd alone, %d bytes", m.Artifacts, len(want))
	}
	if m.Board != "openwrt-mipsle" || m.Version != "1.4.2" || m.Channel != "testing" || m.SpreadSeconds != 3600 ||
		!m.Date.Equal(time.Unix(1700000000, 0)) || m.ChunkSize != update.DefaultChunkSize {
		t.Errorf("manifest %+v", m)
	}
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	if _, err := update.SignDir(out, update.EncodePrivateKey(key)); err != nil {
		t.Fatal(err)
	}
	manifest, sigs, err := update.ReadReleaseDir(out)
	if err != nil {
		t.Fatal(err)
	}
	trust := update.Trust{Keys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, Threshold: 1}
	vm, err := update.Verify(trust, manifest, sigs)
	if err != nil {
		t.Fatalf("signed router release does not verify: %v", err)
	}
	st, err := update.OpenStore(out)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := st.WriteArtifact(vm, vm.Artifacts[0], &got); err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got.Bytes()) != sha256.Sum256(want) {
		t.Error("the release's chunks do not rebuild the package's cloudboxd")
	}

	for _, tc := range []struct {
		name, want string
		cfg        Config
		out        string
	}{
		{"dev version", "invalid release version", Config{Board: b, Version: "dev", Binary: bin}, t.TempDir()},
		{"not empty", "not empty", cfg, out},
		{"not a router", "not a router", Config{Board: boards.Board{Name: "amd64", GOARCH: "amd64"}, Version: "1.0.0", Binary: bin}, t.TempDir()},
		{"no out", "--out", cfg, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := BuildRelease(t.Context(), tc.cfg, update.Manifest{}, tc.out); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("BuildRelease: %v, want an error with %q", err, tc.want)
			}
		})
	}
}
