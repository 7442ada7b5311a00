//go:build !linux

package upstream

import "net"

// unsentBytes is not known here: a blocked write's start stands as the
// client's last progress.
func unsentBytes(net.Conn) (int64, bool) { return 0, false }
