package appliance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cloudbox/cloudbox/internal/atomicfile"
	"github.com/cloudbox/cloudbox/internal/bootslot"
	"github.com/cloudbox/cloudbox/services/update"
)

// Installing a release: the update state machine in /perm.
//
// Apply writes the inactive root slot and its boot files (internal/bootslot)
// from the verified chunks, reads both back, writes tryboot.txt, sets the
// one-shot tryboot flag and reboots. The new system is on trial: once it is
// healthy (cloudboxd up, the panel answering, the overlay connected to a
// peer when the box is a member) within the trial time, it commits by
// naming its slot in config.txt; otherwise it reboots, or init resets it
// when cloudboxd never gets that far, or the launcher's watchdog when the
// kernel never comes up, and the firmware boots the committed slot again.
// The phases, persisted atomically in <state>/update/install.json before
// each step, make every power cut safe: config.txt names the committed slot
// until the very commit, so a cut at any moment boots a system that works.

// Phases of an install.
const (
	phaseWriting    = "writing"     // writing the inactive slot
	phaseWritten    = "written"     // slot written and read back
	phaseTrying     = "trying"      // rebooting into the slot on trial
	phaseCommitted  = "committed"   // the new slot proved itself
	phaseRolledBack = "rolled-back" // the box returned to the old slot
	phaseFailed     = "failed"      // the install stopped before the reboot
)

// installFile is the install state's file in the update directory.
const installFile = "install.json"

// defaultTrialTime is how long a trial boot has to commit, as a duration
// string so that test images can shorten it with -ldflags -X.
var defaultTrialTime = "5m"

// installPause, a duration string set with -ldflags -X in test images,
// pauses an install after the root slot is written, so that a test can cut
// the power in the middle of it. Empty means no pause.
var installPause = ""

// InstallStatus is the state of the last install, in GET /api/v1/update.
type InstallStatus struct {
	// Version is the release installed; From the version that installed it.
	Version string `json:"version"`
	From    string `json:"from,omitempty"`
	// Slot is the root partition written (2 or 3).
	Slot int `json:"slot"`
	// Phase is writing, written, trying, committed, rolled-back or failed.
	Phase string `json:"phase"`
	// Reason says why an install failed or rolled back.
	Reason string `json:"reason,omitempty"`
	// Updated is when the phase was entered.
	Updated time.Time `json:"updated"`
}

// slotDisk is where the installer writes: the root slots and the mounted
// boot partition. Tests use files and a directory.
type slotDisk struct {
	// Active is the running root partition.
	Active int
	// Roots are the paths of the root partitions' devices, by number.
	Roots map[int]string
	// BootDir is the boot partition, mounted read-write.
	BootDir string
}

// installer installs releases into a slotDisk and runs the trial after
// the reboot.
type installer struct {
	// installState persists the phases (shared with a router's
	// binaryInstaller).
	installState
	// Immutable after newInstaller.
	disk    slotDisk
	running string
	trial   time.Duration
	// slotFile says whether a boot file (a path on the boot partition)
	// belongs to a slot (the kernel's files) rather than the firmware.
	slotFile func(p string) bool
	// reboot restarts the box, with the tryboot flag when trial is set;
	// why goes to the console.
	reboot func(trial bool, why string) error
	// healthy returns nil when the box is healthy.
	healthy func(ctx context.Context) error
	// markCommitted tells init that the trial committed.
	markCommitted func() error

	// mu serializes installs and trials, the writers of the state file.
	mu sync.Mutex
}

// installState is the persisted state of an installer: the phase of the
// last install in install.json, replaced atomically before each step.
type installState struct {
	stateFile string
	// cut, in tests, simulates a power cut before the named step: an
	// error from it stops the installer there.
	cut func(step string) error
	now func() time.Time
	log *slog.Logger
}

// errPowerCut is returned by the test hook cut.
var errPowerCut = errors.New("power cut")

func (in *installState) step(name string) error {
	if in.cut == nil {
		return nil
	}
	return in.cut(name)
}

