package chlog

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"strings"
)

// Reading a WAL segment back (recovery, Find) tells three kinds of damage
// apart, because they call for different answers:
//
//   - A torn tail: the last record runs past the end of the segment (or its
//     header is cut short, or the segment ends in zeros where a crash left
//     the file longer than its data: from a record's start, or from a
//     sector boundary inside the last record, tornInside). That is a write a crash cut; its row's
//     Write never returned successfully, so nothing acknowledged is lost: it
//     is cut, as it always was.
//   - A corrupt record: its length fits the segment but its payload fails
//     its CRC (the disk or someone changed bytes after the fsync). Its row is
//     lost, but its length still says where the next record starts, and that
//     record's own CRC decides whether it is whole: the scan skips the one
//     record and goes on.
//   - A length that cannot be trusted: past the end of the segment while
//     whole records follow it, or a corrupt record whose length does not
//     lead to a record header. Where the next record starts is then unknown
//     and guessing it could hand a wrong row on, so the scan stops there.
//
// Recovery counts and explains every corrupt or unread record and keeps a
// copy of the damaged segment in spool_dir/rejected/ (setAside).

// walScan is what walRecords met besides whole records.
type walScan struct {
	torn bool // the segment ends in a torn record, which is cut

	corrupt   int // records skipped: length fits, payload fails its CRC
	corruptAt int // offset of the first of them

	stopped bool // a length could not be trusted: the rest was not read
	stopAt  int  // offset of the record whose length could not be trusted
	after   int  // whole records found past stopAt (not read)
}

// damaged reports whether rows were lost to corruption, as opposed to a
// torn tail.
func (s walScan) damaged() bool { return s.corrupt > 0 || s.stopped }

// unread is the number of records the segment holds that were not handed
// on: the corrupt ones, and when the scan stopped, the record there and the
// whole records found after it.
func (s walScan) unread() int {
	n := s.corrupt
	if s.stopped {
		n += 1 + s.after
	}
	return n
}

// String describes the damage for a log line's reason, a reason file and
// Find's warnings.
func (s walScan) String() string {
	var parts []string
	if s.corrupt > 0 {
		parts = append(parts, fmt.Sprintf("%d corrupt record(s) skipped (payload fails its CRC; the first at offset %d)", s.corrupt, s.corruptAt))
	}
	if s.stopped {
		parts = append(parts, fmt.Sprintf("the record at offset %d has a length that does not lead to the next record: the rest of the segment was not read (%d more whole record(s) found in it)", s.stopAt, s.after))
	}
	if s.torn {
		parts = append(parts, "a torn record at the end cut")
	}
	return strings.Join(parts, "; ")
}

// walRecords calls fn with the request id and payload of each whole record
// of a segment, in order, until fn returns false, skipping corrupt records
// and stopping at a length it cannot trust (see above); it reports what it
// met.
func walRecords(data []byte, fn func(id, payload []byte) bool) (s walScan) {
	for off := 0; off < len(data); {
		rest := data[off:]
		if len(rest) < walHeader || allZero(rest) {
			s.torn = true
			return s
		}
		n := binary.LittleEndian.Uint32(rest)
		if uint64(n) > uint64(len(rest)-walHeader) {
			if walResync(data, off+walHeader) < 0 {
				s.torn = true
			} else {
				s.stop(data, off)
			}
			return s
		}
		end := off + walHeader + int(n)
		payload := rest[walHeader : walHeader+int(n)]
		if n == 0 || crc32.ChecksumIEEE(payload) != binary.LittleEndian.Uint32(rest[4:]) {
			if tornInside(data, off+walHeader, end) {
				s.torn = true
				return s
			}
			if end < len(data) && !walHeaderLike(data[end:]) {
				s.stop(data, off)
				return s
			}
			if s.corrupt == 0 {
				s.corruptAt = off
			}
			s.corrupt++
			off = end
			continue
		}
		if !fn(rest[8:walHeader], payload) {
			return s
		}
		off = end
	}
	return s
}

