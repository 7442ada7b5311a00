package chlog

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// A replayed spool file is deleted only after its insert succeeded. A crash
// between the two (kill -9, power loss) left it flagged "k", known not
// stored, and the next start sent it again unchecked: its rows twice on a
// server without insert_deduplication_token (18.16; current servers drop
// the repeat by its token). So before each replay insert the replayer
// writes the journal, which names the insert's first file; the files it
// gathers behind that one come after it in name order. It is removed once
// the pass has dealt with them. A start that finds it flags that file and
// every file after it "u" (checked before sent), then removes it.

// replayJournalName is the journal in the spool directory. It does not end
// in spoolExt, so the spool's listing leaves it alone.
const replayJournalName = ".replaying"

// journal writes, durably, that a replay insert whose first file is f is
// about to run, and reports whether it did (a failure is logged: the
// replay goes on as before the journal, which is no worse).
func (s *spool) journal(f spoolFile) bool {
	if err := writeDurable(s.dir, replayJournalName, []byte(f.name+"\n")); err != nil {
		s.w.log.Warn("chlog: spool: cannot write the replay journal; a crash during this insert would send its files again unchecked", "file", f.name, "err", err)
		return false
	}
	return true
}

// endJournal removes the journal (not fsync'd: a journal that comes back
// after a crash only costs presence checks).
func (s *spool) endJournal() {
	if err := os.Remove(filepath.Join(s.dir, replayJournalName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.w.log.Warn("chlog: spool: cannot remove the replay journal", "err", err)
	}
}

// recoverJournal, at open, flags "u" the files a replay insert may have
// sent before a crash: the journal's file and every queued file after it.
// The caller holds no lock; the spool is not shared yet.
func (s *spool) recoverJournal() {
	b, err := os.ReadFile(filepath.Join(s.dir, replayJournalName))
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	head := strings.TrimSpace(string(b)) // unreadable or empty: "", before every file
	if err != nil {
		head = ""
	}
	flagged, left := 0, false
	for _, f := range s.files {
		if f.unknown || f.name < head {
			continue
		}
		if g := s.markUnknown(f); g.unknown {
			flagged++
		} else {
			left = true // the rename failed: the next start tries again
		}
	}
	s.w.log.Warn("chlog: spool: a replay insert was cut by a stop or crash; its files will be checked against the table before they are sent",
		"first_file", head, "files_flagged", flagged)
	if !left {
		s.endJournal()
	}
}
