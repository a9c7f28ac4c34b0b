package appliance

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudbox/cloudbox/services/update"
)

// fakeRouter is a router on files: the service's cloudboxd (a file whose
// content names its version), the state directory, and an emulated procd
// that starts that file whenever the process ends.
type fakeRouter struct {
	t   *testing.T
	dir string
	bin string
	// self is the file the emulated process runs; execd the last binary
	// the installer asked to exec ("" for none).
	self, execd string
}

// routerBinaryFor is the content of cloudboxd version v: big enough for
// a few chunks.
func routerBinaryFor(v string) string {
	return "cloudboxd " + v + "\n" + strings.Repeat("code of "+v+" ", 1500)
}

func newFakeRouter(t *testing.T) *fakeRouter {
	t.Helper()
	dir := t.TempDir()
	r := &fakeRouter{t: t, dir: dir, bin: filepath.Join(dir, "sbin", "cloudboxd")}
	for _, d := range []string{"sbin", "state/update"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(r.bin, []byte(routerBinaryFor("1.0.0")), 0o755); err != nil {
		t.Fatal(err)
	}
	r.self = r.bin
	return r
}

// versionOf returns the version of the binary at p, "" when it is not a
// whole cloudboxd.
func (r *fakeRouter) versionOf(p string) string {
	data, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	for _, v := range []string{"1.0.0", "2.0.0"} {
		if string(data) == routerBinaryFor(v) {
			return v
		}
	}
	return ""
}

// running is the version the emulated process runs.
func (r *fakeRouter) running() string { return r.versionOf(r.self) }

// release writes a router release of version v with content into a store.
func (r *fakeRouter) release(v, content string) (*update.Manifest, *update.Store) {
	r.t.Helper()
	return writeTestRelease(r.t, filepath.Join(r.dir, "release-"+v), "openwrt-mipsle", v, []update.Input{{Name: update.DaemonArtifact, Data: []byte(content)}})
}

// installer returns the installer of the process running now.
func (r *fakeRouter) installer(healthy error) *binaryInstaller {
	r.execd = ""
	return &binaryInstaller{
		installState: installState{stateFile: filepath.Join(r.dir, "state/update", installFile), now: time.Now, log: slog.New(slog.DiscardHandler)},
		bin:          r.bin, self: r.self, running: r.running(), trial: 30 * time.Second,
		healthy: func(context.Context) error { return healthy },
		exec:    func(p string) { r.execd = p },
	}
}

// afterExec emulates the exec the installer asked for: the process runs
// that binary, unless it exits at once (not a whole cloudboxd), and then
// procd starts the service's binary.
func (r *fakeRouter) afterExec() {
	r.t.Helper()
	if r.execd == "" {
		r.t.Fatal("the installer asked for no exec")
	}
	r.self = r.execd
	if r.running() == "" {
		r.self = r.bin
	}
}

// powerCut emulates a power cut and boot: procd starts the service's
// binary, which must be a whole cloudboxd.
func (r *fakeRouter) powerCut() {
	r.t.Helper()
	r.self = r.bin
	if r.running() == "" {
		r.t.Fatalf("after a power cut %s is not a whole cloudboxd", r.bin)
	}
}

func (r *fakeRouter) status(in *binaryInstaller) InstallStatus {
	r.t.Helper()
	st := in.Status()
	if st == nil {
		r.t.Fatal("no install state")
	}
	return *st
}

func (r *fakeRouter) exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func TestRouterInstallCommits(t *testing.T) {
	r := newFakeRouter(t)
	m, s := r.release("2.0.0", routerBinaryFor("2.0.0"))
	in := r.installer(nil)
	if err := in.Apply(t.Context(), m, s); err != nil {
		t.Fatal(err)
	}
	if st := r.status(in); st.Phase != phaseTrying || r.execd != r.bin+newSuffix || r.versionOf(r.bin) != "1.0.0" {
		t.Fatalf("after Apply: %+v, exec %q, service binary %q; want trying, exec of .new, 1.0.0 kept", st, r.execd, r.versionOf(r.bin))
	}
	r.afterExec()
	in = r.installer(nil)
	if err := in.Resume(t.Context()); err != nil {
		t.Fatal(err)
	}
	if in.self != r.bin {
		t.Errorf("after the commit the process runs %s, want %s", in.self, r.bin)
	}
	st := r.status(in)
	if st.Phase != phaseCommitted || st.From != "1.0.0" || st.Version != "2.0.0" {
		t.Errorf("after the trial: %+v, want 1.0.0 -> 2.0.0 committed", st)
	}
	if got, prev := r.versionOf(r.bin), r.versionOf(r.bin+prevSuffix); got != "2.0.0" || prev != "1.0.0" || r.exists(r.bin+newSuffix) {
		t.Errorf("service binary %q, .prev %q, .new left: %v; want 2.0.0, 1.0.0, none", got, prev, r.exists(r.bin+newSuffix))
	}
	if r.execd != "" {
		t.Errorf("a healthy trial execs %s", r.execd)
	}
	// Restarted by procd: the new version runs from the service's file.
	r.powerCut()
	in = r.installer(nil)
	if err := in.Resume(t.Context()); err != nil || r.status(in).Phase != phaseCommitted || r.running() != "2.0.0" {
		t.Errorf("after a restart: %v, %+v, running %s", err, r.status(in), r.running())
	}
}

func TestRouterInstallRollsBackUnhealthy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRouter(t)
		m, s := r.release("2.0.0", routerBinaryFor("2.0.0"))
		if err := r.installer(nil).Apply(t.Context(), m, s); err != nil {
			t.Fatal(err)
		}
		r.afterExec()
		in := r.installer(errors.New("no peer answers over the overlay yet"))
		start := time.Now()
		if err := in.Resume(t.Context()); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited < 20*time.Second || waited > 21*time.Second {
			t.Errorf("gave up after %v, want two thirds of the 30 s trial", waited)
		}
		st := r.status(in)
		if st.Phase != phaseRolledBack || !strings.Contains(st.Reason, "no peer answers") {
			t.Errorf("after an unhealthy trial: %+v, want rolled-back with the reason", st)
		}
		if r.execd != r.bin {
			t.Fatalf("unhealthy trial execs %q, want the service's binary", r.execd)
		}
		r.afterExec()
		if r.running() != "1.0.0" || r.exists(r.bin+newSuffix) || r.exists(r.bin+prevSuffix) {
			t.Errorf("after the rollback: running %s, .new left %v, .prev %v", r.running(), r.exists(r.bin+newSuffix), r.exists(r.bin+prevSuffix))
		}
		in = r.installer(nil)
		if err := in.Resume(t.Context()); err != nil || r.status(in).Phase != phaseRolledBack {
			t.Errorf("Resume on the old version: %v, %+v", err, r.status(in))
		}
		if err := in.Apply(t.Context(), m, s); err == nil || !strings.Contains(err.Error(), "rolled back") {
			t.Errorf("installing the rolled-back release again: %v, want a refusal", err)
		}
	})
}

