//go:build linux

package chlog

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"
)

// TestWriteDurableAroundPageCache: spool data of every shape comes back
// byte for byte, written with O_DIRECT on ext4 (head direct, tail buffered;
// an unaligned buffer buffered whole) and on tmpfs (O_DIRECT since Linux
// 6.6; plainly before).
func TestWriteDurableAroundPageCache(t *testing.T) {
	big := make([]byte, 3<<20+123) // large: Go allocates it page-aligned
	for i := range big {
		big[i] = byte(i*7 + i>>12)
	}
	if uintptr(unsafe.Pointer(&big[0]))%directAlign != 0 {
		t.Fatal("a 3 MiB buffer is not page-aligned: the direct head would never be written")
	}
	shapes := map[string][]byte{
		"aligned, ragged tail": big,
		"aligned, whole pages": big[:3<<20],
		"unaligned buffer":     big[1 : 1<<20],
		"small":                big[:10],
		"empty":                nil,
	}
	dirs := map[string]string{"temp dir": t.TempDir()}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		shm, err := os.MkdirTemp("/dev/shm", "chlog-direct-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(shm) })
		dirs["tmpfs"] = shm
	}
	for dname, dir := range dirs {
		f, direct, err := openSpoolTemp(filepath.Join(dir, "probe"))
		if err != nil {
			t.Fatalf("%s: %v", dname, err)
		}
		_ = f.Close()
		var fs syscall.Statfs_t
		if err := syscall.Statfs(dir, &fs); err != nil {
			t.Fatal(err)
		}
		const ext4Magic = 0xEF53
		if fs.Type == ext4Magic && !direct {
			t.Fatalf("%s (ext4): spool files not opened with O_DIRECT", dname)
		}
		t.Logf("%s: file system %#x, O_DIRECT %v", dname, fs.Type, direct)
		for sname, data := range shapes {
			name := "f.native"
			if err := writeDurable(dir, name, data); err != nil {
				t.Fatalf("%s, %s: %v", dname, sname, err)
			}
			got, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("%s, %s: read back %d bytes that differ from the %d written", dname, sname, len(got), len(data))
			}
			if _, err := os.Stat(filepath.Join(dir, name+".tmp")); !os.IsNotExist(err) {
				t.Fatalf("%s, %s: temporary file left: %v", dname, sname, err)
			}
		}
	}
}
