package appliance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudbox/cloudbox/internal/bootslot"
	"github.com/cloudbox/cloudbox/services/update"
)

// fakeBox is a box on files: two root slot files, a boot directory and a
// state directory, with an emulated firmware that remembers the tryboot
// flag it consumed (as the Pi's mailbox does until a reset).
type fakeBox struct {
	t        *testing.T
	dir      string
	disk     slotDisk
	consumed string
	// rebooted records the reboots the installer asked for.
	rebooted []bool
	v1Root   []byte
	kernels  map[string]string // kernel content -> version
	roots    map[string]string // root content -> version
}

func newFakeBox(t *testing.T) *fakeBox {
	t.Helper()
	dir := t.TempDir()
	b := &fakeBox{t: t, dir: dir, v1Root: bytes.Repeat([]byte("v1 root "), 3000),
		kernels: map[string]string{"kernel v1": "1.0.0"}, roots: map[string]string{}}
	b.roots[string(b.v1Root)] = "1.0.0"
	b.disk = slotDisk{Active: bootslot.PartA, BootDir: filepath.Join(dir, "boot"),
		Roots: map[int]string{bootslot.PartA: filepath.Join(dir, "p2"), bootslot.PartB: filepath.Join(dir, "p3")}}
	files := map[string]string{
		"boot/config.txt":      "enable_uart=1\n[all]\nos_prefix=a/\n",
		"boot/bootcode.bin":    "firmware",
		"boot/a/vmlinuz":       "kernel v1",
		"boot/a/cmdline.txt":   "console=ttyS0 root=PARTUUID=c1b0c1b0-0000-4000-8000-0000000a0001/PARTNROFF=1 init=/gokrazy/init rootwait" + strings.Repeat(" ", 64),
		"p2":                   string(b.v1Root) + strings.Repeat("\x00", fakeSlotSize-len(b.v1Root)),
		"p3":                   strings.Repeat("\x00", fakeSlotSize),
		"state/update/.keep":   "",
		"store/chunks/.keep":   "",
		"release/.placeholder": "",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(filepath.Join(dir, "release/.placeholder"))
	return b
}

// release writes a release of version v into a store and returns both.
func (b *fakeBox) release(v string) (*update.Manifest, *update.Store) {
	b.t.Helper()
	dir := filepath.Join(b.dir, "release-"+v)
	root := bytes.Repeat([]byte("root "+v+" "), 5000)
	kernel := "kernel " + v
	b.kernels[kernel], b.roots[string(root)] = v, v
	return writeTestRelease(b.t, dir, "amd64", v, []update.Input{{Name: update.RootArtifact, Data: root}, {Name: "boot/vmlinuz", Data: []byte(kernel)},
		{Name: "boot/bootcode.bin", Data: []byte("new firmware")}, {Name: "boot/config.txt", Data: []byte("os_prefix=\n")}})
}

// writeTestRelease writes an unsigned release of board and version v with
// inputs into dir (4 KiB chunks) and returns it with its store.
func writeTestRelease(t *testing.T, dir, board, v string, inputs []update.Input) (*update.Manifest, *update.Store) {
	t.Helper()
	m, err := update.WriteRelease(dir, update.Manifest{Board: board, Version: v, Channel: "stable", ChunkSize: 4096}, inputs)
	if err != nil {
		t.Fatal(err)
	}
	s, err := update.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m, s
}

// installer returns the installer of the box as booted now.
func (b *fakeBox) installer(healthy error, trial time.Duration) *installer {
	return &installer{
		installState: installState{stateFile: filepath.Join(b.dir, "state/update", installFile), now: time.Now, log: slog.New(slog.DiscardHandler)},
		disk:         b.disk, running: b.running(),
		trial:    trial,
		slotFile: func(p string) bool { return p == "vmlinuz" },
		reboot: func(trial bool, why string) error {
			b.rebooted = append(b.rebooted, trial)
			return nil
		},
		healthy:       func(context.Context) error { return healthy },
		markCommitted: func() error { return nil },
	}
}

// boot plays the firmware: it picks the slot as the Pi does and checks
// that the slot's kernel and root are of one and the same version.
func (b *fakeBox) boot() (part int, version string) {
	b.t.Helper()
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join(b.disk.BootDir, name))
		if err != nil {
			return ""
		}
		return string(data)
	}
	conf := bootslot.ConfigFile
	if flag := read(bootslot.TryFlagFile); flag != "" && flag != b.consumed {
		b.consumed = flag
		if read(bootslot.TryFile) != "" {
			conf = bootslot.TryFile
		}
	}
	c, err := bootslot.ParseConfig([]byte(read(conf)))
	if err != nil || c.Part() == 0 {
		b.t.Fatalf("firmware: %s is unusable (%v): %q", conf, err, read(conf))
	}
	kernel := read(c.Prefix + bootslot.Kernel)
	cmdline := read(c.CmdlinePath())
	root, err := os.ReadFile(b.disk.Roots[c.Part()])
	if err != nil {
		b.t.Fatal(err)
	}
	kv, rv := b.kernels[kernel], b.roots[string(bytes.TrimRight(root, "\x00"))]
	if kv == "" || kv != rv {
		b.t.Fatalf("firmware boots slot %s: kernel %q (version %q) with root of version %q: the box is bricked", c.Prefix, kernel, kv, rv)
	}
	if want := fmt.Sprintf("/PARTNROFF=%d", c.Part()-1); !strings.Contains(cmdline, want) {
		b.t.Fatalf("slot %s boots with command line %q, want root %s", c.Prefix, cmdline, want)
	}
	if (conf == bootslot.TryFile) != (bootslot.TrialSeconds(cmdline) > 0) {
		b.t.Fatalf("boot from %s with command line %q: trial argument wrong", conf, cmdline)
	}
	b.disk.Active = c.Part()
	return c.Part(), kv
}

