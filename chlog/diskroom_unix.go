//go:build linux || darwin || freebsd

package chlog

import (
	"errors"
	"syscall"
)

// diskAvail returns the bytes the relay's user may still write on the file
// system holding dir, or -1 when that cannot be told.
func diskAvail(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// diskFull reports whether err is a write refused for want of space (the
// file system's, or the user's quota).
func diskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
