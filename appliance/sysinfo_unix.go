//go:build unix

package appliance

import "golang.org/x/sys/unix"

// diskSpace returns the size and the space available to cloudboxd of the
// file system of dir.
func diskSpace(dir string) (total, free uint64, ok bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, false
	}
	bs := uint64(st.Bsize)
	return st.Blocks * bs, st.Bavail * bs, true
}
