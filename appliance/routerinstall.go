package appliance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
	"github.com/cloudbox/cloudbox/services/update"
)

// Installing a release on a router: the same phases as a box's A/B
// install (apply.go), with files for slots.
//
// A router's release is the cloudboxd binary of its package. The file
// procd starts (bin, /usr/sbin/cloudboxd) plays config.txt: it names the
// committed version until the very commit. Apply writes the release next
// to it as bin.new and reads it back, then the running cloudboxd stops
// and replaces itself (exec, same process for procd) with bin.new, on
// trial. Once healthy within the trial time, the new version commits: the
// old binary becomes bin.prev (a hard link), and bin.new is renamed over
// bin. A trial that is not healthy in time records why and execs bin
// again; one that exits or crashes (a binary that cannot even start) ends
// the process, and procd respawns bin, the old version, which records the
// rollback. A power cut at any moment leaves bin a complete binary of the
// committed version, or of the new one once it committed.

// Suffixes of the files next to a router's cloudboxd.
const (
	newSuffix  = ".new"  // the release being installed or on trial
	prevSuffix = ".prev" // the version before the last commit
)

// binaryInstaller installs router releases; its methods are those of
// releaseInstaller.
type binaryInstaller struct {
	installState
	// Immutable after openInstaller.
	// bin is the committed cloudboxd, the file the service starts.
	bin string
	// self is the file this process runs (os.Executable): bin, or
	// bin.new on trial.
	self    string
	running string // this build's version
	trial   time.Duration
	// healthy returns nil when the daemon is healthy.
	healthy func(ctx context.Context) error
	// exec stops the daemon and replaces the process with the binary at
	// path; it returns at once (the daemon shuts down after).
	exec func(path string)
	// watchdog, when set, starts a process that ends this one when its
	// trial of version has neither committed nor rolled back after the
	// trial time (startTrialWatchdog); nil in tests that fake exec.
	watchdog func(version string) error

	// mu serializes installs and trials, the writers of the state file.
	mu sync.Mutex
}

// routerBinary returns the committed binary of a running cloudboxd: the
// executable, without the suffix of a trial.
func routerBinary() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding the running cloudboxd: %w", err)
	}
	return strings.TrimSuffix(exe, newSuffix), nil
}

// slot is 0: routers have no root slots.
func (in *binaryInstaller) slot() int { return 0 }

// Apply writes release m from store s as bin.new and replaces the running
// daemon with it on trial; it is update.Config.Apply. It returns an error,
// and the daemon runs on, when anything fails before the exec.
func (in *binaryInstaller) Apply(ctx context.Context, m *update.Manifest, s *update.Store) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if _, err := in.check(m); err != nil {
		return err
	}
	if in.self != in.bin {
		return fmt.Errorf("cloudboxd runs %s, not the service's %s: restart the service first", in.self, in.bin)
	}
	art, ok := artifact(m, update.DaemonArtifact)
	if !ok {
		return fmt.Errorf("release %s has no %s: it is not a router's release", m.Version, update.DaemonArtifact)
	}
	st := InstallStatus{Version: m.Version, From: in.running, Phase: phaseWriting}
	if err := in.save(st); err != nil {
		return err
	}
	if err := in.writeBinary(ctx, m, s, art); err != nil {
		if !errors.Is(err, errPowerCut) {
			os.Remove(in.bin + newSuffix)
		}
		return in.fail(&st, err)
	}
	if err := in.enter(&st, phaseWritten); err != nil {
		return err
	}
	if err := in.enter(&st, phaseTrying); err != nil {
		return err
	}
	if err := in.step("exec"); err != nil {
		return err
	}
	if in.watchdog != nil {
		if err := in.watchdog(m.Version); err != nil {
			// Without it a trial that hangs is rolled back only when the
			// service restarts: not worth refusing the release for.
			in.log.Warn("no trial watchdog", "error", err)
		}
	}
	in.log.Info("restarting into the new release on trial", "version", m.Version, "binary", in.bin+newSuffix)
	in.exec(in.bin + newSuffix)
	return nil
}

