//go:build !linux

package chlog

import "os"

// openSpoolTemp creates (or truncates) the file at path for writing. Only
// Linux writes spool files with O_DIRECT (direct_linux.go).
func openSpoolTemp(path string) (*os.File, bool, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, spoolFileMode)
	return f, false, err
}

// directPrefix is 0: no file is opened with O_DIRECT here.
func directPrefix([]byte) int { return 0 }

// clearDirect does nothing: no file is opened with O_DIRECT here.
func clearDirect(*os.File) error { return nil }
