package meshtest

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/boards"
	"github.com/cloudbox/cloudbox/image"
	"github.com/cloudbox/cloudbox/image/vm"
	"github.com/cloudbox/cloudbox/internal/netnstest"
	"github.com/cloudbox/cloudbox/internal/testenv"
	"github.com/cloudbox/cloudbox/services/update"
)

// vmUpdateInfo is the part of GET /api/v1/update the VM test reads.
type vmUpdateInfo struct {
	Running string `json:"running"`
	Slot    int    `json:"slot"`
	Install *struct {
		Version string `json:"version"`
		Phase   string `json:"phase"`
		Reason  string `json:"reason"`
	} `json:"install"`
	Agent *struct {
		Releases []struct {
			Version  string `json:"version"`
			Complete bool   `json:"complete"`
		} `json:"releases"`
		Downloaded int64 `json:"downloaded_bytes"`
		Uploaded   int64 `json:"uploaded_bytes"`
	} `json:"agent"`
}

// TestVMUpdateFromPeer: a real amd64 image v1 boots under qemu (TCG) in
// its own namespace; releases pushed into it with an untrusted signature,
// with one signature of the two the community requires, or with a
// corrupted chunk are refused with the reason and it keeps running v1.
// It joins a community whose founder h is a host-mode cloudboxd; v2,
// pushed into h only, reaches the VM over the overlay (the VM fetches its
// chunks from h), is installed in slot B, booted on trial and committed:
// /api/v1/status reports 2.0.0.
//
//	      sw: br0 192.0.2.0/24
//	  ┌───────────┴───────────┐
//	h .1 (push v2)          vm .2: qemu, user network 203.0.113.0/24
func TestVMUpdateFromPeer(t *testing.T) {
	requireTools(t)
	testenv.RequireCommand(t, "qemu-system-x86_64", "qemu-system-x86")
	bin, sw := prepare(t)
	key := func(s string) ed25519.PrivateKey {
		seed := sha256.Sum256([]byte(s))
		return ed25519.NewKeyFromSeed(seed[:])
	}
	k1, k2, stranger := key("vm release key 1"), key("vm release key 2"), key("not a release key")
	trust := update.Trust{Keys: []ed25519.PublicKey{k1.Public().(ed25519.PublicKey), k2.Public().(ed25519.PublicKey)}, Threshold: 2}
	dir := t.TempDir()
	trustFile, tokenFile := filepath.Join(dir, "trust.json"), filepath.Join(dir, "token")
	if err := os.WriteFile(trustFile, trust.Encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte(apiToken), 0o600); err != nil {
		t.Fatal(err)
	}

	// The image and the release, built while h starts.
	b, err := boards.Lookup("amd64")
	if err != nil {
		t.Fatal(err)
	}
	img, v2 := filepath.Join(dir, "box.img"), filepath.Join(dir, "release-2.0.0")
	var buildErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		ctx, src := context.Background(), testenv.ModuleRoot(t)
		if _, err := image.Build(ctx, image.Config{Board: b, Out: img, Size: 1400 << 20, Hostname: "cbvm", Version: "1.0.0",
			SourceDir: src, ReleaseTrust: trustFile, AdminTokenFile: tokenFile}); err != nil {
			buildErr = fmt.Errorf("building the v1 image: %w", err)
			return
		}
		if _, err := image.BuildRelease(ctx, image.ReleaseConfig{Board: b, Version: "2.0.0", Out: v2, SourceDir: src,
			ReleaseTrust: trustFile, AdminTokenFile: tokenFile}); err != nil {
			buildErr = fmt.Errorf("building release 2.0.0: %w", err)
		}
	})

	h := newBox(t, bin, sw, "h", 1)
	if err := os.MkdirAll(filepath.Join(h.dir, "update"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.dir, "update", "trust.json"), trust.Encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	cli(t, bin, "community", "init", "--state-dir", h.dir, "--name", "vmnet", "--range", "198.18.0.0/15")
	// h mirrors amd64 releases (it cannot install them: it is no image).
	h.start(t, "--board", "amd64")
	token := cli(t, bin, "invite", "--state-dir", h.dir, "--name", "vmbox", "--bootstrap", "192.0.2.1:51820")
	wg.Wait()
	if buildErr != nil {
		t.Fatal(buildErr)
	}

	// The VM's namespace; its API is forwarded to apiAddr there, so the
	// box helpers reach it.
	vmb := newBoxIn(t, bin, netnstest.New(t, "vm"), "vm", netip.MustParseAddr("192.0.2.2"))
	netnstest.Attach(t, sw, "br0", vmb.ns, "eth0", "192.0.2.2/24")
	console := new(netnstest.Buffer)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- vm.Run(ctx, vm.Config{Image: img, HTTPPort: 8080, Network: "203.0.113.0/24", NetNS: vmb.ns.Name,
			Console: console, Memory: 1024})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("vm.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the VM did not stop within 30 s")
		}
		if t.Failed() {
			out := console.String()
			t.Logf("VM console (last 8 KiB):\n%s", out[max(len(out)-8<<10, 0):])
		}
	})
	start := time.Now()
	view := func() (vmUpdateInfo, error) {
		var v vmUpdateInfo
		code, err := vmb.get("/api/v1/update", &v)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("GET /api/v1/update = %d", code)
		}
		return v, err
	}
	wait := func(what string, within time.Duration, ok func(vmUpdateInfo) string) {
		t.Helper()
		netnstest.WaitFor(t, within, func() string {
			select {
			case err := <-done:
				t.Fatalf("the VM stopped while waiting for %s: %v", what, err)
			default:
			}
			v, err := view()
			if err != nil {
				return fmt.Sprintf("%s: %v", what, err)
			}
			if why := ok(v); why != "" {
				return fmt.Sprintf("%s: %s", what, why)
			}
			return ""
		})
	}
	runs := func(version string) func(vmUpdateInfo) string {
		return func(v vmUpdateInfo) string {
			if v.Running != version {
				return fmt.Sprintf("runs %q", v.Running)
			}
			return ""
		}
	}
	wait("v1 answering", 4*time.Minute, runs("1.0.0"))
	t.Logf("v1 answers %v after the start", time.Since(start).Round(time.Second))

	// Bad releases pushed straight into the VM are refused with a reason.
	for _, c := range []struct {
		name string
		dir  string
		code int
		want string
	}{
		{"untrusted key", resigned(t, v2, stranger), http.StatusForbidden, "0 valid signatures of trusted keys, 2 required"},
		{"one of two signatures", resigned(t, v2, k1), http.StatusForbidden, "1 valid signatures of trusted keys, 2 required"},
		{"corrupted chunk", corrupted(t, resigned(t, v2, k1, k2)), http.StatusBadRequest, "chunk"},
	} {
		code, body := vmb.pushRelease(t, c.dir)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s, want %d mentioning %q", c.name, code, body, c.code, c.want)
		}
	}
	v, err := view()
	if err != nil || v.Running != "1.0.0" || v.Install != nil {
		t.Fatalf("after the refused releases the VM runs %q with install %+v (%v); want 1.0.0 and no install", v.Running, v.Install, err)
	}
	if err := sign(v2, k1, k2); err != nil {
		t.Fatal(err)
	}

	if code, body := vmb.postJoin(t, token); code != http.StatusAccepted {
		t.Fatalf("POST /api/v1/overlay/join on the VM: %d %s", code, body)
	}
	hName := h.self(t).Name
	netnstest.WaitFor(t, 2*time.Minute, func() string {
		for _, b := range []*box{h, vmb} {
			p, err := b.peerNamed(map[*box]string{h: "vmbox", vmb: hName}[b])
			if err != nil {
				return err.Error()
			}
			if p.LastHandshake == nil {
				return fmt.Sprintf("%s has no handshake with %s", b.name, p.Name)
			}
		}
		return ""
	})
	t.Logf("the VM joined h's community %v after the start", time.Since(start).Round(time.Second))

	if code, body := h.pushRelease(t, v2); code != http.StatusOK {
		t.Fatalf("pushing 2.0.0 into h: %d %s", code, body)
	}
	wait("v2 committed", 8*time.Minute, func(v vmUpdateInfo) string {
		if v.Running != "2.0.0" || v.Install == nil || v.Install.Phase != "committed" {
			return fmt.Sprintf("runs %q, install %+v", v.Running, v.Install)
		}
		return ""
	})
	t.Logf("v2 committed %v after the start", time.Since(start).Round(time.Second))
	if v, _ = view(); v.Slot != 3 {
		t.Errorf("the VM runs v2 from slot %d, want 3", v.Slot)
	}
	// The VM's counters started again with v2; h's tell what it served.
	// (The VM had what the refused corrupted release brought and the
	// chunks its running root shares with v2.)
	var hv vmUpdateInfo
	if _, err := h.get("/api/v1/update", &hv); err != nil || hv.Agent == nil || hv.Agent.Uploaded == 0 {
		t.Errorf("h's agent %+v (%v): want h to have served the VM chunks of v2 over the overlay", hv.Agent, err)
	} else {
		t.Logf("h served %d bytes of v2 to the VM over the overlay", hv.Agent.Uploaded)
	}
	var st struct {
		Version string `json:"version"`
	}
	if code, err := vmb.get("/api/v1/status", &st); err != nil || code != http.StatusOK || st.Version != "2.0.0" {
		t.Errorf("/api/v1/status on the VM: %d %+v %v, want version 2.0.0", code, st, err)
	}
}

