package update

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/cloudbox/cloudbox/internal/testenv"
)

// TestIngestDiskFull: the store's file system (a 256 KiB tmpfs) fills up
// during an upload; the upload fails naming the full disk, and the box
// keeps what fit and fetches the rest later.
func TestIngestDiskFull(t *testing.T) {
	testenv.RequireRoot(t)
	k := testKey(1)
	dir := t.TempDir()
	makeRelease(t, dir, release{version: "2.0.0", root: payload("big", 1<<20)}, k)

	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=256k"); err != nil {
		t.Fatalf("mounting a small tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	a, err := NewAgent(Config{Dir: mnt, Board: "amd64", Trust: trustOf(1, k)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ingestDir(t, a, dir)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Ingest into a full disk: %v, want ENOSPC and a hint", err)
	}
	st := statusOf(a, "2.0.0")
	if st.Complete || st.ChunksHeld >= st.Chunks {
		t.Errorf("after a full disk: %+v", st)
	}
}