// TestRouterInstallRollsBackBinaryThatExits: a release whose cloudboxd
// exits at once never runs Resume; procd starts the old one, which records
// the rollback.
func TestRouterInstallRollsBackBinaryThatExits(t *testing.T) {
	r := newFakeRouter(t)
	m, s := r.release("2.0.0", "#!/bin/sh\nexit 1\n")
	if err := r.installer(nil).Apply(t.Context(), m, s); err != nil {
		t.Fatal(err)
	}
	r.afterExec()
	if r.running() != "1.0.0" {
		t.Fatalf("procd started %s", r.running())
	}
	in := r.installer(nil)
	if err := in.Resume(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := r.status(in); st.Phase != phaseRolledBack || !strings.Contains(st.Reason, "previous version 1.0.0") {
		t.Errorf("after the release exited: %+v, want rolled-back to 1.0.0", st)
	}
	if r.exists(r.bin+newSuffix) || r.versionOf(r.bin) != "1.0.0" {
		t.Errorf(".new left: %v; service binary %q", r.exists(r.bin+newSuffix), r.versionOf(r.bin))
	}
}

func TestRouterInstallRefusesBoxRelease(t *testing.T) {
	r := newFakeRouter(t)
	m, s := writeTestRelease(t, filepath.Join(r.dir, "box-release"), "openwrt-mipsle", "2.0.0", []update.Input{{Name: update.RootArtifact, Data: []byte("squashfs")}})
	in := r.installer(nil)
	if err := in.Apply(t.Context(), m, s); err == nil || !strings.Contains(err.Error(), "not a router's release") {
		t.Errorf("Apply of a box's release: %v", err)
	}
	if r.execd != "" || r.exists(r.bin+newSuffix) {
		t.Errorf("a refused release was installed (exec %q)", r.execd)
	}
}

// TestRouterInstallPowerCuts cuts the power before every step of an install
// and of its trial: the service's binary is always a whole cloudboxd, and
// the router ends on the new version committed, or on the old one with
// the rollback recorded.
func TestRouterInstallPowerCuts(t *testing.T) {
	for _, tc := range []struct {
		step string
		want string // version running at the end
	}{
		{"binary", "2.0.0"}, {"verify", "2.0.0"}, {"written", "2.0.0"}, {"trying", "2.0.0"},
		{"exec", "1.0.0"}, {"prev", "1.0.0"}, {"swap", "1.0.0"}, {"committed", "2.0.0"},
	} {
		t.Run(tc.step, func(t *testing.T) {
			r := newFakeRouter(t)
			m, s := r.release("2.0.0", routerBinaryFor("2.0.0"))
			cutting := true
			cut := func(name string) error {
				if cutting && name == tc.step {
					cutting = false
					return errPowerCut
				}
				return nil
			}
			// The agent applies the release (again after a cut), the
			// process execs, its trial runs, until nothing is left to
			// do.
			for round := 0; round < 4; round++ {
				in := r.installer(nil)
				in.cut = cut
				err := in.Resume(t.Context())
				if errors.Is(err, errPowerCut) {
					r.powerCut()
					continue
				}
				if err != nil {
					t.Fatalf("Resume: %v", err)
				}
				r.self = in.self // a commit renames the running file
				if st := in.Status(); r.running() == "2.0.0" || st != nil && st.Phase == phaseRolledBack {
					break
				}
				if err := in.Apply(t.Context(), m, s); errors.Is(err, errPowerCut) {
					r.powerCut()
					continue
				} else if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				r.afterExec()
			}
			if cutting {
				t.Fatalf("the install never reached step %s", tc.step)
			}
			in := r.installer(nil)
			st := r.status(in)
			if r.running() != tc.want {
				t.Fatalf("after a cut before %s the router runs %s (%+v), want %s", tc.step, r.running(), st, tc.want)
			}
			wantPhase := map[string]string{"2.0.0": phaseCommitted, "1.0.0": phaseRolledBack}[tc.want]
			if st.Phase != wantPhase || r.self != r.bin {
				t.Errorf("install state %+v, running %s; want %s from the service's binary", st, r.self, wantPhase)
			}
			if r.exists(r.bin + newSuffix) {
				t.Errorf("%s%s left behind", r.bin, newSuffix)
			}
			if tc.want == "2.0.0" && r.versionOf(r.bin+prevSuffix) != "1.0.0" {
				t.Errorf(".prev is %q, want 1.0.0", r.versionOf(r.bin+prevSuffix))
			}
		})
	}
}
