package chlog

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stream-relay/stream-relay/internal/ratelog"
	"github.com/stream-relay/stream-relay/record"
)

// The write-ahead log of durability "wal".
//
// Each block has a sequence number and its own WAL segment,
// <SpoolDir>/wal/<seq>.wal, holding exactly the block's rows: rows join the
// block and the segment under the same lock, and a new block starts a new
// segment. A segment is a run of records
//
//	[4 bytes LE payload length][4 bytes LE CRC-32 (IEEE) of payload][32 bytes request_id][payload]
//
// where the payload is that row as a one-row raw Native block, so the
// payloads concatenated are a valid Native stream. Write returns only after a
// background fsync covers its row (grouped: one fsync for all rows that
// arrived meanwhile).
//
// A failed write or fsync is never taken for durable: wait returns its error
// to every row the failed round covered (all of them, even those of another
// segment that did sync: counted once in WALErrors, logged once). The
// segment is cut back to the bytes that last synced and reopened, so later
// records follow whole ones (recovery cuts a torn last record); when
// even that fails the segment takes no more rows: the rest of its block is
// reported not durable.
//
// Exactly once, step by step:
//  1. the block is inserted, or written to the spool (fsync'd, renamed);
//  2. only then is its segment deleted.
//
// A crash between 1 and 2 leaves both. At the next New a leftover segment is
// dropped when a spool file with the same sequence number exists (step 1 was
// the spool); otherwise its rows become a spool file flagged "u", whose
// replay first asks ClickHouse which of the block's request_ids it has
// (present.go) and sends only the others (step 1 was an insert, perhaps in
// part). A torn last record (a length past the end) is a row whose Write
// never returned successfully; it is cut. A record the disk damaged later
// (its payload fails its CRC) is skipped and the records after it are
// recovered; a length that cannot be trusted ends the segment's recovery
// there. Either way the segment is copied to spool_dir/rejected/ and its
// unread records are counted in RowsRejected (walscan.go).
type wal struct {
	dir string
	w   *Writer

	// Guarded by Writer.mu.
	rows    lastRows // encodes a block's last row (walrow.go)
	buf     []byte   // records of the current segment not yet written
	spare   []byte
	curSeq  uint64
	final   []walJob // segments whose block was cut: write the tail, close
	deletes []uint64 // segments whose block is safe
	// unlogged counts, per segment, the rows whose write into it failed:
	// the segment does not keep them, so a block that cannot be spooled
	// either loses them (Writer.spooled). An entry goes with the segment.
	unlogged map[uint64]int
	appended uint64 // rows appended (tickets)

	// Owned by the fsync goroutine.
	file      *os.File
	fileSeq   uint64
	fileSize  int64  // bytes of file known synced
	brokenSeq uint64 // segment that could not be cut back after a failure
	lastSync  uint64 // tickets up to this were handled by a sync round

	smu    sync.Mutex
	cond   *sync.Cond
	synced uint64
	failed []walFailure // rounds whose write or fsync failed, oldest first

	failLog ratelog.Every // spaces the lines of failed sync rounds

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

type walJob struct {
	seq  uint64
	data []byte
}

// walFailure is a sync round that failed: tickets lo+1..hi are not durable.
// left counts the waits still to come; the entry goes when it reaches 0.
type walFailure struct {
	lo, hi, left uint64
	err          error
}

// maxWALFailures bounds the failure list should some ticket never be waited
// for; past it the two oldest entries merge, which can only report more
// rows as not durable, never fewer.
const maxWALFailures = 256

// walFailLogEvery spaces the log lines of failed WAL sync rounds.
const walFailLogEvery = 10 * time.Second

// walFsync syncs a segment file; tests replace it to make fsync fail.
var walFsync = (*os.File).Sync

const walExt = ".wal"

// walDir is the WAL's subdirectory of the spool directory.
const walDir = "wal"

// walHeader is length, CRC and request id.
const walHeader = 4 + 4 + record.IDLen

// openWAL creates the WAL directory and turns leftover segments into spool
// files (or drops them when their block was spooled already).
func openWAL(w *Writer) (*wal, error) {
	l := &wal{
		dir:  filepath.Join(w.o.SpoolDir, walDir),
		w:    w,
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	l.cond = sync.NewCond(&l.smu)
	if err := os.MkdirAll(l.dir, spoolDirMode); err != nil {
		return nil, fmt.Errorf("chlog: spool_dir=%s: wal: %w", w.o.SpoolDir, err)
	}
	if err := l.recoverAll(); err != nil {
		return nil, err
	}
	return l, nil
}

// recoverWAL turns the segments a WAL left in the spool directory (a relay
// that ran with durability wal and stopped or crashed) into spool files
// when the writer keeps no WAL itself: a start with durability batch left
// them unread for good, and relay spool replay (ReplaySpool) sends them
// with the rest.
func recoverWAL(w *Writer) error {
	l := &wal{dir: filepath.Join(w.o.SpoolDir, walDir), w: w}
	return l.recoverAll()
}

// recoverAll moves every segment in l.dir into the spool, oldest first, and
// the writer's sequence numbers past theirs. A missing directory has none.
func (l *wal) recoverAll() error {
	segs, err := walSegments(l.dir)
	if err != nil {
		return fmt.Errorf("chlog: spool_dir=%s: wal: %w", l.w.o.SpoolDir, err)
	}
	for _, s := range segs {
		l.w.seq = max(l.w.seq, s.seq)
		err := l.recover(s.seq, filepath.Join(l.dir, s.name))
		if noSpace(err) {
			// A full disk would keep the relay from starting at all (and
			// from serving) until an operator freed it. The segment
			// stays where it is, whole, for the next start or relay
			// spool replay; rows of this run meet the full disk as they
			// would have anyway (counted).
			l.w.log.Error("chlog: wal: no space to recover a segment into the spool; it stays in wal/ for the next start or relay spool replay",
				"seq", s.seq, "err", err)
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// noSpace reports whether err says the disk (or the user's quota) is full.
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// walSegment is a segment file of the WAL directory.
type walSegment struct {
	seq  uint64
	name string
}

// walSegments lists the segments in dir, oldest first; none when dir is
// missing. Segments are named <seq, 20 digits>.wal; one renamed by hand
// (its number without the zeros, say) is listed under its own name:
// looked for under the relay's, it failed the start.
func walSegments(dir string) ([]walSegment, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var segs []walSegment
	for _, e := range ents {
		if seq, ok := walSegmentSeq(e.Name()); ok && !e.IsDir() && !special(dir, e) {
			segs = append(segs, walSegment{seq, e.Name()})
		}
	}
	slices.SortFunc(segs, func(a, b walSegment) int { return cmp.Or(cmp.Compare(a.seq, b.seq), strings.Compare(a.name, b.name)) })
	return segs, nil
}

// walSegmentSeq returns the sequence number of a WAL segment's file name.
func walSegmentSeq(name string) (uint64, bool) {
	stem, ok := strings.CutSuffix(name, walExt)
	if !ok {
		return 0, false
	}
	seq, err := strconv.ParseUint(stem, 10, 64)
	return seq, err == nil
}

func (l *wal) segPath(seq uint64) string {
	return filepath.Join(l.dir, fmt.Sprintf("%020d%s", seq, walExt))
}

// recover moves one leftover segment, the file at path, into the spool.
func (l *wal) recover(seq uint64, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("chlog: wal: %w", err)
	}
	var native []byte
	var first, last []byte
	var ids [][]byte
	rows := 0
	scan := walRecords(data, func(id, payload []byte) bool {
		if first == nil {
			first = id
		}
		last = id
		ids = append(ids, id)
		native = append(native, payload...)
		rows++
		return true
	})
	if l.w.spool.holdsRows(seq, ids) {
		// Spooled before the crash (under its own sequence number or,
		// by group commit, in a file named for another block's; or by a
		// recovery that had spooled it, and set its damage aside, when
		// the crash came): the spool file's request_id column holds
		// every row the segment still has.
		l.w.log.Info("chlog: wal: segment's rows were spooled before the crash; dropping segment", "seq", seq, "rows", rows)
		return removeSynced(l.dir, path)
	}
	if rows > 0 && l.w.spool.hasEmptied(seq) {
		// Inserted, its file emptied, before the crash, most likely:
		// spooled again as unknown, the replay's presence check sends
		// none of what is stored.
		l.w.log.Info("chlog: wal: segment's block may have been inserted before the crash; spooled to be checked", "seq", seq, "rows", rows)
	}
	if scan.torn {
		l.w.log.Warn("chlog: wal: torn record at the end of a segment cut", "seq", seq)
	}
	if scan.damaged() {
		// Before the rows are spooled: once the spool holds them, a
		// restart drops the segment (holdsRows above).
		if err := l.setAside(seq, data, scan, rows); err != nil {
			return err
		}
	}
	if rows > 0 {
		if err := l.w.spool.put(seq, rows, true, first, last, native); err != nil {
			return err
		}
		l.w.log.Info("chlog: wal: recovered rows from before a crash into the spool", "seq", seq, "rows", rows)
	}
	return removeSynced(l.dir, path)
}

func (l *wal) start() { go l.run() }

// appendLocked appends the WAL record of blk's last row, r's, which has
// just joined it, and returns its ticket for wait.
func (l *wal) appendLocked(r *record.Record, blk *block) uint64 {
	var err error
	l.buf, err = l.rows.appendWALRecord(l.buf, blk, r.ID[:])
	l.appended++
	if err != nil {
		l.w.stats.walErrors.Add(1)
		l.w.log.Error("chlog: BUG: wal: encode row", "err", err)
		l.smu.Lock()
		l.failLocked(l.appended-1, l.appended, fmt.Errorf("encode row: %w", err))
		l.smu.Unlock()
	}
	l.kickSync()
	return l.appended
}

// rotateLocked closes the segment of the block just cut.
func (l *wal) rotateLocked(oldSeq, newSeq uint64) {
	l.final = append(l.final, walJob{seq: oldSeq, data: l.buf})
	l.buf, l.spare = l.spare, nil
	l.curSeq = newSeq
	l.kickSync()
}

// releaseLocked deletes the segment of a block that is inserted or spooled.
func (l *wal) releaseLocked(seq uint64) {
	l.deletes = append(l.deletes, seq)
	delete(l.unlogged, seq)
	l.kickSync()
}

func (l *wal) kickSync() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// wait blocks until the sync round covering ticket is done and returns its
// error when it failed: the row is then not durable.
func (l *wal) wait(ticket uint64) error {
	l.smu.Lock()
	defer l.smu.Unlock()
	for l.synced < ticket {
		l.cond.Wait()
	}
	for i := range l.failed {
		f := &l.failed[i]
		if ticket <= f.lo || ticket > f.hi {
			continue
		}
		err := f.err
		if f.left--; f.left == 0 {
			l.failed = append(l.failed[:i], l.failed[i+1:]...)
		}
		return fmt.Errorf("chlog: wal: row not durable: %w", err)
	}
	return nil
}

// settle waits until every row appended so far has had its sync round,
// done or failed: a block cut and spooled before its segment's last rows
// were written learns then whether the segment keeps them. Not after
// close.
func (l *wal) settle() {
	l.w.mu.Lock()
	t := l.appended
	l.w.mu.Unlock()
	l.kickSync()
	l.smu.Lock()
	for l.synced < t {
		l.cond.Wait()
	}
	l.smu.Unlock()
}

// unloggedLocked returns how many rows of the blocks of seqs their
// segments do not keep (their write failed). The caller holds Writer.mu.
func (l *wal) unloggedLocked(seqs []uint64) int {
	n := 0
	for _, seq := range seqs {
		n += l.unlogged[seq]
	}
	return n
}

// walRowCount counts the records of a segment's bytes.
func walRowCount(data []byte) int {
	n := 0
	walRecords(data, func(_, _ []byte) bool { n++; return true })
	return n
}

// failLocked records that tickets lo+1..hi failed. Guarded by smu.
func (l *wal) failLocked(lo, hi uint64, err error) {
	if hi <= lo {
		return
	}
	if len(l.failed) >= maxWALFailures {
		a, b := l.failed[0], l.failed[1]
		l.failed[1] = walFailure{lo: a.lo, hi: b.hi, left: a.left + b.left + (b.lo - a.hi), err: b.err}
		l.failed = l.failed[1:]
	}
	l.failed = append(l.failed, walFailure{lo: lo, hi: hi, left: hi - lo, err: err})
}

func (l *wal) close() {
	close(l.stop)
	<-l.done
}

func (l *wal) run() {
	defer close(l.done)
	for {
		select {
		case <-l.kick:
			l.syncOnce()
		case <-l.stop:
			l.syncOnce()
			if l.file != nil {
				_ = l.file.Close()
			}
			return
		}
	}
}

// syncOnce writes and fsyncs everything appended so far, wakes the writers it
// covers, then deletes released segments. Segments are closed before they
// are deleted because a block's final job is queued (at its cut) before its
// release.
func (l *wal) syncOnce() {
	w := l.w
	w.mu.Lock()
	finals, data, seq, ticket, dels := l.final, l.buf, l.curSeq, l.appended, l.deletes
	l.final, l.deletes = nil, nil
	l.buf, l.spare = l.spare[:0], nil
	w.mu.Unlock()

	var err error
	var lost []walJob // the jobs whose rows the segments do not keep
	for _, j := range finals {
		if e := l.writeSeg(j.seq, j.data, true); e != nil {
			err = errors.Join(err, e)
			lost = append(lost, j)
		}
	}
	if len(data) > 0 {
		if e := l.writeSeg(seq, data, false); e != nil {
			err = errors.Join(err, e)
			lost = append(lost, walJob{seq: seq, data: data})
		}
	}
	if err != nil {
		w.stats.walErrors.Add(1)
		// A full or failing disk fails every round (one a row at low
		// concurrency): a line every 10 s at most, counting the others
		// (relay_storage_wal_errors_total counts each).
		if ok, more := l.failLog.Allow(walFailLogEvery); ok {
			w.log.Error("chlog: wal write or fsync failed: the rows it covered are not durable", "rows", ticket-l.lastSync,
				"err", err, "failures_not_logged", more)
		}
	}
	if len(lost) > 0 {
		// Before the rows' writers wake: a block spooled right after must
		// find them counted.
		w.mu.Lock()
		for _, j := range lost {
			// A segment released meanwhile (its block inserted) is gone.
			if !slices.Contains(dels, j.seq) && !slices.Contains(l.deletes, j.seq) {
				if l.unlogged == nil {
					l.unlogged = map[uint64]int{}
				}
				l.unlogged[j.seq] += walRowCount(j.data)
			}
		}
		w.mu.Unlock()
	}
	l.smu.Lock()
	if err != nil {
		l.failLocked(l.lastSync, ticket, err)
	}
	l.synced = ticket
	l.cond.Broadcast()
	l.smu.Unlock()
	l.lastSync = ticket

	// The largest buffer written (within the writer's keep size) becomes
	// the next segment's: a segment's buffer then grows once, not per block.
	spare := data
	for _, j := range finals {
		if cap(j.data) > cap(spare) && cap(j.data) <= w.keep {
			spare = j.data
		}
	}
	w.mu.Lock()
	if l.spare == nil {
		l.spare = spare[:0]
	}
	w.mu.Unlock()

	for _, d := range dels {
		if err := os.Remove(l.segPath(d)); err != nil && !errors.Is(err, os.ErrNotExist) {
			w.stats.walErrors.Add(1)
			w.log.Error("chlog: wal: delete segment", "seq", d, "err", err)
		}
	}
	if len(dels) > 0 {
		_ = syncDir(l.dir)
	}
}

func (l *wal) writeSeg(seq uint64, data []byte, final bool) error {
	if l.file != nil && l.fileSeq != seq {
		_ = l.file.Close() // BUG guard: a segment left open; its data is synced
		l.file = nil
	}
	if l.brokenSeq == seq && seq != 0 {
		if final {
			l.brokenSeq = 0
		}
		if len(data) == 0 {
			return nil
		}
		return fmt.Errorf("segment %d damaged by an earlier failure; its later rows are not logged", seq)
	}
	if l.file == nil {
		if len(data) == 0 {
			return nil
		}
		f, err := os.OpenFile(l.segPath(seq), os.O_CREATE|os.O_WRONLY|os.O_APPEND, spoolFileMode)
		if errors.Is(err, fs.ErrNotExist) {
			// The directory was removed under the relay: made again, the
			// spool_dir first if it went too (remakeSpoolDir).
			if _, serr := os.Stat(filepath.Dir(l.dir)); errors.Is(serr, fs.ErrNotExist) {
				err = remakeSpoolDir(filepath.Dir(l.dir))
			} else {
				err = nil
			}
			if err == nil {
				if err = os.Mkdir(l.dir, spoolDirMode); err == nil || errors.Is(err, fs.ErrExist) {
					f, err = os.OpenFile(l.segPath(seq), os.O_CREATE|os.O_WRONLY|os.O_APPEND, spoolFileMode)
				}
			}
		}
		if err != nil {
			return err
		}
		st, err := f.Stat()
		if err == nil {
			err = syncDir(l.dir)
		}
		if err != nil {
			_ = f.Close()
			return err
		}
		l.file, l.fileSeq, l.fileSize = f, seq, st.Size()
	}
	var err error
	if len(data) > 0 {
		if _, err = l.file.Write(data); err == nil {
			err = walFsync(l.file)
		}
		if err != nil {
			// A failed write may have left part of a record, and after a
			// failed fsync nobody knows what reached the disk: cut back to
			// what last synced and reopen on the next round.
			terr := l.cutBack()
			if terr != nil {
				l.brokenSeq = seq
				err = errors.Join(err, fmt.Errorf("cut segment %d back: %w", seq, terr))
			}
			_ = l.file.Close()
			l.file = nil
			if terr == nil && l.fileSize == 0 {
				// Nothing in it: not left behind, one a failed round
				// (a full disk left a file a block until the next start).
				_ = os.Remove(l.segPath(seq))
			}
			return err
		}
		l.fileSize += int64(len(data))
	}
	if final {
		err = l.file.Close()
		l.file = nil
	}
	return err
}

// cutBack truncates the open segment to the bytes known synced.
func (l *wal) cutBack() error {
	if err := l.file.Truncate(l.fileSize); err != nil {
		return err
	}
	return walFsync(l.file)
}

func removeSynced(dir, path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("chlog: wal: %w", err)
	}
	return syncDir(dir)
}
