//go:build race

package socket

import "syscall"

// spliceCall is splice(2) through the ordinary system call (see Read).
func spliceCall(out, in uintptr, n int) (int, syscall.Errno) {
	m, err := syscall.Splice(int(in), nil, int(out), nil, n, spliceFlags)
	return errnoOf(int(m), err)
}