func (b *fakeBox) running() string {
	root, _ := os.ReadFile(b.disk.Roots[b.disk.Active])
	return b.roots[string(bytes.TrimRight(root, "\x00"))]
}

// fakeSlotSize is the size of the fake root partitions.
const fakeSlotSize = 64 << 10

func (b *fakeBox) state() InstallStatus {
	b.t.Helper()
	st, err := b.installer(nil, time.Minute).load()
	if err != nil {
		b.t.Fatal(err)
	}
	return st
}

func TestInstallCommits(t *testing.T) {
	b := newFakeBox(t)
	m, s := b.release("2.0.0")
	ctx := context.Background()
	if err := b.installer(nil, time.Minute).Apply(ctx, m, s); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(b.rebooted) != 1 || !b.rebooted[0] {
		t.Fatalf("reboots %v, want one with the tryboot flag", b.rebooted)
	}
	if st := b.state(); st.Phase != phaseTrying || st.Slot != bootslot.PartB || st.From != "1.0.0" {
		t.Fatalf("state after Apply %+v, want trying slot 3 from 1.0.0", st)
	}
	if part, v := b.boot(); part != bootslot.PartB || v != "2.0.0" {
		t.Fatalf("trial boot is slot %d version %s, want 3 and 2.0.0", part, v)
	}
	if err := b.installer(nil, time.Minute).Resume(ctx); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if st := b.state(); st.Phase != phaseCommitted {
		t.Fatalf("state after the trial %+v, want committed", st)
	}
	// A plain reset now keeps the new version.
	if part, v := b.boot(); part != bootslot.PartB || v != "2.0.0" {
		t.Fatalf("boot after the commit is slot %d version %s, want 3 and 2.0.0", part, v)
	}
	if _, err := os.Stat(filepath.Join(b.disk.BootDir, bootslot.TryFlagFile)); err == nil {
		t.Error("the tryboot flag is still there after the commit")
	}
	// The next release goes to slot A, and the firmware files stay.
	m3, s3 := b.release("3.0.0")
	if err := b.installer(nil, time.Minute).Apply(ctx, m3, s3); err != nil {
		t.Fatalf("Apply 3.0.0: %v", err)
	}
	if part, v := b.boot(); part != bootslot.PartA || v != "3.0.0" {
		t.Fatalf("trial boot of 3.0.0 is slot %d version %s", part, v)
	}
	if fw, _ := os.ReadFile(filepath.Join(b.disk.BootDir, "bootcode.bin")); string(fw) != "firmware" {
		t.Errorf("firmware file changed to %q", fw)
	}
}

