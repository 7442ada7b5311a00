package chlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// blockedLogEvery is how often the replayer repeats its error line while a
// schema problem holds the queue.
const blockedLogEvery = time.Minute

// replayState is the replayer's memory across passes.
type replayState struct {
	lastLoud time.Time // last error line about a blocked queue
	blocked  string    // the file the last loud line was about
	// report, when set, hears of every file the pass settled or gave up on
	// (relay spool replay prints it).
	report func(ev replayEvent)
	// singleThrough is the newest file of the last gathered insert the
	// server refused: the files up to it go one an insert, so that only
	// the one it refuses is moved aside.
	singleThrough string
	// failedPasses counts the passes in a row that ended in a failed
	// insert: the head file's earlier attempts, for the log.
	failedPasses int
}

// replayEvent is what happened to one spool file in a replay pass.
type replayEvent struct {
	file   string
	rows   int
	what   string // "inserted", "rejected", "failed", "blocked"
	reason string // why rejected, failed or blocked
}

// replayer re-sends spooled blocks oldest first whenever ClickHouse answers,
// deleting each file only after its insert succeeded. It runs until Close.
//
// Close cancels w.ctx only after the flusher and the spooler wrote their
// last blocks, so the replayer's exit is where the spool is done with: it
// releases the spool directory's lock then.
func (w *Writer) replayer() {
	defer close(w.replayDone)
	defer w.spool.unlock()
	var st replayState
	failures := 0
	wait := w.o.FlushInterval
	watched := time.Now() // columnwatch.go: the start checked the schema
	for {
		t := time.NewTimer(wait)
		// A block spooled while the last pass failed does not cut its
		// backoff short: with traffic flowing, each one woke the replayer
		// (an insert and a presence check a flush interval, for as long
		// as the server stayed unwell).
		kick := w.kickRep
		if failures > 0 {
			kick = nil
		}
		select {
		case <-w.ctx.Done():
			t.Stop()
			return
		case <-kick:
		case <-t.C:
		}
		t.Stop()
		st.failedPasses = failures
		if w.replayAll(&st) {
			failures = 0
			wait = w.o.FlushInterval
			w.watchColumns(&watched)
			continue
		}
		wait = backoff(failures + 2) // 800ms, 1.6s, ... 30s
		failures++
	}
}

