package chlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Spool files hold raw (uncompressed) Native blocks, back to back, so
//
//	clickhouse-client --query "INSERT INTO relay.stream_logs FORMAT Native" < FILE
//
// loads one. The name carries what the replayer and the cap need without
// opening the file:
//
//	<seq, 20 digits>-<rows>-<k|u>-<first request_id>-<last request_id>.native
//
// "u" marks a block whose earlier insert has an unknown outcome (a timeout,
// or a WAL recovered after a crash): the replayer checks ClickHouse for its
// first and last request_id before sending it. Files are written under a
// ".tmp" name, fsync'd, renamed and the directory fsync'd.
//
// A spool file that holds only insertedMark is one whose rows are in
// ClickHouse: the replayer overwrites a file it inserted but cannot delete
// (a directory that went read-only or append-only) with the mark, so that
// no restart sends it again. Opening the spool deletes such files where it
// can and never queues them. (An empty file is not taken for one: nothing
// says its rows were stored, and it is rejected as damaged.)
const spoolExt = ".native"

type spoolFile struct {
	name      string
	seq       uint64
	rows      int
	unknown   bool
	first     string
	last      string
	sizeBytes int64
}

func parseSpoolName(name string) (spoolFile, bool) {
	if !strings.HasSuffix(name, spoolExt) {
		return spoolFile{}, false
	}
	p := strings.Split(strings.TrimSuffix(name, spoolExt), "-")
	if len(p) != 5 || (p[2] != "k" && p[2] != "u") {
		return spoolFile{}, false
	}
	seq, err1 := strconv.ParseUint(p[0], 10, 64)
	rows, err2 := strconv.Atoi(p[1])
	if err1 != nil || err2 != nil {
		return spoolFile{}, false
	}
	return spoolFile{name: name, seq: seq, rows: rows, unknown: p[2] == "u", first: p[3], last: p[4]}, true
}

// meta is the block meta the file's name gives: its seq, rows, first and
// last request id (as the name carries them).
func (f spoolFile) meta() blockMeta {
	m := blockMeta{seq: f.seq, rows: f.rows}
	copy(m.first[:], f.first)
	copy(m.last[:], f.last)
	return m
}

func spoolName(seq uint64, rows int, unknown bool, first, last []byte) string {
	flag := "k"
	if unknown {
		flag = "u"
	}
	return fmt.Sprintf("%020d-%d-%s-%s-%s%s", seq, rows, flag, quoteID(first), quoteID(last), spoolExt)
}

// spool is the directory of spooled blocks with its size accounting.
type spool struct {
	dir      string
	maxBytes int64
	w        *Writer // for logging and counters

	unlockOnce sync.Once

	mu    sync.Mutex
	files []spoolFile // oldest first
	bytes int64
	// emptied are files inserted and emptied but not deleted (empty):
	// still on disk under their names, so their seqs are taken.
	emptied  []spoolFile
	inFlight map[string]bool // being replayed: the cap must not delete them
	// dirInfo is spool_dir as last seen (checkDirLocked): a directory
	// removed, or removed and made again, under the running relay takes
	// the queued files with it.
	dirInfo os.FileInfo
}

