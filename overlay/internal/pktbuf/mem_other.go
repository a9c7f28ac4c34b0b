//go:build !unix

package pktbuf

func alloc(n int) []byte { return make([]byte, n) }

func free([]byte) {}