// replayAll sends spool files until the spool is empty (true) or an insert
// fails (false). A file that can never be inserted as it is (it does not
// verify, or the server says its bytes are broken) is moved to rejected/
// and the pass goes on with the next one; a schema problem keeps the file
// at the head and is loud (see failSchema).
func (w *Writer) replayAll(st *replayState) bool {
	if w.schemaPending.Load() {
		ctx, cancel := context.WithTimeout(w.ctx, w.o.InsertTimeout)
		err := w.ensureSchema(ctx)
		cancel()
		if err != nil {
			// As at start (NewWriter): an answer of the server that is not
			// a passing unwellness (a user without DDL rights, a view where
			// the table should be) is the table's fault, loud and blocking,
			// not "unreachable".
			if e, isCH := AsException(err); isCH && !unwell(e) || errors.Is(err, ErrSchema) {
				w.tableBlocked(st, err)
			} else {
				w.log.Warn("chlog: ClickHouse still unreachable", "err", err)
			}
			st.emit(replayEvent{what: "failed", reason: err.Error()})
			return false
		}
		w.schemaPending.Store(false)
	}
	// The journal names the last insert's first file until the pass ends
	// (spool_journal.go): a crash between two inserts only costs checks.
	journaled := false
	defer func() {
		if journaled {
			w.spool.endJournal()
		}
	}()
	for {
		f, ok := w.spool.next()
		if !ok {
			w.down.Store(false)
			w.unblock(st)
			return true
		}
		data, err := readSpoolFile(filepath.Join(w.spool.dir, f.name))
		if errors.Is(err, os.ErrNotExist) {
			w.spool.forget(f)
			w.log.Warn("chlog: replay: spool file vanished", "file", f.name)
			continue
		}
		if transientRead(err) {
			// Out of file descriptors or memory for a moment (a surge of
			// connections): nothing is wrong with the file. It was set
			// aside as one that can never be inserted, its rows counted
			// rejected.
			_ = w.spool.done(f, false)
			w.log.Warn("chlog: replay: cannot read a spool file now; will retry", "file", f.name, "err", err)
			st.emit(replayEvent{file: f.name, rows: f.rows, what: "failed", reason: err.Error()})
			return false
		}
		if err == nil {
			var trailing int
			if data, trailing, err = verifySpool(data, f); trailing > 0 {
				w.log.Warn("chlog: replay: bytes after a spool file's rows are not the relay's: its rows are sent without them",
					"file", f.name, "rows", f.rows, "trailing_bytes", trailing)
			}
		} else {
			err = fmt.Errorf("read: %w", err)
		}
		if err != nil {
			if !w.rejectHead(st, f, err.Error()) {
				return false
			}
			continue
		}
		m := f.meta()
		m.tried = st.failedPasses
		var g *spoolGather
		var unknown bool
		journaled = w.spool.journal(f) || journaled // spool_journal.go: a crash in the insert leaves f and those after it "u"
		if f.unknown || f.name <= st.singleThrough {
			unknown, err = w.deliver(w.ctx, m, data, f.unknown, 0)
		} else {
			g = newSpoolGather(w, f, data)
			unknown, err = w.deliverGathering(w.ctx, m, data, false, 0, g)
		}
		files := g.taken(f)
		if err != nil {
			if unknown || maybeStored(err) {
				for i, x := range files {
					if !x.unknown {
						files[i] = w.spool.markUnknown(x) // the next attempt must check first
					}
				}
			}
			// Only an answer about the insert itself says anything about
			// the block: an outcome still unknown (the presence check
			// failed) is transient whatever the error.
			class := failTransient
			if !unknown {
				class = classify(err)
			}
			w.tableGone(err)
			if class == failReject && len(files) > 1 {
				// Which of the gathered files the server refused is
				// not known: send them one by one until one goes in.
				w.releaseFiles(files)
				st.singleThrough = files[len(files)-1].name
				w.log.Info("chlog: replay: a gathered insert was refused; sending its files one by one", "files", len(files), "err", err)
				continue
			}
			switch class {
			case failReject:
				if w.rejectHead(st, f, refusalReason(err)) {
					continue
				}
			case failSchema:
				w.releaseFiles(files)
				w.blocked(st, f, err)
				return false
			default:
				w.releaseFiles(files)
				w.log.Warn("chlog: replay failed; will retry", "file", f.name, "files", len(files), "err", err)
				st.emit(replayEvent{file: f.name, rows: f.rows, what: "failed", reason: err.Error()})
			}
			return false
		}
		st.failedPasses = 0 // the next file has not failed yet
		w.unblock(st)
		for _, x := range files {
			if err := w.spool.done(x, true); err != nil {
				w.undeletable(x, err)
			}
			w.stats.rowsReplayed.Add(int64(x.rows))
			w.log.Info("chlog: replayed spooled block", "file", x.name, "rows", x.rows, "files_in_insert", len(files))
			st.emit(replayEvent{file: x.name, rows: x.rows, what: "inserted"})
		}
	}
}

// refusalReason is what a rejected file's reason says of err, the server's
// refusal. One allocation beyond the memory limit is most often a length
// read from broken bytes, but a block of large rows under a small
// max_memory_usage gets the same answer: the reason says how to send it
// again then.
func refusalReason(err error) string {
	if e, ok := AsException(err); ok && e.Code == memoryLimitExceeded {
		return "ClickHouse refused the block: one allocation is beyond its memory limit (a length read from broken bytes, or rows larger than max_memory_usage allows: if the limit is the cause, raise it and run relay spool replay -rejected): " + err.Error()
	}
	return "ClickHouse refused the block: " + err.Error()
}

// undeletable settles a spool file inserted but not deleted (err): its rows
// are in ClickHouse, so it must never go again as a block known not to be
// stored. It is emptied (spool.empty), which no restart sends; where even
// that fails it is flagged "u" (if the rename works), which a restart
// checks before sending. This process leaves it be either way.
func (w *Writer) undeletable(f spoolFile, err error) {
	eerr := w.spool.empty(f)
	if eerr == nil {
		w.log.Error("chlog: replay: cannot delete spool file after its insert; emptied it instead, not sent again", "file", f.name, "err", err)
		return
	}
	err = errors.Join(err, eerr)
	y := w.spool.markUnknown(f)
	w.spool.forget(y)
	w.log.Error("chlog: replay: cannot delete or empty spool file after its insert; left on disk, not sent again by this process", "file", y.name, "outcome_unknown_flag", y.unknown, "err", err)
}

// releaseFiles ends the replay of files without deleting them.
func (w *Writer) releaseFiles(files []spoolFile) {
	for _, x := range files {
		_ = w.spool.done(x, false)
	}
}