func openSpool(w *Writer, dir string, maxBytes int64) (*spool, error) {
	if err := os.MkdirAll(dir, spoolDirMode); err != nil {
		return nil, fmt.Errorf("chlog: spool_dir=%s: %w", dir, err)
	}
	if err := lockSpoolDir(dir); err != nil {
		return nil, err
	}
	s := &spool{dir: dir, maxBytes: maxBytes, w: w, inFlight: map[string]bool{}}
	ents, err := os.ReadDir(dir)
	if err != nil {
		s.unlock()
		return nil, fmt.Errorf("chlog: spool_dir=%s: %w", dir, err)
	}
	for _, e := range ents {
		if ownTemp(e.Name()) {
			_ = os.Remove(filepath.Join(dir, e.Name())) // never renamed: its block went elsewhere or is in the WAL
			continue
		}
		if !strings.HasSuffix(e.Name(), spoolExt) || e.IsDir() || special(dir, e) {
			continue // rejected/, wal/, the lock, an operator's notes
		}
		f, ok := parseSpoolName(e.Name())
		if !ok {
			// Never written by the relay under this name: its rows cannot be
			// placed in the queue or checked against the name.
			s.rejectFile(e.Name(), -1, "file name is not a spool name (<seq>-<rows>-<k|u>-<first id>-<last id>.native)")
			continue
		}
		if info, err := e.Info(); err == nil {
			f.sizeBytes = info.Size()
			if inserted(filepath.Join(dir, f.name), f.sizeBytes) {
				s.dropEmptied(f)
				continue
			}
		}
		s.files = append(s.files, f)
		s.bytes += f.sizeBytes
	}
	slices.SortFunc(s.files, func(a, b spoolFile) int { return strings.Compare(a.name, b.name) })
	s.recoverJournal() // spool_journal.go
	s.dirInfo, _ = os.Stat(dir)
	s.measureDisk()
	s.publish()
	if len(s.files) > 0 {
		w.log.Info("chlog: spool holds blocks from before", "dir", dir, "files", len(s.files), "bytes", s.bytes)
	}
	return s, nil
}

// unlock releases this spool's share of the directory lock, once: when the
// writer is done with the spool (the replayer's exit, after the flusher's
// and spooler's last writes; the end of ReplaySpool).
func (s *spool) unlock() {
	s.unlockOnce.Do(func() { unlockSpoolDir(s.dir) })
}

// dropEmptied deletes an emptied file found when the spool opens (its rows
// are in ClickHouse), or remembers it when the delete fails.
func (s *spool) dropEmptied(f spoolFile) {
	err := os.Remove(filepath.Join(s.dir, f.name))
	if err == nil || errors.Is(err, os.ErrNotExist) {
		return
	}
	s.emptied = append(s.emptied, f)
	s.w.log.Warn("chlog: spool: cannot delete an emptied spool file (its rows were inserted); not sent", "file", f.name, "err", err)
}

// maxSeq returns the largest sequence number in the spool, emptied files'
// included, 0 when there is none.
func (s *spool) maxSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var m uint64
	for _, f := range s.emptied {
		m = max(m, f.seq)
	}
	if len(s.files) > 0 {
		m = max(m, s.files[len(s.files)-1].seq)
	}
	return m
}

// has reports whether a spool file, emptied or not, is named for seq.
func (s *spool) has(seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fs := range [2][]spoolFile{s.files, s.emptied} {
		for _, f := range fs {
			if f.seq == seq {
				return true
			}
		}
	}
	return false
}

