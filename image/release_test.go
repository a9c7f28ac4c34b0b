package image

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudbox/cloudbox/boards"
	"github.com/cloudbox/cloudbox/internal/testenv"
	"github.com/cloudbox/cloudbox/services/update"
)

// TestBuildRelease builds an amd64 release and checks that its root
// artifact, put together from the chunks, is the squashfs of that version
// and that the boot files are there without the box-specific ones.
func TestBuildRelease(t *testing.T) {
	unsquashfs := testenv.RequireCommand(t, "unsquashfs", "squashfs-tools")
	b, err := boards.Lookup("amd64")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "rel")
	trust := filepath.Join(t.TempDir(), "trust.json")
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	trustData := update.Trust{Keys: []ed25519.PublicKey{pub}, Threshold: 1}.Encode()
	if err := os.WriteFile(trust, trustData, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := BuildRelease(t.Context(), ReleaseConfig{Board: b, Version: "1.2.3", Out: dir, Channel: "testing",
		SourceDateEpoch: 1700000000, SourceDir: testenv.ModuleRoot(t), ReleaseTrust: trust})
	if err != nil {
		t.Fatalf("BuildRelease: %v", err)
	}
	manifest, _, err := update.ReadReleaseDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := update.ParseManifest(manifest)
	if err != nil {
		t.Fatalf("written manifest does not parse: %v", err)
	}
	if parsed.Board != "amd64" || parsed.Version != "1.2.3" || parsed.Channel != "testing" || parsed.Date.Unix() != 1700000000 {
		t.Errorf("manifest: %+v", parsed)
	}
	names := map[string]update.Artifact{}
	for _, a := range m.Artifacts {
		names[a.Name] = a
	}
	for _, want := range []string{"root", "boot/vmlinuz", "boot/EFI/BOOT/BOOTX64.EFI"} {
		if _, ok := names[want]; !ok {
			t.Errorf("no artifact %s", want)
		}
	}
	for _, not := range []string{"boot/cmdline.txt", "boot/loader/entries/gokrazy.conf", "boot/a/vmlinuz", "boot/a/cmdline.txt"} {
		if _, ok := names[not]; ok {
			t.Errorf("box-specific artifact %s in the release", not)
		}
	}

	st, err := update.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	var root bytes.Buffer
	if err := st.WriteArtifact(m, names["root"], &root); err != nil {
		t.Fatalf("assembling root: %v", err)
	}
	img := filepath.Join(t.TempDir(), "root.squashfs")
	if err := os.WriteFile(img, root.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(unsquashfs, "-cat", img, "etc/cloudbox-release").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "VERSION=1.2.3\n") {
		t.Errorf("etc/cloudbox-release: %v: %s", err, out)
	}
	out, err = exec.Command(unsquashfs, "-cat", img, ReleaseTrustPath).CombinedOutput()
	if err != nil || !bytes.Equal(out, trustData) {
		t.Errorf("%s in the release: %v: %s", ReleaseTrustPath, err, out)
	}
	out, err = exec.Command(unsquashfs, "-l", img).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "user/cloudboxd") {
		t.Errorf("unsquashfs -l: %v: %.500s", err, out)
	}

	// A second build into the same directory is refused.
	if _, err := BuildRelease(t.Context(), ReleaseConfig{Board: b, Version: "1.2.4", Out: dir}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("build into a used directory: %v", err)
	}
}
