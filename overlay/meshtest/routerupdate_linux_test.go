package meshtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cloudbox/cloudbox/internal/netnstest"
	"github.com/cloudbox/cloudbox/internal/testenv"
	"github.com/cloudbox/cloudbox/services/update"
)

// routerBoard is the board the test's router daemons report (--board):
// their releases are for it.
const routerBoard = "openwrt-test"

// routerUpdateInfo is the part of GET /api/v1/update the router test reads.
type routerUpdateInfo struct {
	Running string `json:"running"`
	Problem string `json:"problem"`
	Install *struct {
		Version, From, Phase, Reason string
	} `json:"install"`
}

// buildRouterDaemons compiles the router profile of cloudboxd for this
// machine once per version (with the race detector when the test has it)
// and returns the binaries by version.
func buildRouterDaemons(t *testing.T, versions ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	out := map[string]string{}
	errs := make([]error, len(versions))
	var wg sync.WaitGroup
	for i, v := range versions {
		p := filepath.Join(dir, "cloudboxd-"+v)
		out[v] = p
		wg.Go(func() {
			args := []string{"build", "-tags", "router,nethttpomithttp2", "-o", p,
				"-ldflags", "-X github.com/cloudbox/cloudbox/internal/buildinfo.Version=" + v}
			if raceEnabled {
				args = append(args, "-race")
			}
			cmd := exec.Command("go", append(args, "./cmd/cloudboxd")...)
			cmd.Dir = testenv.ModuleRoot(t)
			if b, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("building the router cloudboxd %s: %v\n%s", v, err, b)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestRouterUpdate: two routers (the router profile of cloudboxd, each
// started from its own service binary, as procd does) update themselves.
// A release pushed into r1 is fetched by r2 over the overlay; each writes
// it next to its binary, execs it on trial (the same process), finds it
// healthy and commits: the new binary replaces the service's, the old one
// is kept as .prev. A second release whose binary exits at once is rolled
// back: the process ends, the test restarts the service's binary as procd
// would, and that records the rollback and keeps running the good version.
//
//	   sw: br0 192.0.2.0/24
//	    ┌──────┴──────┐
//	 r1 .1          r2 .2
//	(push)
func TestRouterUpdate(t *testing.T) {
	bin, sw := prepare(t)
	daemons := buildRouterDaemons(t, "1.0.0", "2.0.0")
	seed := sha256.Sum256([]byte("meshtest router release key"))
	key := ed25519.NewKeyFromSeed(seed[:])
	trust := update.Trust{Keys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, Threshold: 1}

	routers := []*box{newBox(t, bin, sw, "r1", 1), newBox(t, bin, sw, "r2", 2)}
	v1, err := os.ReadFile(daemons["1.0.0"])
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routers {
		// The service's binary, as the package installs it.
		r.bin.daemon = filepath.Join(t.TempDir(), "sbin", "cloudboxd")
		if err := os.MkdirAll(filepath.Dir(r.bin.daemon), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(r.bin.daemon, v1, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(r.dir, "update"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(r.dir, "update", "trust.json"), trust.Encode(), 0o644); err != nil {
			t.Fatal(err)
		}
		r.args = []string{"--board", routerBoard, "--mdns", "off"}
	}
	community(t, bin, routers, "192.0.2.1:51820")

	release := func(version string, payload []byte) string {
		dir := t.TempDir()
		if _, err := update.WriteRelease(dir, update.Manifest{Board: routerBoard, Channel: update.DefaultChannel, Version: version, ChunkSize: 256 << 10},
			[]update.Input{{Name: update.DaemonArtifact, Data: payload}}); err != nil {
			t.Fatal(err)
		}
		if _, err := update.SignDir(dir, update.EncodePrivateKey(key)); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	// waitInstall waits until r runs running and its last install is
	// version in phase.
	waitInstall := func(r *box, running, version, phase string) {
		t.Helper()
		netnstest.WaitFor(t, 120*time.Second, func() string {
			var v routerUpdateInfo
			if code, err := r.get("/api/v1/update", &v); err != nil || code != http.StatusOK {
				return fmt.Sprintf("GET /api/v1/update on %s: %d %v", r.name, code, err)
			}
			if v.Running != running || v.Install == nil || v.Install.Version != version || v.Install.Phase != phase {
				return fmt.Sprintf("%s runs %s, install %+v, problem %q; want %s, %s %s", r.name, v.Running, v.Install, v.Problem, running, version, phase)
			}
			return ""
		})
	}
	sameFile := func(p string, want []byte) bool {
		got, err := os.ReadFile(p)
		return err == nil && bytes.Equal(got, want)
	}

	v2, err := os.ReadFile(daemons["2.0.0"])
	if err != nil {
		t.Fatal(err)
	}
	pids := map[*box]int{}
	for _, r := range routers {
		pids[r] = r.d.cmd.Process.Pid
	}
	start := time.Now()
	if code, body := routers[0].pushRelease(t, release("2.0.0", v2)); code != http.StatusOK {
		t.Fatalf("pushing the release to r1: %d %s", code, body)
	}
	for _, r := range routers {
		waitInstall(r, "2.0.0", "2.0.0", "committed")
		if !sameFile(r.bin.daemon, v2) || !sameFile(r.bin.daemon+".prev", v1) {
			t.Errorf("%s: the service's binary is not 2.0.0, or .prev not 1.0.0", r.name)
		}
		if _, err := os.Stat(r.bin.daemon + ".new"); err == nil {
			t.Errorf("%s: cloudboxd.new left after the commit", r.name)
		}
		select {
		case <-r.d.exited:
			t.Fatalf("%s's process ended during the update: %v", r.name, r.d.err)
		default:
		}
		if pid := r.d.cmd.Process.Pid; pid != pids[r] {
			t.Errorf("%s runs as pid %d, want %d (the same process for procd)", r.name, pid, pids[r])
		}
	}
	t.Logf("routers updated to 2.0.0 %v after the push", time.Since(start).Round(10*time.Millisecond))

	// A release whose cloudboxd exits at once: a real binary, /bin/false.
	falseBin, err := exec.LookPath("false")
	if err != nil {
		t.Fatal(err)
	}
	bad, err := os.ReadFile(falseBin)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := routers[0].pushRelease(t, release("3.0.0", bad)); code != http.StatusOK {
		t.Fatalf("pushing the bad release to r1: %d %s", code, body)
	}
	for _, r := range routers {
		if code := r.d.waitExit(t, 120*time.Second); code == 0 {
			t.Errorf("%s's trial of the bad release exited 0", r.name)
		}
		// procd: the service's binary again, with the same arguments.
		r.start(t, append(r.args, "--join", r.token)...)
		waitInstall(r, "2.0.0", "3.0.0", "rolled-back")
		if !sameFile(r.bin.daemon, v2) {
			t.Errorf("%s: the service's binary is no longer 2.0.0 after the rollback", r.name)
		}
		if _, err := os.Stat(r.bin.daemon + ".new"); err == nil {
			t.Errorf("%s: the bad release's cloudboxd.new left after the rollback", r.name)
		}
	}
}