// load returns the persisted state; the zero state when there is none.
func (in *installState) load() (InstallStatus, error) {
	var st InstallStatus
	data, err := os.ReadFile(in.stateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("reading install state: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return InstallStatus{}, fmt.Errorf("install state %s: %w", in.stateFile, err)
	}
	return st, nil
}

func (in *installState) save(st InstallStatus) error {
	st.Updated = in.now().UTC()
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding install state: %w", err)
	}
	if err := atomicfile.Write(in.stateFile, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving install state: %w", err)
	}
	in.log.Info("install phase", "version", st.Version, "phase", st.Phase, "reason", st.Reason)
	return nil
}

// check loads the last install and refuses release m when it rolled back
// before or another release is on trial.
func (in *installState) check(m *update.Manifest) (InstallStatus, error) {
	prev, err := in.load()
	if err != nil {
		return prev, err
	}
	if prev.Version == m.Version && prev.Phase == phaseRolledBack {
		return prev, fmt.Errorf("release %s was installed and rolled back (%s); waiting for a newer release", m.Version, prev.Reason)
	}
	if prev.Phase == phaseTrying {
		return prev, fmt.Errorf("release %s is on trial; not installing %s now", prev.Version, m.Version)
	}
	return prev, nil
}

// enter saves st in phase, after the step of that name (a power cut in
// tests).
func (in *installState) enter(st *InstallStatus, phase string) error {
	if err := in.step(phase); err != nil {
		return err
	}
	st.Phase = phase
	return in.save(*st)
}

// fail records err as the reason st failed and returns it; a test's power
// cut stops the installer without a record.
func (in *installState) fail(st *InstallStatus, err error) error {
	if errors.Is(err, errPowerCut) {
		return err
	}
	st.Phase, st.Reason = phaseFailed, err.Error()
	if serr := in.save(*st); serr != nil {
		return errors.Join(err, serr)
	}
	return err
}

// Status returns the last install's state; nil when there was none.
// It does not wait for an install in progress: the state file is replaced
// atomically, so reading it is always consistent.
func (in *installState) Status() *InstallStatus {
	st, err := in.load()
	if err != nil || st.Phase == "" {
		return nil
	}
	return &st
}

// committedPart returns the slot config.txt names.
func (in *installer) committedPart() (int, []byte, error) {
	data, err := os.ReadFile(filepath.Join(in.disk.BootDir, bootslot.ConfigFile))
	if err != nil {
		return 0, nil, fmt.Errorf("reading the boot configuration: %w", err)
	}
	c, err := bootslot.ParseConfig(data)
	if err != nil {
		return 0, nil, fmt.Errorf("boot configuration: %w", err)
	}
	if c.Part() == 0 {
		return 0, nil, fmt.Errorf("the boot configuration names no A/B slot (os_prefix %q): this image predates A/B boot; flash a newer one", c.Prefix)
	}
	return c.Part(), data, nil
}

// Apply installs release m from store s and reboots into it on trial; it
// is update.Config.Apply. It returns an error, and the box keeps running
// its version, when anything fails before the reboot.
func (in *installer) Apply(ctx context.Context, m *update.Manifest, s *update.Store) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	prev, err := in.check(m)
	if err != nil {
		return err
	}
	committed, config, err := in.committedPart()
	if err != nil {
		return err
	}
	if committed != in.disk.Active {
		return fmt.Errorf("the box runs slot %d but slot %d is committed: finish that first (reboot)", in.disk.Active, committed)
	}
	if (prev.Phase == phaseWriting || prev.Phase == phaseWritten) && prev.Version == m.Version {
		in.log.Info("resuming an interrupted install", "version", m.Version)
	}
	target := bootslot.Other(in.disk.Active)
	st := InstallStatus{Version: m.Version, From: in.running, Slot: target, Phase: phaseWriting}
	if err := in.save(st); err != nil {
		return err
	}
	fail := func(err error) error { return in.fail(&st, err) }
	if err := in.writeRoot(ctx, m, s, target); err != nil {
		return fail(err)
	}
	if d, err := time.ParseDuration(installPause); err == nil && d > 0 {
		in.log.Info("pausing the install for a test", "for", d)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
	if err := in.writeBoot(m, s, target); err != nil {
		return fail(err)
	}
	if err := in.enter(&st, phaseWritten); err != nil {
		return err
	}
	// The trial: tryboot.txt, the flag, then the state. A cut before the
	// state is saved leaves "written": the committed slot boots (a Pi's
	// flag does not survive a cut) and the install starts again.
	if err := in.step("tryboot"); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(in.disk.BootDir, bootslot.TryFile), bootslot.TryConfig(config, bootslot.Prefix(target)), 0o644); err != nil {
		return fail(fmt.Errorf("writing %s: %w", bootslot.TryFile, err))
	}
	if err := in.step("flag"); err != nil {
		return err
	}
	flag := fmt.Sprintf("%s %d\n", m.Version, in.now().UnixNano())
	if err := atomicfile.Write(filepath.Join(in.disk.BootDir, bootslot.TryFlagFile), []byte(flag), 0o644); err != nil {
		return fail(fmt.Errorf("setting the tryboot flag: %w", err))
	}
	if err := in.enter(&st, phaseTrying); err != nil {
		return err
	}
	if err := in.step("reboot"); err != nil {
		return err
	}
	in.log.Info("rebooting into the new release on trial", "version", m.Version, "slot", target)
	if err := in.reboot(true, "trial boot of version "+m.Version); err != nil {
		return fail(fmt.Errorf("rebooting: %w", err))
	}
	return nil
}