// holdsRows reports whether one spool file holds every one of ids (raw
// request ids, a WAL segment's) in its request_id column, whatever the
// sequence number it is named for: a file of several blocks is named for
// the first block it took, which can be newer than blocks gathered behind
// it (a block cut at a tick, then older ones waiting to be sent). The file
// named for seq is read first. Neither a file of the same sequence number
// (another relay's copied in, a start within the same nanoseconds) nor one
// whose bytes hold an id elsewhere (a captured body quoting it) counts: only
// the column does. It reads files: for WAL recovery only.
func (s *spool) holdsRows(seq uint64, ids [][]byte) bool {
	if len(ids) == 0 {
		return false
	}
	s.mu.Lock()
	names := make([]string, 0, len(s.files))
	for _, f := range s.files {
		if f.seq != seq {
			names = append(names, f.name)
		} else {
			names = append([]string{f.name}, names...)
		}
	}
	s.mu.Unlock()
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil || !bytes.Contains(data, ids[0]) {
			continue
		}
		_, have, _, _, err := decodeForCheck(data)
		if err != nil {
			continue
		}
		held := make(map[string]bool, len(have))
		for _, id := range have {
			held[id] = true
		}
		all := true
		for _, id := range ids {
			if !held[quoteID(id)] {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// hasEmptied reports whether an emptied file (inserted, then overwritten
// with insertedMark) is named for seq.
func (s *spool) hasEmptied(seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.emptied {
		if f.seq == seq {
			return true
		}
	}
	return false
}

// put writes one encoded block durably and then enforces the size cap.
func (s *spool) put(seq uint64, rows int, unknown bool, first, last []byte, native []byte) error {
	name := spoolName(seq, rows, unknown, first, last)
	if err := s.writeDurable(name, native); err != nil {
		return fmt.Errorf("chlog: spool %s: %w", name, err)
	}
	s.added(name, int64(len(native)), rows)
	return nil
}

// putWritten commits t, a file written as it was encoded (spoolGroup),
// with rest (what t.write left) appended, as one spool file, and then
// enforces the size cap.
func (s *spool) putWritten(t *spoolTemp, rest []byte, seq uint64, rows int, first, last []byte) error {
	name := spoolName(seq, rows, false, first, last)
	size := t.size(rest)
	err := s.roomFor(len(rest), func() error { return t.appendTail(rest) })
	if err == nil {
		err = t.commit(nil, name)
	} else {
		t.abort()
	}
	if err != nil {
		return fmt.Errorf("chlog: spool %s: %w", name, err)
	}
	s.added(name, size, rows)
	return nil
}

// added queues a spool file just made durable and enforces the size cap.
func (s *spool) added(name string, size int64, rows int) {
	f, _ := parseSpoolName(name)
	f.sizeBytes = size
	s.mu.Lock()
	i, _ := slices.BinarySearchFunc(s.files, f, func(a, b spoolFile) int { return strings.Compare(a.name, b.name) })
	s.files = slices.Insert(s.files, i, f)
	s.bytes += f.sizeBytes
	s.mu.Unlock()
	s.w.stats.rowsSpooled.Add(int64(rows))
	// In embedded mode (no ClickHouse) the spool is the sink: routine, not a warning.
	level := slog.LevelWarn
	if s.w.ch == nil {
		level = slog.LevelDebug
	}
	s.w.log.Log(context.Background(), level, "chlog: spooled block", "file", name, "rows", rows, "bytes", size)
	s.enforceCap()
}

// enforceCap deletes the oldest files while the spool is over
// spool_max_bytes, or while the file system holding it has less than a
// reserve for the next file left (diskShortLocked), counting and logging
// the rows lost: a filling disk caps the spool as spool_max_bytes does.
func (s *spool) enforceCap() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropOldestLocked(func() bool { return s.bytes > s.maxBytes }, false)
	if short := s.diskShortLocked(); short > 0 {
		goal := s.bytes - short
		s.dropOldestLocked(func() bool { return s.bytes > goal }, true)
		s.diskShortLocked()
	}
	s.publish()
}

// dropOldestLocked deletes the oldest files not being replayed while more
// says so, counting and logging the rows lost; disk says the file system
// is full (else the spool is over spool_max_bytes). It reports whether it
// deleted any.
func (s *spool) dropOldestLocked(more func() bool, disk bool) bool {
	dropped := false
	for i := 0; more() && i < len(s.files); {
		f := s.files[i]
		if s.inFlight[f.name] {
			i++
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, f.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.w.log.Error("chlog: spool cap: delete", "file", f.name, "err", err)
			i++
			continue
		}
		s.files = slices.Delete(s.files, i, i+1)
		s.bytes -= f.sizeBytes
		dropped = true
		s.w.stats.rowsDropped.Add(int64(f.rows))
		if disk {
			s.w.log.Error("chlog: spool_dir's file system is full: dropped the oldest spool file to make room for new rows",
				"file", f.name, "rows", f.rows, "dir", s.dir)
			_ = s.w.lose(fmt.Errorf("chlog: %d rows dropped: spool_dir's file system full (file %s)", f.rows, f.name))
			continue
		}
		s.w.log.Error("chlog: spool over its cap: dropped oldest block", "file", f.name, "rows", f.rows, "spool_max_bytes", s.maxBytes)
		_ = s.w.lose(fmt.Errorf("chlog: %d rows dropped: spool over spool_max_bytes %d (file %s)", f.rows, s.maxBytes, f.name))
	}
	return dropped
}

// measureDisk reads the room left on the spool's file system
// (diskShortLocked), for the budget's view of it.
func (s *spool) measureDisk() {
	s.mu.Lock()
	s.diskShortLocked()
	s.mu.Unlock()
}

// diskShortLocked reads the space still available on the spool's file
// system and returns how much less than the reserve kept for the next
// file that is (0 when not short, or unknown). The reserve is a group of
// blocks (the coalesce limit), or a quarter of the room the spool has there
// (its files plus the space available) on a small file system. It also
// tells the budget, with ClickHouse, the spool size from which new rows are
// captured meta only while the writer spools (three quarters of that room
// less the reserve; none when statfs fails). Read under s.mu, so that a
// file deleted (done, the cap) is gone from both the disk and s.bytes.
func (s *spool) diskShortLocked() int64 {
	s.checkDirLocked()
	avail := diskAvail(s.dir)
	b := s.w.budget
	if avail < 0 {
		if b != nil {
			b.diskHigh.Store(-1)
		}
		return 0
	}
	total := s.bytes + avail
	reserve := min(int64(s.w.coalesceLimit()), total/4)
	if b != nil && s.w.o.URL != "" {
		room := total - reserve
		b.diskHigh.Store(room - room/4)
	}
	return max(reserve-avail, 0)
}

// checkDirLocked looks whether spool_dir is still the directory last seen:
// when it was removed (an operator's rm -rf), or removed and made again
// (createSpoolTemp remakes it), the queued files that are gone are dropped
// from the queue, counted and logged; the spool's gauges said they were
// there until a replay reached them, which with ClickHouse down never
// came. Two stats a call (the directory, the oldest queued file) while the
// directory stays.
func (s *spool) checkDirLocked() {
	now, err := os.Stat(s.dir)
	if err == nil && now.IsDir() && s.dirInfo != nil && os.SameFile(now, s.dirInfo) && s.oldestThereLocked() {
		return
	}
	if err == nil && now.IsDir() {
		s.dirInfo = now
	}
	gone, rows := 0, 0
	for i := 0; i < len(s.files); {
		f := s.files[i]
		if _, err := os.Stat(filepath.Join(s.dir, f.name)); s.inFlight[f.name] || !vanished(err) {
			i++
			continue
		}
		s.files = slices.Delete(s.files, i, i+1)
		s.bytes -= f.sizeBytes
		gone++
		rows += f.rows
	}
	if gone == 0 {
		return
	}
	s.w.stats.rowsDropped.Add(int64(rows))
	s.w.log.Error("chlog: spool_dir was removed under the running relay: its queued spool files went with it",
		"dir", s.dir, "files", gone, "rows", rows)
	_ = s.w.lose(fmt.Errorf("chlog: %d rows dropped: spool_dir %s removed (%d files)", rows, s.dir, gone))
	s.publish()
}

// oldestThereLocked reports whether the oldest queued file not being
// replayed is on disk (or none is queued): a directory removed and made
// again may get its inode back, as ext4 gives it, and look the same.
func (s *spool) oldestThereLocked() bool {
	for _, f := range s.files {
		if !s.inFlight[f.name] {
			_, err := os.Stat(filepath.Join(s.dir, f.name))
			return !vanished(err)
		}
	}
	return true
}

// vanished reports whether err from a stat says the file is not there: no
// such file, or spool_dir no longer a directory.
func vanished(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// roomFor runs write, which takes n more bytes on the spool's file system
// (or an inode: n 0); when that is full it makes room by deleting the
// oldest spool files (as the cap does: the newest rows are kept whole) and
// runs it again, until it succeeds, fails otherwise, or no deletion can
// make room (no file left that is not being replayed, or n more than all
// of them and the space available together: nothing is deleted then).
func (s *spool) roomFor(n int, write func() error) error {
	for {
		err := write()
		if err == nil || !diskFull(err) {
			return err
		}
		s.mu.Lock()
		var deletable int64
		for _, f := range s.files {
			if !s.inFlight[f.name] {
				deletable += f.sizeBytes
			}
		}
		freed := false
		if avail := diskAvail(s.dir); avail < 0 || int64(n) <= avail+deletable {
			goal := s.bytes - max(int64(n)-max(avail, 0), 1)
			freed = s.dropOldestLocked(func() bool { return s.bytes > goal }, true)
		}
		s.publish()
		s.mu.Unlock()
		if !freed {
			return err
		}
	}
}

// createTemp is createSpoolTemp making room on a full file system.
func (s *spool) createTemp(name string) (*spoolTemp, error) {
	var t *spoolTemp
	err := s.roomFor(0, func() error {
		var err error
		t, err = createSpoolTemp(s.dir, name)
		return err
	})
	return t, err
}

// write is t.write making room on a full file system.
func (s *spool) write(t *spoolTemp, data []byte) (int, error) {
	n := 0
	err := s.roomFor(len(data), func() error {
		var err error
		n, err = t.write(data)
		return err
	})
	return n, err
}

// writeDurable writes data durably as the spool file name (writeDurable),
// making room on a full file system (roomFor).
func (s *spool) writeDurable(name string, data []byte) error {
	t, err := s.createTemp(name)
	if err != nil {
		return err
	}
	n, err := s.write(t, data)
	if err == nil {
		err = s.roomFor(len(data)-n, func() error { return t.appendTail(data[n:]) })
	}
	if err != nil {
		t.abort()
		return err
	}
	return t.commit(nil, name)
}

// next returns the oldest file and marks it in flight, or ok=false.
func (s *spool) next() (spoolFile, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.files) == 0 {
		return spoolFile{}, false
	}
	s.inFlight[s.files[0].name] = true
	return s.files[0], true
}

// nextAfter returns the file that follows prev in the queue and marks it in
// flight, or ok=false when there is none or it waits for a presence check
// (an unknown outcome): replay gathers only files known not to be stored.
func (s *spool) nextAfter(prev spoolFile) (spoolFile, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, found := slices.BinarySearchFunc(s.files, prev, func(a, b spoolFile) int { return strings.Compare(a.name, b.name) })
	if found {
		i++
	}
	if i >= len(s.files) || s.files[i].unknown {
		return spoolFile{}, false
	}
	s.inFlight[s.files[i].name] = true
	return s.files[i], true
}

// done ends the replay of f; remove deletes it (after a successful insert).
func (s *spool) done(f spoolFile, remove bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inFlight, f.name)
	if !remove {
		return nil
	}
	if err := os.Remove(filepath.Join(s.dir, f.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	_ = syncDir(s.dir)
	if i := slices.IndexFunc(s.files, func(g spoolFile) bool { return g.name == f.name }); i >= 0 {
		s.bytes -= s.files[i].sizeBytes
		s.files = slices.Delete(s.files, i, i+1)
	}
	s.publish()
	return nil
}

// ownTemp reports whether name is one of the spool's temporary files (a
// spool file or the replay journal being written): a crash can leave them,
// and opening the spool deletes them. An operator's own "*.tmp" is left
// alone, as every file that is not the spool's.
func ownTemp(name string) bool {
	stem, ok := strings.CutSuffix(name, ".tmp")
	return ok && (strings.HasSuffix(stem, spoolExt) || stem == replayJournalName)
}

func (s *spool) publish() {
	s.w.stats.spoolFiles.Store(int64(len(s.files)))
	s.w.stats.spoolBytes.Store(s.bytes)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// markUnknown renames f to carry the "u" flag, so that its next replay first
// checks ClickHouse for its rows, and returns it as renamed (f itself when
// it is no longer queued or the rename failed).
func (s *spool) markUnknown(f spoolFile) spoolFile {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.files, func(g spoolFile) bool { return g.name == f.name })
	if i < 0 {
		return f
	}
	name := spoolName(f.seq, f.rows, true, []byte(f.first), []byte(f.last))
	if err := os.Rename(filepath.Join(s.dir, f.name), filepath.Join(s.dir, name)); err != nil {
		s.w.log.Error("chlog: spool: mark outcome unknown", "file", f.name, "err", err)
		return f
	}
	_ = syncDir(s.dir)
	s.files[i].name, s.files[i].unknown = name, true
	if s.inFlight[f.name] {
		delete(s.inFlight, f.name)
		s.inFlight[name] = true
	}
	return s.files[i]
}

// rejectedDir is the subdirectory of the spool for blocks that can never be
// inserted as they are: FILE.native with FILE.error.txt (why) beside it.
// Nothing there is sent, counted against spool_max_bytes or deleted by the
// relay; `relay spool ls` lists them and `relay spool replay --rejected`
// tries them again.
const rejectedDir = "rejected"

// errorFileName is the name of the reason file beside a rejected file (a
// spool file, or a copy of a damaged WAL segment: copyToRejected).
func errorFileName(name string) string {
	base, ok := strings.CutSuffix(name, spoolExt)
	if !ok {
		base = strings.TrimSuffix(name, walExt)
	}
	return base + ".error.txt"
}

// reject moves the queued file f to rejected/ with reason beside it,
// counts its rows as rejected and logs it once.
func (s *spool) reject(f spoolFile, reason string) error {
	if err := s.moveToRejected(f.name, reason); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.inFlight, f.name)
	if i := slices.IndexFunc(s.files, func(g spoolFile) bool { return g.name == f.name }); i >= 0 {
		s.bytes -= s.files[i].sizeBytes
		s.files = slices.Delete(s.files, i, i+1)
	}
	s.publish()
	s.mu.Unlock()
	s.rejected(f.name, f.rows, reason)
	return nil
}

// rejectFile moves a file that never entered the queue (its name is no
// spool name) to rejected/. rows < 0: count them from the content if it
// decodes, else 0.
func (s *spool) rejectFile(name string, rows int, reason string) {
	if rows < 0 {
		rows = 0
		if data, err := os.ReadFile(filepath.Join(s.dir, name)); err == nil {
			if n, _, _, err := countRows(data); err == nil {
				rows = n
			}
		}
	}
	if err := s.moveToRejected(name, reason); err != nil {
		s.w.log.Error("chlog: spool: cannot move a bad file aside; it stays and is ignored", "file", name, "reason", reason, "err", err)
		return
	}
	s.rejected(name, rows, reason)
}

func (s *spool) rejected(name string, rows int, reason string) {
	s.w.stats.rowsRejected.Add(int64(rows))
	s.w.log.Error("chlog: spool file rejected: it can never be inserted as it is; moved aside, the queue goes on",
		"file", name, "rows", rows, "reason", reason, "moved_to", filepath.Join(s.dir, rejectedDir))
}

// moveToRejected writes the reason file, then renames name into rejected/.
func (s *spool) moveToRejected(name, reason string) error {
	rdir, err := s.writeReason(name, reason)
	if err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(s.dir, name), filepath.Join(rdir, name)); err != nil {
		_ = os.Remove(filepath.Join(rdir, errorFileName(name)))
		return fmt.Errorf("chlog: spool: move %s aside: %w", name, err)
	}
	_ = syncDir(rdir)
	return syncDir(s.dir)
}

// copyToRejected writes data as rejected/name, durably, with the reason
// file beside it, and returns the copy's path. It is for a damaged WAL
// segment: its whole rows leave through the spool while its bytes stay for
// the operator (the segment itself is deleted after).
func (s *spool) copyToRejected(name string, data []byte, reason string) (string, error) {
	rdir, err := s.writeReason(name, reason)
	if err != nil {
		return "", err
	}
	if err := writeDurable(rdir, name, data); err != nil {
		_ = os.Remove(filepath.Join(rdir, errorFileName(name)))
		return "", fmt.Errorf("chlog: spool: copy %s aside: %w", name, err)
	}
	return filepath.Join(rdir, name), nil
}

// writeReason creates rejected/ and writes the reason file of name there;
// it returns rejected/'s path.
func (s *spool) writeReason(name, reason string) (string, error) {
	rdir := filepath.Join(s.dir, rejectedDir)
	if err := os.MkdirAll(rdir, spoolDirMode); err != nil {
		return "", fmt.Errorf("chlog: spool: %w", err)
	}
	if err := writeDurable(rdir, errorFileName(name), []byte(strings.TrimSpace(reason)+"\n")); err != nil {
		return "", fmt.Errorf("chlog: spool: write reason for %s: %w", name, err)
	}
	return rdir, nil
}

// restore moves a rejected file back into the queue (relay spool replay
// --rejected) and deletes its reason file. The name must parse.
func (s *spool) restore(name string) (spoolFile, error) {
	f, ok := parseSpoolName(name)
	if !ok {
		return spoolFile{}, fmt.Errorf("chlog: spool: %s: not a spool name", name)
	}
	rdir := filepath.Join(s.dir, rejectedDir)
	if err := os.Rename(filepath.Join(rdir, name), filepath.Join(s.dir, name)); err != nil {
		return spoolFile{}, fmt.Errorf("chlog: spool: move %s back: %w", name, err)
	}
	_ = os.Remove(filepath.Join(rdir, errorFileName(name)))
	_ = syncDir(rdir)
	_ = syncDir(s.dir)
	if info, err := os.Stat(filepath.Join(s.dir, name)); err == nil {
		f.sizeBytes = info.Size()
	}
	s.mu.Lock()
	i, found := slices.BinarySearchFunc(s.files, f, func(a, b spoolFile) int { return strings.Compare(a.name, b.name) })
	if !found {
		s.files = slices.Insert(s.files, i, f)
		s.bytes += f.sizeBytes
	}
	s.publish()
	s.mu.Unlock()
	return f, nil
}

// forget drops f from the queue without touching the disk: its file
// vanished (an operator, or `relay spool replay` of another process).
// insertedMark is all a spool file holds once the replayer emptied it
// after its insert (spool.empty).
const insertedMark = "stream-relay: inserted into ClickHouse; never sent again\n"

// inserted reports whether the file at path, of size bytes, holds only
// insertedMark.
func inserted(path string, size int64) bool {
	if size != int64(len(insertedMark)) {
		return false
	}
	b, err := os.ReadFile(path)
	return err == nil && string(b) == insertedMark
}

// empty overwrites f, whose rows were inserted but which could not be
// deleted, with insertedMark and drops it from the queue: such a file is
// never sent again, by this process or after a restart. It fails where
// the file cannot be written either (the caller then falls back on
// markUnknown). A crash within leaves the file empty or cut: rejected at
// the next start as damaged, not sent.
func (s *spool) empty(f spoolFile) error {
	fd, err := os.OpenFile(filepath.Join(s.dir, f.name), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = fd.WriteString(insertedMark)
	if err == nil {
		err = fd.Sync()
	}
	if cerr := fd.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	s.forget(f)
	s.mu.Lock()
	s.emptied = append(s.emptied, f)
	s.mu.Unlock()
	return nil
}

func (s *spool) forget(f spoolFile) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inFlight, f.name)
	if i := slices.IndexFunc(s.files, func(g spoolFile) bool { return g.name == f.name }); i >= 0 {
		s.bytes -= s.files[i].sizeBytes
		s.files = slices.Delete(s.files, i, i+1)
	}
	s.publish()
}