// rejectHead moves the head file aside; false when even that failed (the
// pass then stops and retries later).
func (w *Writer) rejectHead(st *replayState, f spoolFile, reason string) bool {
	if err := w.spool.reject(f, reason); err != nil {
		_ = w.spool.done(f, false)
		w.log.Error("chlog: replay: cannot move a bad spool file aside; will retry", "file", f.name, "reason", reason, "err", err)
		st.emit(replayEvent{file: f.name, rows: f.rows, what: "failed", reason: err.Error()})
		return false
	}
	w.unblock(st)
	st.emit(replayEvent{file: f.name, rows: f.rows, what: "rejected", reason: reason})
	return true
}

// blocked records that the head file failed with a schema error: the gauge
// goes to 1 and an error line naming the column is logged, at most once a
// minute (and at once for a new head file).
func (w *Writer) blocked(st *replayState, f spoolFile, err error) {
	w.stats.blocked.Store(1)
	col := w.blockingColumn(err)
	st.emit(replayEvent{file: f.name, rows: f.rows, what: "blocked", reason: col + ": " + err.Error()})
	now := time.Now()
	if st.blocked == f.name && now.Sub(st.lastLoud) < blockedLogEvery {
		w.log.Debug("chlog: replay still blocked by a schema error", "file", f.name, "column", col)
		return
	}
	st.blocked, st.lastLoud = f.name, now
	w.log.Error("chlog: the table does not take the spooled blocks: the queue is blocked until the table is fixed (rows keep spooling)",
		"column", col, "file", f.name, "rows", f.rows, "queued_files", w.Stats().SpoolFiles, "err", err)
}

// tableBlocked records that ClickHouse, reachable at last, has a table
// that cannot take the relay's rows (a column of another type: the check
// start-up makes, made late because the server was down then). As for a
// head file's schema error, the gauge goes to 1 and an error line naming
// the columns is logged at most once a minute.
func (w *Writer) tableBlocked(st *replayState, err error) {
	w.stats.blocked.Store(1)
	const table = "(the table)"
	now := time.Now()
	if st.blocked == table && now.Sub(st.lastLoud) < blockedLogEvery {
		return
	}
	st.blocked, st.lastLoud = table, now
	w.log.Error("chlog: the table does not take the relay's rows: the queue is blocked until the table is fixed (rows keep spooling)",
		"queued_files", w.Stats().SpoolFiles, "err", err)
}

// unblock ends a blocked state once the head moved on or the spool is empty.
func (w *Writer) unblock(st *replayState) {
	if w.stats.blocked.Swap(0) == 1 {
		w.log.Info("chlog: replay unblocked", "after", st.blocked)
	}
	st.blocked = ""
}

func (st *replayState) emit(ev replayEvent) {
	if st.report != nil {
		st.report(ev)
	}
}

// blockingColumn names the column behind a schema error: the one the
// server's text names, else the ones whose table type differs from the
// block's or that the table lacks (18.16 says only "Bad cast from type
// DB::ColumnString to DB::ColumnVector<unsigned int>"), else "unknown".
func (w *Writer) blockingColumn(err error) string {
	if e, ok := AsException(err); ok {
		if c := columnInMessage(e.Message); c != "" {
			return c
		}
	}
	ctx, cancel := context.WithTimeout(w.ctx, 5*time.Second)
	defer cancel()
	q := "SELECT name, type FROM system.columns WHERE database = '" + w.o.Database + "' AND table = '" + w.o.Table + "' FORMAT TabSeparated"
	ans, qerr := w.ch.query(ctx, q)
	if qerr != nil {
		return "unknown"
	}
	table := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(ans), "\n") {
		if name, typ, ok := strings.Cut(line, "\t"); ok {
			table[name] = typ
		}
	}
	var diffs []string
	for _, c := range newBlock().input {
		want := string(c.Data.Type())
		switch got, ok := table[c.Name]; {
		case !ok:
			diffs = append(diffs, c.Name+" (missing from the table)")
		case got != want:
			diffs = append(diffs, c.Name+" (table "+got+", block "+want+")")
		}
	}
	if len(diffs) == 0 {
		return "unknown"
	}
	return strings.Join(diffs, ", ")
}

// readSpoolFile reads a queued spool file; tests replace it to make a read
// fail.
var readSpoolFile = os.ReadFile

// transientRead reports whether a failed read says nothing about the file:
// the process or the system ran out of descriptors or memory, or the call
// was interrupted.
func transientRead(err error) bool {
	return err != nil && (errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR))
}