func TestInstallRollsBackUnhealthy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFakeBox(t)
		m, s := b.release("2.0.0")
		ctx := context.Background()
		if err := b.installer(nil, time.Minute).Apply(ctx, m, s); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		b.boot()
		if err := b.installer(errors.New("panel does not answer"), time.Minute).Resume(ctx); err != nil {
			t.Fatalf("Resume: %v", err)
		}
		if len(b.rebooted) != 2 || b.rebooted[1] {
			t.Fatalf("reboots %v, want a plain reboot after the failed trial", b.rebooted)
		}
		if part, v := b.boot(); part != bootslot.PartA || v != "1.0.0" {
			t.Fatalf("boot after the failed trial is slot %d version %s, want 2 and 1.0.0", part, v)
		}
		if err := b.installer(nil, time.Minute).Resume(ctx); err != nil {
			t.Fatalf("Resume on the old slot: %v", err)
		}
		st := b.state()
		if st.Phase != phaseRolledBack || !strings.Contains(st.Reason, "panel does not answer") {
			t.Fatalf("state %+v, want rolled back naming the health problem", st)
		}
		err := b.installer(nil, time.Minute).Apply(ctx, m, s)
		if err == nil || !strings.Contains(err.Error(), "rolled back") {
			t.Fatalf("Apply of the rolled back release: %v, want a refusal", err)
		}
	})
}

func TestInstallRollsBackTrialThatNeverComesUp(t *testing.T) {
	b := newFakeBox(t)
	m, s := b.release("2.0.0")
	ctx := context.Background()
	if err := b.installer(nil, time.Minute).Apply(ctx, m, s); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	// The trial boot hangs; the watchdog resets the box.
	if part, _ := b.boot(); part != bootslot.PartB {
		t.Fatalf("trial boot is slot %d", part)
	}
	if part, v := b.boot(); part != bootslot.PartA || v != "1.0.0" {
		t.Fatalf("boot after the reset is slot %d version %s, want 2 and 1.0.0", part, v)
	}
	if err := b.installer(nil, time.Minute).Resume(ctx); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if st := b.state(); st.Phase != phaseRolledBack || !strings.Contains(st.Reason, "did not commit") {
		t.Fatalf("state %+v, want rolled back, not committed in time", st)
	}
}

// TestInstallPowerCuts cuts the power before every step of an install and
// of the trial: the firmware always finds a slot whose kernel and root
// belong together, and after the cut the box ends on the new version
// (the install restarts) or back on the old one with the reason recorded.
func TestInstallPowerCuts(t *testing.T) {
	steps := []string{"root", "verify-root", "boot", "verify-boot", "written", "tryboot", "flag", "trying", "reboot", "commit", "committed"}
	for _, step := range steps {
		t.Run(step, func(t *testing.T) {
			b := newFakeBox(t)
			m, s := b.release("2.0.0")
			ctx := context.Background()
			cutting := true
			cut := func(name string) error {
				if cutting && name == step {
					cutting = false
					return errPowerCut
				}
				return nil
			}
			in := b.installer(nil, time.Minute)
			in.cut = cut
			err := in.Apply(ctx, m, s)
			if cutting { // the cut is in the trial
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				b.boot()
				in := b.installer(nil, time.Minute)
				in.cut = cut
				if err := in.Resume(ctx); !errors.Is(err, errPowerCut) {
					t.Fatalf("Resume: %v, want the power cut", err)
				}
			} else if !errors.Is(err, errPowerCut) {
				t.Fatalf("Apply: %v, want the power cut", err)
			}
			// Power comes back (a cut clears the Pi's tryboot flag).
			b.consumed = readOr(filepath.Join(b.disk.BootDir, bootslot.TryFlagFile))
			b.boot()
			for range 3 { // what cloudboxd does at each start
				reboots := len(b.rebooted)
				if err := b.installer(nil, time.Minute).Resume(ctx); err != nil {
					t.Fatalf("Resume after the cut: %v", err)
				}
				if len(b.rebooted) > reboots {
					b.boot()
					continue
				}
				if b.running() == "1.0.0" {
					if st := b.state(); st.Phase == phaseRolledBack {
						break
					}
					if err := b.installer(nil, time.Minute).Apply(ctx, m, s); err != nil {
						t.Fatalf("Apply after the cut: %v", err)
					}
					b.boot()
				}
			}
			st := b.state()
			switch {
			case b.running() == "2.0.0" && st.Phase == phaseCommitted:
			case b.running() == "1.0.0" && st.Phase == phaseRolledBack && st.Reason != "":
			default:
				t.Fatalf("after a cut before %s the box runs %s with install state %+v", step, b.running(), st)
			}
			if part, _ := b.boot(); (part == bootslot.PartB) != (b.running() == "2.0.0") {
				t.Fatalf("a reset boots slot %d while the box ran %s", part, b.running())
			}
		})
	}
}

func readOr(p string) string {
	data, _ := os.ReadFile(p)
	return string(data)
}