// walSector is the unit a crash leaves unwritten: a sector (a page is
// eight of them) that never reached the disk reads as zeros.
const walSector = 512

// tornInside reports whether the record whose payload is data[from:end],
// failing its CRC, is the last write, cut by a crash that kept the
// segment's new length but not all of its bytes: from a sector boundary
// within the record to the end of the segment everything is zeros. (A
// crash leaves zeros from where the page or sector left unwritten begins,
// seldom at a record's start: that case was the only torn one, and the
// others were counted as damage, their rows as rejected, after an ordinary
// power loss.)
func tornInside(data []byte, from, end int) bool {
	z := len(data)
	for z > from && data[z-1] == 0 {
		z--
	}
	k := (z + walSector - 1) / walSector * walSector
	return k < end && k < len(data)
}

// stop ends the scan at off, counting the whole records after it.
func (s *walScan) stop(data []byte, off int) {
	s.stopped, s.stopAt = true, off
	for o := walResync(data, off+walHeader); o >= 0; {
		s.after++
		o = walResync(data, o+walHeader+int(binary.LittleEndian.Uint32(data[o:])))
	}
}

// walResync returns the offset of the first whole record (a request id of
// lower-case hex, a length that fits, a payload that passes its CRC) at or
// after from, or -1. It only decides whether and how many records lie past
// a length that cannot be trusted; they are never read from there.
func walResync(data []byte, from int) int {
	for o := from; o+walHeader < len(data); o++ {
		p := data[o:]
		n := binary.LittleEndian.Uint32(p)
		if n == 0 || uint64(n) > uint64(len(p)-walHeader) || !lowerHex(p[8:walHeader]) {
			continue
		}
		if crc32.ChecksumIEEE(p[walHeader:walHeader+int(n)]) == binary.LittleEndian.Uint32(p[4:]) {
			return o
		}
	}
	return -1
}

// walHeaderLike reports whether p starts like a record header the relay
// wrote (a non-zero length and a request id of lower-case hex), or is a
// tail of zeros: where a corrupt record's length leads must look like that
// for the length to be trusted.
func walHeaderLike(p []byte) bool {
	if allZero(p) {
		return true
	}
	return len(p) >= walHeader && binary.LittleEndian.Uint32(p) != 0 && lowerHex(p[8:walHeader])
}

func lowerHex(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// setAside keeps a copy of a damaged segment in spool_dir/rejected/ with
// the reason beside it, counts its unread records in RowsRejected and logs
// it once. Recovery calls it before it spools the segment's whole rows and
// deletes the segment, so that a crash in between repeats it rather than
// loses the copy.
func (l *wal) setAside(seq uint64, data []byte, s walScan, rows int) error {
	path := l.segPath(seq)
	name := filepath.Base(path)
	reason := fmt.Sprintf("wal segment %s (%d bytes) recovered after a crash: %s; its %d whole record(s) went to the spool as block %d. "+
		"This copy is the segment as it was, for inspection; nothing here is replayed.",
		name, len(data), s, rows, seq)
	copied, err := l.w.spool.copyToRejected(name, data, reason)
	if err != nil {
		return fmt.Errorf("chlog: wal: segment %s is damaged (%s) and cannot be set aside, so it is kept in place: %w", path, s, err)
	}
	l.w.stats.rowsRejected.Add(int64(s.unread()))
	args := []any{"seq", seq, "segment", path}
	if s.corrupt > 0 {
		args = append(args, "offset", s.corruptAt)
	}
	args = append(args, "records_skipped", s.corrupt)
	if s.stopped {
		args = append(args, "stopped_at", s.stopAt, "records_not_read", 1+s.after)
	}
	args = append(args, "rows_recovered", rows, "rows_rejected", s.unread(), "copied_to", copied)
	if s.stopped {
		l.w.log.Error("chlog: wal: a record length in a segment cannot be trusted: the rest of the segment is not read; the records before it were recovered", args...)
		return nil
	}
	l.w.log.Warn("chlog: wal: corrupt records (bad CRC) skipped; the records after them were recovered", args...)
	return nil
}
