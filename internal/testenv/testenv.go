// Package testenv holds what cloudbox's tests need from the machine they run
// on: external tools that must be present (a missing one fails the test with
// the command that installs it, never skips it) and the module root.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// RequireCommand fails the test unless the command name is on PATH (or in
// /sbin or /usr/sbin, where Debian puts filesystem tools). It returns the full
// path. debPackage is the Debian package that provides it.
func RequireCommand(t testing.TB, name, debPackage string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("%s is required but not installed: run `apt-get install %s` (or `make deps`)", name, debPackage)
	return ""
}

// ModuleRoot returns the root directory of the cloudbox module.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the module root")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// RequireRoot fails the test unless it runs as root (network namespaces,
// TUN devices, nftables).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (network namespaces, TUN devices): run `sudo make test`")
	}
}