// writeBinary writes the release's cloudboxd as bin.new, executable,
// synced, and reads it back.
func (in *binaryInstaller) writeBinary(ctx context.Context, m *update.Manifest, s *update.Store, art update.Artifact) error {
	if err := in.step("binary"); err != nil {
		return err
	}
	p := in.bin + newSuffix
	if err := writeFileFrom(p, func(w io.Writer) error { return s.WriteArtifact(m, art, w) }); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	if err := os.Chmod(p, 0o755); err != nil {
		return fmt.Errorf("making %s executable: %w", p, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := in.step("verify"); err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("reading back %s: %w", p, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("reading back %s: %w", p, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != art.SHA256 {
		return fmt.Errorf("%s reads back as %.12s, not the release's %.12s: the flash may be failing or full", p, got, art.SHA256)
	}
	return nil
}

// Resume finishes what the last start left: on trial it waits for health
// and commits (or rolls back), after a return to the old version it
// records the rollback. It returns when done or ctx ends.
func (in *binaryInstaller) Resume(ctx context.Context) error {
	in.mu.Lock()
	st, err := in.load()
	if err != nil {
		in.mu.Unlock()
		return err
	}
	switch {
	case st.Phase != phaseTrying:
		defer in.mu.Unlock()
		if st.Phase == phaseRolledBack || st.Phase == phaseFailed {
			return in.removeNew() // left by a cut
		}
		return nil
	case in.running != st.Version:
		// bin, the old version, runs: the trial ended without a commit.
		defer in.mu.Unlock()
		st.Phase = phaseRolledBack
		if st.Reason == "" {
			st.Reason = fmt.Sprintf("cloudboxd came back on its previous version %s: version %s exited, crashed or hung (then the trial watchdog stopped it) before it committed, or the power was cut", st.From, st.Version)
		}
		return errors.Join(in.removeNew(), in.save(st))
	case in.self == in.bin:
		// The new version runs from bin: committed, but the state was
		// not saved before a cut.
		defer in.mu.Unlock()
		st.Phase, st.Reason = phaseCommitted, ""
		return in.save(st)
	}
	in.mu.Unlock()

	herr, err := in.awaitTrial(ctx, st.Version, in.trial, in.healthy)
	if err != nil {
		return err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if herr != nil {
		st.Phase, st.Reason = phaseRolledBack, herr.Error()
		if err := errors.Join(in.save(st), in.removeNew()); err != nil {
			return err
		}
		in.log.Warn("trial failed: restarting the previous version", "version", st.Version, "reason", herr)
		in.exec(in.bin)
		return nil
	}
	if err := in.commit(); err != nil {
		return err
	}
	if err := in.step("committed"); err != nil {
		return err
	}
	st.Phase, st.Reason = phaseCommitted, ""
	return in.save(st)
}

// commit keeps bin as bin.prev and renames bin.new over bin: each step
// atomic, so bin is always a whole binary.
func (in *binaryInstaller) commit() error {
	if err := in.step("prev"); err != nil {
		return err
	}
	tmp := in.bin + prevSuffix + ".tmp"
	os.Remove(tmp)
	if err := os.Link(in.bin, tmp); err != nil {
		return fmt.Errorf("keeping the previous cloudboxd: %w", err)
	}
	if err := os.Rename(tmp, in.bin+prevSuffix); err != nil {
		return fmt.Errorf("keeping the previous cloudboxd: %w", err)
	}
	if err := in.step("swap"); err != nil {
		return err
	}
	if err := os.Rename(in.bin+newSuffix, in.bin); err != nil {
		return fmt.Errorf("committing %s: %w", in.bin, err)
	}
	in.self = in.bin
	if err := atomicfile.SyncDir(filepath.Dir(in.bin)); err != nil {
		return fmt.Errorf("committing %s: %w", in.bin, err)
	}
	return nil
}

// removeNew removes bin.new, a release that did not commit.
func (in *binaryInstaller) removeNew() error {
	if err := os.Remove(in.bin + newSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the release that rolled back: %w", err)
	}
	return nil
}
