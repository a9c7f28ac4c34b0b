package appliance

import (
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// watchdogsOf returns the pids of the watchdog processes watching
// stateFile (their command lines name it).
func watchdogsOf(t *testing.T, stateFile string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if strings.Contains(string(cmdline), "cloudbox-trial-watchdog") && strings.Contains(string(cmdline), stateFile) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestTrialWatchdog runs the watchdog against real processes: it stops a
// process whose trial is still on after the wait, and leaves alone one
// that runs the committed binary, one whose trial rolled back and one
// whose state names another version; it ends within about a second of the
// trial's end, and at the latest after the wait.
func TestTrialWatchdog(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatalf("the test needs sleep(1): %v", err)
	}
	for _, tc := range []struct {
		name      string
		phase     string
		version   string // in the state file; the watchdog watches 2.0.0
		committed bool   // the process runs the committed binary
		killed    bool
		// commitAfter, if set, marks the trial committed that long after
		// the watchdog started.
		commitAfter time.Duration
	}{
		{name: "hung trial", phase: phaseTrying, version: "2.0.0", killed: true},
		{name: "committed", phase: phaseTrying, version: "2.0.0", committed: true},
		{name: "rolled back", phase: phaseRolledBack, version: "2.0.0"},
		{name: "other version", phase: phaseTrying, version: "3.0.0"},
		{name: "commits meanwhile", phase: phaseTrying, version: "2.0.0", commitAfter: 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			st := installState{stateFile: filepath.Join(dir, installFile), now: time.Now, log: slog.New(slog.DiscardHandler)}
			if err := st.save(InstallStatus{Version: tc.version, From: "1.0.0", Phase: tc.phase}); err != nil {
				t.Fatal(err)
			}
			trial := exec.Command(sleep, "30")
			if err := trial.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- trial.Wait() }()
			t.Cleanup(func() { trial.Process.Kill() })
			bin := filepath.Join(dir, "cloudboxd")
			if tc.committed {
				if bin, err = os.Readlink("/proc/" + strconv.Itoa(trial.Process.Pid) + "/exe"); err != nil {
					t.Fatal(err)
				}
			}
			wait := time.Second
			if tc.commitAfter > 0 {
				wait = 20 * time.Second
			}
			start := time.Now()
			if err := startTrialWatchdog(wait, st.stateFile, "2.0.0", trial.Process.Pid, bin); err != nil {
				t.Fatal(err)
			}
			if len(watchdogsOf(t, st.stateFile)) == 0 {
				t.Fatal("no watchdog process is running")
			}
			if tc.commitAfter > 0 {
				time.Sleep(tc.commitAfter)
				if err := st.save(InstallStatus{Version: tc.version, From: "1.0.0", Phase: phaseCommitted}); err != nil {
					t.Fatal(err)
				}
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("starting the watchdog took %v: it must not wait for it", d)
			}
			select {
			case err := <-done:
				var ee *exec.ExitError
				if !tc.killed {
					t.Fatalf("the watchdog stopped the process (%v) although its trial had ended", err)
				}
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("the process ended with %v, want SIGKILL", err)
				}
				if d := time.Since(start); d < time.Second {
					t.Errorf("stopped after %v, before the wait of 1 s", d)
				}
				t.Logf("stopped %v after the watchdog started", time.Since(start).Round(10*time.Millisecond))
			case <-time.After(4 * time.Second):
				if tc.killed {
					t.Fatal("the hung trial was still running 4 s after a 1 s watchdog started")
				}
			}
			// 4 s on: every watchdog has ended (after its 1 s wait, or
			// within a second of the commit, long before its 20 s).
			if pids := watchdogsOf(t, st.stateFile); len(pids) > 0 {
				t.Errorf("watchdog processes %v still run %v after the start", pids, time.Since(start).Round(time.Millisecond))
			}
		})
	}
}
