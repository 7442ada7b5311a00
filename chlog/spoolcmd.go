package chlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// SpoolEntry is one file of a spool directory: queued for ClickHouse or
// set aside in rejected/.
type SpoolEntry struct {
	File     string // file name, in the spool directory or its rejected/ subdirectory; "wal/" and the name for a WAL segment
	Rejected bool
	// WAL is a segment a WAL left (a relay stopped or crashed with
	// durability wal): its rows join the queue at the relay's next start
	// or with relay spool replay.
	WAL bool
	// Spooled is a WAL segment whose rows a queued file holds already (a
	// crash came between spooling them and deleting it): the relay's next
	// start drops it, and its rows are not pending twice.
	Spooled bool
	// Rows, First and Last (request ids) come from the file name; for a
	// name that is no spool name they come from the content when it decodes
	// (Rows is -1 when neither tells).
	Rows           int
	First, Last    string
	OutcomeUnknown bool  // an earlier insert may have been applied: checked before a re-send
	Bytes          int64 // file size
	// Reason is, for a rejected file, the first line of its .error.txt; for
	// a queued file read with verify, why the replayer would reject it
	// ("" when it verifies); for a queued file emptied after its insert
	// (spool.go), that it was.
	Reason string
}

// SpoolDirMissing reports whether the spool directory dir does not exist:
// nothing was spooled there yet (a relay creates it when it starts, and
// relay show reads a missing one as empty). A path that exists and is not
// a directory, or that cannot be looked at, is an error naming it.
func SpoolDirMissing(dir string) (bool, error) {
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("chlog: spool_dir=%s: %w", dir, err)
	case !info.IsDir():
		return false, fmt.Errorf("chlog: spool_dir=%s: not a directory", dir)
	}
	return false, nil
}

// ListSpool lists the spool directory dir: queued files oldest first, then
// WAL segments not yet in the queue, then rejected files. With verify,
// every file is read and checked as the replayer would (size, Native
// blocks, rows and ids against the name). It takes no lock and changes
// nothing.
func ListSpool(dir string, verify bool) ([]SpoolEntry, error) {
	queued, err := listDir(dir, false, verify)
	if err != nil {
		return nil, err
	}
	wal, err := listWAL(filepath.Join(dir, walDir), queuedSpool(dir, queued))
	if err != nil {
		return nil, err
	}
	rejected, err := listDir(filepath.Join(dir, rejectedDir), true, verify)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return append(append(queued, wal...), rejected...), nil
}

// queuedSpool is a spool of the queued files listed, for holdsRows.
func queuedSpool(dir string, queued []SpoolEntry) *spool {
	sp := &spool{dir: dir}
	for _, e := range queued {
		if f, ok := parseSpoolName(e.File); ok {
			sp.files = append(sp.files, f)
		}
	}
	return sp
}

// listWAL lists the segments in the WAL directory dir (none when it is
// missing), oldest first, with the rows their whole records hold, and
// whether the queue sp holds those rows already (as the next start finds
// them). A running relay's own segment is listed too: its rows are those
// not yet spooled or inserted.
func listWAL(dir string, sp *spool) ([]SpoolEntry, error) {
	segs, err := walSegments(dir)
	if err != nil {
		return nil, fmt.Errorf("chlog: wal %s: %w", dir, err)
	}
	var out []SpoolEntry
	for _, e := range segs {
		ent := SpoolEntry{File: walDir + "/" + e.name, WAL: true, Rows: -1,
			Reason: "WAL segment: its rows join the queue at the relay's next start, or with relay spool replay"}
		data, err := os.ReadFile(filepath.Join(dir, e.name))
		if err != nil {
			ent.Reason = err.Error()
			out = append(out, ent)
			continue
		}
		ent.Bytes, ent.Rows = int64(len(data)), 0
		var ids [][]byte
		s := walRecords(data, func(id, _ []byte) bool {
			if ent.Rows == 0 {
				ent.First = quoteID(id)
			}
			ent.Last = quoteID(id)
			ent.Rows++
			ids = append(ids, id)
			return true
		})
		if s.damaged() {
			ent.Reason += "; damaged: " + s.String()
		}
		if sp.holdsRows(e.seq, ids) {
			ent.Spooled = true
			ent.Reason = "WAL segment whose rows are queued already (a crash came between spooling them and deleting it): the relay's next start drops it"
		}
		out = append(out, ent)
	}
	return out, nil
}

