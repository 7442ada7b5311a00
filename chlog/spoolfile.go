package chlog

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Spool files and WAL segments hold whole prompts and answers: they are
// readable by the relay's user only, as are the directories the relay
// creates for them (one that exists keeps its mode).
const (
	spoolFileMode = 0o600
	spoolDirMode  = 0o700
)

// spoolTemp is a spool file being written under a temporary name (".tmp":
// opening the spool deletes such files). Bytes are appended as they are
// encoded (write), so that a group of blocks goes into one file without a
// buffer that holds them all, and commit makes the file durable under its
// final name: fsync'd, renamed, the directory fsync'd. A crash leaves
// either no file or the whole file.
//
// Appends go around the page cache where the file system lets them
// (O_DIRECT, direct_linux.go): only whole aligned units of an aligned
// buffer, so write may take less than it is given; the caller keeps the
// rest at the start of its buffer, appends the next bytes behind it and
// hands it in again. The last tail goes through the page cache at commit.
type spoolTemp struct {
	dir, path string
	f         *os.File
	direct    bool  // O_DIRECT still on
	off       int64 // bytes written so far (a multiple of directAlign while direct)
}

// createSpoolTemp creates dir/name+".tmp" (truncating a leftover).
// A spool_dir removed under the running relay (an operator's rm -rf) is
// made again (remakeSpoolDir): else every later block was dropped until a
// restart.
func createSpoolTemp(dir, name string) (*spoolTemp, error) {
	path := filepath.Join(dir, name+".tmp")
	f, direct, err := openSpoolTemp(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err = remakeSpoolDir(dir); err == nil {
			f, direct, err = openSpoolTemp(path)
		}
	}
	if err != nil {
		return nil, err
	}
	return &spoolTemp{dir: dir, path: path, f: f, direct: direct}, nil
}

// write appends the part of data it can write now and returns its length:
// with O_DIRECT the longest aligned prefix (possibly none), else all of it.
// A file system that refuses the direct write gets this and every later
// append through the page cache.
func (t *spoolTemp) write(data []byte) (int, error) {
	n := len(data)
	if t.direct {
		if n = directPrefix(data); n == 0 {
			return 0, nil
		}
		if _, err := t.f.WriteAt(data[:n], t.off); err != nil {
			if !errors.Is(err, syscall.EINVAL) {
				return 0, err
			}
			if err := t.buffered(); err != nil {
				return 0, err
			}
			n = len(data)
		} else {
			t.off += int64(n)
			return n, nil
		}
	}
	if _, err := t.f.WriteAt(data[:n], t.off); err != nil {
		return 0, err
	}
	t.off += int64(n)
	return n, nil
}

// buffered turns O_DIRECT off for the rest of the file.
func (t *spoolTemp) buffered() error {
	if !t.direct {
		return nil
	}
	if err := clearDirect(t.f); err != nil {
		return err
	}
	t.direct = false
	return nil
}

// size is the file's length once rest is appended.
func (t *spoolTemp) size(rest []byte) int64 { return t.off + int64(len(rest)) }

// commit appends rest (what write left over), makes the file durable and
// renames it to name in its directory. On error the temporary file is
// removed.
func (t *spoolTemp) commit(rest []byte, name string) error {
	err := t.finish(rest)
	if err == nil {
		err = os.Rename(t.path, filepath.Join(t.dir, name))
	}
	if err != nil {
		_ = os.Remove(t.path)
		return err
	}
	return syncDir(t.dir)
}

func (t *spoolTemp) finish(rest []byte) error {
	err := t.appendTail(rest)
	if err == nil {
		err = t.f.Sync()
	}
	if cerr := t.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// appendTail appends rest through the page cache (what write left over:
// less than an aligned unit). On error nothing counts as written, and the
// same bytes may be appended again.
func (t *spoolTemp) appendTail(rest []byte) error {
	if len(rest) == 0 {
		return nil
	}
	if err := t.buffered(); err != nil {
		return err
	}
	if _, err := t.f.WriteAt(rest, t.off); err != nil {
		return err
	}
	t.off += int64(len(rest))
	return nil
}

// abort closes and removes the temporary file.
func (t *spoolTemp) abort() {
	_ = t.f.Close()
	_ = os.Remove(t.path)
}

// writeDurable writes data to dir/name through a temporary file (spoolTemp),
// so that a crash leaves either no file or the whole file.
func writeDurable(dir, name string, data []byte) error {
	t, err := createSpoolTemp(dir, name)
	if err != nil {
		return err
	}
	n, err := t.write(data)
	if err != nil {
		t.abort()
		return err
	}
	return t.commit(data[n:], name)
}

// special reports whether e, an entry of dir, is a named pipe, socket or
// device, or a link to one: a file of the spool's name that is no file.
// Reading one blocked relay show, relay spool ls -verify and the start for
// good (a FIFO named *.native).
func special(dir string, e fs.DirEntry) bool {
	const odd = fs.ModeNamedPipe | fs.ModeSocket | fs.ModeDevice | fs.ModeCharDevice | fs.ModeIrregular
	if e.Type()&fs.ModeSymlink != 0 {
		info, err := os.Stat(filepath.Join(dir, e.Name()))
		return err == nil && info.Mode()&odd != 0
	}
	return e.Type()&odd != 0
}
