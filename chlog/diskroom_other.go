//go:build !(linux || darwin || freebsd)

package chlog

// diskAvail is -1 here: the room left on the spool's file system is not
// read on this system, and only spool_max_bytes caps the spool.
func diskAvail(string) int64 { return -1 }

// diskFull is false here: a full disk is not told from other write errors.
func diskFull(error) bool { return false }
