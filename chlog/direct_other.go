//go:build !linux

package chlog

import "os"

// openSpoolTemp creates (or truncates) the file at path for writing. Only
// Linux writes spool files with O_DIRECT (direct_linux.go).
func openSpoolTemp(path string) (*os.File, bool, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	return f, false, err
}

// writeSpoolData writes data at the start of f.
func writeSpoolData(f *os.File, _ bool, data []byte) error {
	_, err := f.Write(data)
	return err
}
