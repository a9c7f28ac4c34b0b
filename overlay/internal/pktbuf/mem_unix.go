//go:build unix

package pktbuf

import "syscall"

// alloc maps n bytes of anonymous memory: the kernel supplies zeroed pages
// on first touch, and the Go runtime never touches (zeroes) them.
func alloc(n int) []byte {
	mem, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]byte, n)
	}
	return mem
}

// free unmaps what alloc mapped; memory from make is left to the GC.
func free(mem []byte) {
	syscall.Munmap(mem)
}
