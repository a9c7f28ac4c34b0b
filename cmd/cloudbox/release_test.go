package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/appliance"
	"github.com/cloudbox/cloudbox/services/update"
)

// TestReleaseCommands runs the release workflow with the binary: two keys,
// a 2-of-2 trust file, signing, verification below and at the threshold,
// packing, and a push into a host-mode daemon that trusts the keys.
func TestReleaseCommands(t *testing.T) {
	dir := t.TempDir()
	run := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(nil, args...)
		if err != nil {
			t.Fatalf("cloudbox %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	k1, k2 := filepath.Join(dir, "k1"), filepath.Join(dir, "k2")
	pub1, pub2 := strings.TrimSpace(must("release", "keygen", "--out", k1)), strings.TrimSpace(must("release", "keygen", "--out", k2))
	if out, err := run(nil, "release", "keygen", "--out", k1); err == nil || !strings.Contains(out, "not overwriting") {
		t.Errorf("keygen over an existing key: %v %s", err, out)
	}
	if st, err := os.Stat(k1); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", st.Mode(), err)
	}
	trust := filepath.Join(dir, "trust.json")
	must("release", "trust", "--out", trust, "--threshold", "2", pub1, pub2)

	rel := filepath.Join(dir, "rel")
	if _, err := update.WriteRelease(rel, update.Manifest{Board: "amd64", Channel: update.DefaultChannel, Version: "2.0.0"},
		[]update.Input{{Name: update.RootArtifact, Data: []byte(strings.Repeat("root", 1000))}}); err != nil {
		t.Fatal(err)
	}
	must("release", "sign", "--key", k1, rel)
	if out, err := run(nil, "release", "verify", "--trust", trust, rel); err == nil || !strings.Contains(out, "1 valid signatures of trusted keys, 2 required") {
		t.Errorf("verify with one of two signatures: %v %s", err, out)
	}
	if out := must("release", "sign", "--key", k2, rel); !strings.Contains(out, "2 signatures") {
		t.Errorf("second signature: %s", out)
	}
	if out := must("release", "verify", "--trust", trust, rel); !strings.Contains(out, "signatures and every chunk good") {
		t.Errorf("verify: %s", out)
	}
	tarball := filepath.Join(dir, "rel.tar")
	must("update", "pack", "--out", tarball, rel)
	if data, err := os.ReadFile(tarball); err != nil || !strings.HasPrefix(string(data), update.ManifestFile) {
		t.Errorf("packed release: %v %.20q", err, data)
	}

	// A daemon that trusts the keys takes the push.
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(filepath.Join(state, appliance.UpdateDir), 0o755); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(trust)
	os.WriteFile(filepath.Join(state, appliance.UpdateDir, "trust.json"), data, 0o644)
	const token = "release-test-token-0123456789abcdefghij"
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte(token), 0o600)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- appliance.Run(ctx, appliance.Config{StateDir: state, Listener: ln, Version: "1.0.0", Board: "amd64",
			AdminTokenFile: tokenFile, DNS: appliance.DNSConfig{Disabled: true}, MDNS: appliance.MDNSConfig{Disabled: true}})
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("daemon: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("daemon did not stop")
		}
	}()
	url := "http://" + ln.Addr().String()
	if out, err := run(nil, "update", "push", "--to", url, rel); err == nil || !strings.Contains(out, "HTTP 401") {
		t.Errorf("push without a token: %v %s", err, out)
	}
	out, err := run([]string{"CLOUDBOX_TOKEN=" + token}, "update", "push", "--to", url, rel)
	if err != nil || !strings.Contains(out, "release 2.0.0 is on the box (complete: true)") {
		t.Errorf("push: %v %s", err, out)
	}
}
