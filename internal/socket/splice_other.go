//go:build !linux

package socket

import (
	"errors"
	"syscall"
)

// Pipe is a kernel pipe for splice(2), which only Linux has.
type Pipe struct {
	R, W uintptr
	Size int
}

// NewPipe fails: without splice(2) bytes are copied.
func NewPipe() (*Pipe, error) { return nil, errors.New("socket: splice(2) is Linux only") }

// Close does nothing: there are no pipes.
func (p *Pipe) Close() {}

// Splice is not available.
func Splice(out, in uintptr, n int) (int, syscall.Errno) { return 0, syscall.ENOSYS }
