package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	for i, tc := range []struct {
		data []byte
		perm os.FileMode
	}{
		{[]byte("first"), 0o600},
		{[]byte("second, longer content"), 0o644},
		{nil, 0o600},
	} {
		if err := Write(path, tc.data, tc.perm); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != string(tc.data) {
			t.Fatalf("write %d: read back %q, %v; want %q", i, got, err, tc.data)
		}
		fi, _ := os.Stat(path)
		if fi.Mode().Perm() != tc.perm {
			t.Errorf("write %d: mode %v, want %v", i, fi.Mode().Perm(), tc.perm)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only state.json (temporary files left?)", len(entries))
	}
}

func TestWriteFailsWithoutTouchingTarget(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(filepath.Join(notDir, "x"), []byte("y"), 0o600); err == nil {
		t.Fatal("Write under a regular file succeeded")
	}
	// Renaming over a directory fails after the temporary file was written:
	// the temporary file must be gone and the directory untouched.
	target := filepath.Join(dir, "adir")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Write(target, []byte("y"), 0o600); err == nil {
		t.Fatal("Write over a directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries after failed writes, want 2", len(entries))
	}
}