// resigned returns a copy of release dir (its manifest; the chunks are
// shared through a symbolic link) signed by keys only.
func resigned(t *testing.T, dir string, keys ...ed25519.PrivateKey) string {
	t.Helper()
	out := t.TempDir()
	m, err := os.ReadFile(filepath.Join(dir, update.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, update.ManifestFile), m, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, update.ChunksDir), filepath.Join(out, update.ChunksDir)); err != nil {
		t.Fatal(err)
	}
	if err := sign(out, keys...); err != nil {
		t.Fatal(err)
	}
	return out
}

// sign adds the signatures of keys to the release in dir.
func sign(dir string, keys ...ed25519.PrivateKey) error {
	for _, k := range keys {
		if _, err := update.SignDir(dir, update.EncodePrivateKey(k)); err != nil {
			return err
		}
	}
	return nil
}

// corrupted replaces the chunk link of release dir by a copy of the
// chunks in which one byte of the first chunk sent differs, and returns
// dir.
func corrupted(t *testing.T, dir string) string {
	t.Helper()
	link := filepath.Join(dir, update.ChunksDir)
	src, err := os.Readlink(link)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(link, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, update.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := update.ParseManifest(raw)
	if err != nil || len(m.Artifacts) == 0 || len(m.Artifacts[0].Chunks) == 0 {
		t.Fatalf("release manifest: %v", err)
	}
	p := filepath.Join(link, m.Artifacts[0].Chunks[0])
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x40
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