func listDir(dir string, rejected, verify bool) ([]SpoolEntry, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if rejected {
			return nil, err
		}
		return nil, fmt.Errorf("chlog: spool_dir=%s: %w", dir, err)
	}
	var out []SpoolEntry
	for _, e := range ents {
		// rejected/ also keeps copies of damaged WAL segments (walscan.go):
		// listed with their reason, never verified or replayed.
		walCopy := rejected && strings.HasSuffix(e.Name(), walExt)
		if e.IsDir() || special(dir, e) || !strings.HasSuffix(e.Name(), spoolExt) && !walCopy {
			continue
		}
		ent := SpoolEntry{File: e.Name(), Rejected: rejected, Rows: -1}
		if info, err := e.Info(); err == nil {
			ent.Bytes = info.Size()
		}
		if walCopy {
			ent.Reason = rejectReason(dir, e.Name())
			out = append(out, ent)
			continue
		}
		f, named := parseSpoolName(e.Name())
		if named {
			ent.Rows, ent.First, ent.Last, ent.OutcomeUnknown = f.rows, f.first, f.last, f.unknown
		}
		if rejected {
			ent.Reason = rejectReason(dir, e.Name())
		}
		if named && !rejected && inserted(filepath.Join(dir, e.Name()), ent.Bytes) {
			ent.Reason = "emptied after its insert (its rows are in ClickHouse): never sent; deleted at the next start"
			out = append(out, ent)
			continue
		}
		if verify || !named {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			var problem error
			switch {
			case err != nil:
				problem = err
			case named:
				var trailing int
				_, trailing, problem = verifySpool(data, f)
				switch {
				case trailing == 0:
				case rejected:
					// Its reason stays the rejection's; it verifies now
					// (replay -rejected takes it back).
					ent.Reason += fmt.Sprintf(" (verifies now: %d bytes after its rows are not the relay's and are left out; relay spool replay -rejected sends it)", trailing)
				default:
					ent.Reason = fmt.Sprintf("%d bytes after its rows are not the relay's: its rows are sent without them", trailing)
				}
			default:
				problem = errors.New("file name is not a spool name")
				if n, first, last, err := countRows(data); err == nil {
					ent.Rows, ent.First, ent.Last = n, quoteID([]byte(first)), quoteID([]byte(last))
				}
			}
			if problem != nil && !rejected && verify {
				ent.Reason = "will be rejected: " + problem.Error()
			}
		}
		out = append(out, ent)
	}
	slices.SortFunc(out, func(a, b SpoolEntry) int { return strings.Compare(a.File, b.File) })
	return out, nil
}

// rejectReason returns the first line of the reason file beside the
// rejected file name in dir ("" when there is none).
func rejectReason(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, errorFileName(name)))
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}

// ReplaySummary counts what ReplaySpool did.
type ReplaySummary struct {
	Inserted, InsertedRows int // files (rows) now in ClickHouse
	Rejected               int // files moved to rejected/ by this pass
	Kept                   int // files left in rejected/ by --rejected: they still do not verify
	Restored               int // rejected files that verified and went back into the queue
	Left                   int // files still queued when the pass stopped
	LostRows               int // WAL records too damaged to recover (their segments copied to rejected/)
}

