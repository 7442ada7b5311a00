package chlog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// ErrSpoolInUse: another process holds the spool directory (a running
// relay, or `relay spool replay`). Two processes replaying one spool would
// send its files twice.
var ErrSpoolInUse = errors.New("chlog: spool_dir is in use by another process")

// spoolLockName is the lock file in the spool directory. A process that
// opens a spool takes an exclusive flock on it and keeps it until the spool
// is closed or the process exits (the kernel drops it then, also after
// kill -9). Writers of the same process share it (counted), so a relay
// restarted in-process (tests, embedders) is not locked out by itself.
const spoolLockName = ".lock"

var spoolLocks struct {
	sync.Mutex
	held map[string]*heldLock // by absolute dir
}

type heldLock struct {
	f     *os.File
	users int
	// parentDev is the device of the spool_dir's parent when the lock was
	// taken: remakeSpoolDir makes the directory again only there.
	parentDev uint64
	hasDev    bool
}

// lockSpoolDir takes the process's lock on dir, or returns ErrSpoolInUse
// naming the holder's pid. Each successful call needs one unlockSpoolDir.
func lockSpoolDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("chlog: spool_dir=%s: %w", dir, err)
	}
	spoolLocks.Lock()
	defer spoolLocks.Unlock()
	if h := spoolLocks.held[abs]; h != nil {
		if _, err := os.Stat(filepath.Join(abs, spoolLockName)); err == nil {
			h.users++
			return nil
		}
		// The directory was removed and made again: lock the new one.
		_ = h.f.Close()
		delete(spoolLocks.held, abs)
	}
	f, err := takeLockFile(abs, dir)
	if err != nil {
		return err
	}
	if spoolLocks.held == nil {
		spoolLocks.held = map[string]*heldLock{}
	}
	h := &heldLock{f: f, users: 1}
	h.parentDev, h.hasDev = deviceOf(filepath.Dir(abs))
	spoolLocks.held[abs] = h
	return nil
}

// deviceOf returns the device of the file system path is on.
func deviceOf(path string) (uint64, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, false
	}
	return uint64(st.Dev), true //nolint:unconvert // Dev is uint32 on some platforms
}

// errSpoolDirGone: the spool_dir was removed under the running relay and
// cannot be made again where it was.
var errSpoolDirGone = errors.New("chlog: spool_dir was removed")

// remakeSpoolDir makes dir, a spool_dir this process holds the lock of,
// again after it was removed under the running relay (an operator's
// rm -rf), and takes the lock of the new directory: else every later block
// was dropped until a restart, and a second relay could open the same
// directory. Only the directory itself is made, and only where its parent
// is still on the file system it was on: a spool_dir on a mount that went
// away (its parent now the empty mount point on the root file system) is
// not made again there.
func remakeSpoolDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	spoolLocks.Lock()
	defer spoolLocks.Unlock()
	h := spoolLocks.held[abs]
	if h == nil {
		return fmt.Errorf("%w: %s", errSpoolDirGone, dir)
	}
	if held, err := h.f.Stat(); err == nil {
		if now, err := os.Stat(filepath.Join(abs, spoolLockName)); err == nil && os.SameFile(held, now) {
			return nil // made again and locked by another of this writer's goroutines
		}
	}
	dev, ok := deviceOf(filepath.Dir(abs))
	switch {
	case !ok:
		return fmt.Errorf("%w: %s, and its parent %s too: not made again (make the parent, and the relay makes the spool_dir in it)", errSpoolDirGone, dir, filepath.Dir(abs))
	case !h.hasDev || dev != h.parentDev:
		return fmt.Errorf("%w: %s, and its parent is no longer on the file system it was on (unmounted?): not made again", errSpoolDirGone, dir)
	}
	if err := os.Mkdir(abs, spoolDirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %s: %w", errSpoolDirGone, dir, err)
	}
	f, err := takeLockFile(abs, dir)
	if err != nil {
		return err
	}
	_ = h.f.Close()
	h.f = f
	return nil
}

// unlockSpoolDir ends one use of the lock on dir; the last one releases it.
func unlockSpoolDir(dir string) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return
	}
	spoolLocks.Lock()
	defer spoolLocks.Unlock()
	h := spoolLocks.held[abs]
	if h == nil {
		return
	}
	if h.users--; h.users <= 0 {
		_ = h.f.Close() // closing the descriptor drops the flock
		delete(spoolLocks.held, abs)
	}
}

// takeLockFile opens the lock file in abs (the spool_dir dir, absolute) and
// takes its exclusive flock for this process, writing the pid into it; it
// returns ErrSpoolInUse naming the holder's pid when another process has it.
func takeLockFile(abs, dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(abs, spoolLockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("chlog: spool_dir=%s: lock: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(f.Name())
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := ""
			if pid := strings.TrimSpace(string(holder)); pid != "" {
				who = " by pid " + pid
			}
			return nil, fmt.Errorf("%w: spool_dir=%s (lock file %s held%s; stop that relay first)", ErrSpoolInUse, dir, spoolLockName, who)
		}
		return nil, fmt.Errorf("chlog: spool_dir=%s: lock: %w", dir, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}