// writeRoot writes the root artifact into partition part and reads it
// back.
func (in *installer) writeRoot(ctx context.Context, m *update.Manifest, s *update.Store, part int) error {
	art, ok := artifact(m, update.RootArtifact)
	if !ok {
		return errors.New("the release has no root file system")
	}
	if err := in.step("root"); err != nil {
		return err
	}
	f, err := os.OpenFile(in.disk.Roots[part], os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("opening root slot %d: %w", part, err)
	}
	defer f.Close()
	if size, err := f.Seek(0, io.SeekEnd); err == nil && size > 0 && size < art.Size {
		return fmt.Errorf("the release's root file system (%d MiB) does not fit the %d MiB root slot", art.Size>>20, size>>20)
	}
	if err := s.WriteArtifact(m, art, io.NewOffsetWriter(f, 0)); err != nil {
		return fmt.Errorf("writing root slot %d: %w", part, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing root slot %d: %w", part, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := in.step("verify-root"); err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, art.Size)); err != nil {
		return fmt.Errorf("reading back root slot %d: %w", part, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != art.SHA256 {
		return fmt.Errorf("root slot %d reads back as %s, not the release's %s: the disk may be failing", part, got[:12], art.SHA256[:12])
	}
	return nil
}

// writeBoot writes the slot's boot files: the release's kernel files and
// the command lines (the running slot's, naming partition part).
func (in *installer) writeBoot(m *update.Manifest, s *update.Store, part int) error {
	prefix := bootslot.Prefix(part)
	dir := filepath.Join(in.disk.BootDir, prefix)
	if err := in.step("boot"); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clearing boot files of slot %d: %w", part, err)
	}
	want := map[string]string{} // path under dir -> sha256
	for _, a := range m.Artifacts {
		p, ok := strings.CutPrefix(a.Name, "boot/")
		if !ok || !in.slotFile(p) {
			continue
		}
		if err := writeFileFrom(filepath.Join(dir, filepath.FromSlash(p)), func(w io.Writer) error { return s.WriteArtifact(m, a, w) }); err != nil {
			return err
		}
		want[p] = a.SHA256
	}
	if _, ok := want[bootslot.Kernel]; !ok {
		return errors.New("the release has no kernel (boot/vmlinuz)")
	}
	cur, err := os.ReadFile(filepath.Join(in.disk.BootDir, bootslot.Prefix(in.disk.Active), bootslot.CmdlineFile))
	if err != nil {
		return fmt.Errorf("reading the running slot's command line: %w", err)
	}
	cmdline, err := bootslot.SetRoot(string(cur), part)
	if err != nil {
		return err
	}
	trial := bootslot.TrialCmdline(cmdline, int(in.trial/time.Second))
	for name, text := range map[string]string{bootslot.CmdlineFile: cmdline, bootslot.TrialCmdlineFile: trial} {
		data := []byte(text)
		if err := writeFileFrom(filepath.Join(dir, name), func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		want[name] = hex.EncodeToString(sum[:])
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return fmt.Errorf("syncing boot files: %w", err)
	}
	if err := in.step("verify-boot"); err != nil {
		return err
	}
	for p, sum := range want {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
		if err != nil {
			return fmt.Errorf("reading back %s%s: %w", prefix, p, err)
		}
		if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != sum {
			return fmt.Errorf("boot file %s%s reads back wrong: the boot partition may be failing", prefix, p)
		}
	}
	return nil
}

// writeFileFrom creates path (and its directories) with what write writes,
// and syncs it.
func writeFileFrom(p string, write func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("creating boot directory: %w", err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("creating boot file: %w", err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("writing boot file %s: %w", path.Base(p), err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing boot file %s: %w", path.Base(p), err)
	}
	return f.Close()
}

func artifact(m *update.Manifest, name string) (update.Artifact, bool) {
	for _, a := range m.Artifacts {
		if a.Name == name {
			return a, true
		}
	}
	return update.Artifact{}, false
}

// Resume finishes what the last boot left: after a trial reboot it waits
// for health and commits (or rolls back), after a return to the old slot it
// records the rollback. It returns when done or ctx ends.
func (in *installer) Resume(ctx context.Context) error {
	in.mu.Lock()
	st, err := in.load()
	if err != nil {
		in.mu.Unlock()
		return err
	}
	if st.Phase != phaseTrying {
		err := in.clearTrial()
		committed, _, cerr := in.committedPart()
		in.mu.Unlock()
		if err == nil && cerr == nil && committed != in.disk.Active {
			// A trial boot without a trial in progress (a cut between
			// the flag and the state): back to the committed slot.
			in.log.Warn("running an uncommitted slot without a trial: rebooting", "slot", in.disk.Active)
			return in.reboot(false, "an uncommitted slot runs without a trial")
		}
		return err
	}
	if in.disk.Active != st.Slot {
		// The firmware booted the committed slot: the trial ended
		// without a commit.
		st.Phase = phaseRolledBack
		st.Reason = fmt.Sprintf("the box came back on its previous version %s: version %s did not commit within %v of its trial boot (it did not boot, cloudboxd did not become healthy, or the power was cut)", st.From, st.Version, in.trial)
		err := errors.Join(in.save(st), in.clearTrial())
		in.mu.Unlock()
		return err
	}
	if committed, _, err := in.committedPart(); err == nil && committed == st.Slot {
		// Committed, but the state was not saved before a cut.
		st.Phase, st.Reason = phaseCommitted, ""
		err := errors.Join(in.markCommitted(), in.save(st), in.clearTrial())
		in.mu.Unlock()
		return err
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
		if err := in.save(st); err != nil {
			return err
		}
		in.log.Warn("trial failed: rebooting into the previous version", "version", st.Version, "reason", herr)
		return in.reboot(false, "version "+st.Version+" failed its trial")
	}
	if err := in.step("commit"); err != nil {
		return err
	}
	_, config, err := in.committedPart()
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(in.disk.BootDir, bootslot.ConfigFile), bootslot.SetPrefix(config, bootslot.Prefix(st.Slot)), 0o644); err != nil {
		return fmt.Errorf("committing slot %d: %w", st.Slot, err)
	}
	if err := in.step("committed"); err != nil {
		return err
	}
	st.Phase, st.Reason = phaseCommitted, ""
	return errors.Join(in.markCommitted(), in.save(st), in.clearTrial())
}

// awaitTrial waits, at most two thirds of trial, for healthy to answer
// nil. It returns why version failed its trial (nil when healthy), or
// ctx's error when ctx ended first.
func (in *installState) awaitTrial(ctx context.Context, version string, trial time.Duration, healthy func(context.Context) error) (failed, err error) {
	limit := trial * 2 / 3
	in.log.Info("trial: waiting to be healthy", "version", version, "within", limit)
	hctx, cancel := context.WithTimeout(ctx, limit)
	herr := waitHealthy(hctx, healthy)
	cancel()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if herr != nil {
		return fmt.Errorf("version %s was not healthy within %v of its trial start: %w", version, limit, herr), nil
	}
	return nil, nil
}

// waitHealthy polls healthy until it answers nil or ctx ends, and then
// returns its last error.
func waitHealthy(ctx context.Context, healthy func(context.Context) error) error {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		err := healthy(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-t.C:
		}
	}
}

// clearTrial removes the tryboot flag and tryboot.txt.
func (in *installer) clearTrial() error {
	var errs []error
	for _, name := range []string{bootslot.TryFlagFile, bootslot.TryFile} {
		if err := os.Remove(filepath.Join(in.disk.BootDir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