// ReplaySpool sends the spool directory o.SpoolDir to the ClickHouse of o
// now, oldest first, as the relay's replayer does (the same checks and
// rejections), in one pass that stops at the first failure; it prints a
// line per file to out. With rejected, files in rejected/ are verified
// again first and those that pass go back into the queue (and so are sent
// in this pass); the others stay, with their reason printed.
//
// It takes the spool directory's lock: it fails with ErrSpoolInUse while a
// relay runs on the same spool_dir (that relay replays by itself).
func ReplaySpool(ctx context.Context, o Options, rejected bool, out io.Writer) (ReplaySummary, error) {
	var sum ReplaySummary
	o.setDefaults()
	if err := o.validate(); err != nil {
		return sum, err
	}
	if o.URL == "" {
		return sum, errors.New("chlog: url is empty (storage.clickhouse.url or urls): nowhere to replay to")
	}
	// A Writer without its goroutines: this pass is the only one touching
	// the spool.
	w := makeWriter(ctx, o)
	defer w.cancel()
	// openSpool moves files whose name is no spool name aside; say so.
	var badNames []string
	if ents, err := os.ReadDir(o.SpoolDir); err == nil {
		for _, e := range ents {
			if _, ok := parseSpoolName(e.Name()); !ok && !e.IsDir() && strings.HasSuffix(e.Name(), spoolExt) {
				badNames = append(badNames, e.Name())
			}
		}
	}
	var err error
	if w.spool, err = openSpool(w, o.SpoolDir, o.SpoolMaxBytes); err != nil {
		return sum, err
	}
	defer w.spool.unlock()
	// Segments a WAL left (a relay stopped or crashed with durability
	// wal) join the queue, as at a relay's start.
	before, lostBefore := w.stats.rowsSpooled.Load(), w.stats.rowsRejected.Load()
	if err := recoverWAL(w); err != nil {
		return sum, err
	}
	if n := w.stats.rowsSpooled.Load() - before; n > 0 {
		fmt.Fprintf(out, "recovered %s/  rows=%d  from WAL segments into the queue\n", walDir, n)
	}
	if n := w.stats.rowsRejected.Load() - lostBefore; n > 0 {
		// Damaged records (setAside): the segment's copy in rejected/
		// keeps them for inspection; they are never replayed.
		sum.LostRows += int(n)
		fmt.Fprintf(out, "rejected  %s/  rows=%d  damaged WAL records, not recoverable: the segments are copied to %s/ (*%s, the reason beside each)\n",
			walDir, n, rejectedDir, walExt)
	}
	for _, name := range badNames {
		sum.Rejected++
		fmt.Fprintf(out, "rejected  %s  moved to %s/: not a spool name\n", name, rejectedDir)
	}
	w.ch = newClient(&w.o)
	sctx, cancel := context.WithTimeout(w.ctx, o.InsertTimeout)
	err = w.ensureSchema(sctx)
	cancel()
	if err != nil {
		return sum, err
	}
	if rejected {
		restoreRejected(w.spool, out, &sum)
	}
	st := replayState{report: func(ev replayEvent) {
		switch ev.what {
		case "inserted":
			sum.Inserted++
			sum.InsertedRows += ev.rows
			fmt.Fprintf(out, "inserted  %s  rows=%d\n", ev.file, ev.rows)
		case "rejected":
			sum.Rejected++
			fmt.Fprintf(out, "rejected  %s  rows=%d  moved to %s/: %s\n", ev.file, ev.rows, rejectedDir, ev.reason)
		default:
			fmt.Fprintf(out, "%-8s  %s  %s\n", ev.what, ev.file, ev.reason)
		}
	}}
	done := w.replayAll(&st)
	sum.Left = int(w.Stats().SpoolFiles)
	lost := ""
	if sum.LostRows > 0 {
		lost = fmt.Sprintf(", %d rows of damaged WAL records lost", sum.LostRows)
	}
	fmt.Fprintf(out, "replay: %d files inserted (%d rows), %d rejected, %d restored from %s/, %d kept there, %d left in the queue%s\n",
		sum.Inserted, sum.InsertedRows, sum.Rejected, sum.Restored, rejectedDir, sum.Kept, sum.Left, lost)
	if !done {
		return sum, fmt.Errorf("chlog: replay stopped at the first failure; %d files left in %s", sum.Left, o.SpoolDir)
	}
	return sum, nil
}

// restoreRejected verifies every file in rejected/ and moves those that
// pass back into the queue.
func restoreRejected(s *spool, out io.Writer, sum *ReplaySummary) {
	rdir := filepath.Join(s.dir, rejectedDir)
	ents, err := os.ReadDir(rdir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(out, "rejected: %v\n", err)
		}
		return
	}
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, spoolExt) {
			continue
		}
		f, ok := parseSpoolName(name)
		if !ok {
			sum.Kept++
			fmt.Fprintf(out, "kept      %s  (in %s/): not a spool name; rename it <seq>-<rows>-k-<first id>-<last id>.native to replay it\n", name, rejectedDir)
			continue
		}
		data, err := os.ReadFile(filepath.Join(rdir, name))
		if err == nil {
			_, _, err = verifySpool(data, f)
		}
		if err != nil {
			sum.Kept++
			fmt.Fprintf(out, "kept      %s  (in %s/): %v\n", name, rejectedDir, err)
			continue
		}
		if _, err := s.restore(name); err != nil {
			sum.Kept++
			fmt.Fprintf(out, "kept      %s  (in %s/): %v\n", name, rejectedDir, err)
			continue
		}
		sum.Restored++
		fmt.Fprintf(out, "restored  %s  rows=%d: verifies; back in the queue\n", name, f.rows)
	}
}
