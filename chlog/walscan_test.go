package chlog

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// crashedSegment writes n rows through a WAL writer that is then abandoned
// without Close, like a crash, and returns its one segment's path and bytes
// and the rows' ids in order.
func crashedSegment(t *testing.T, o Options, n int) (path string, data []byte, ids []string) {
	t.Helper()
	o.Durability, o.FlushInterval = DurabilityWAL, time.Hour
	crashed := newWriter(t, o)
	for i := range n {
		r := sseRecord(i, 3)
		ids = append(ids, r.IDString())
		if err := crashed.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	segs := walFiles(t, o.SpoolDir)
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	data, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	return segs[0], data, ids
}

// walOffsets returns the offsets of a whole segment's records.
func walOffsets(t *testing.T, data []byte) []int {
	t.Helper()
	var offs []int
	for off := 0; off < len(data); off += walHeader + int(binary.LittleEndian.Uint32(data[off:])) {
		offs = append(offs, off)
	}
	return offs
}

// flipPayload flips a byte in the middle of record i's payload.
func flipPayload(data []byte, offs []int, i int) {
	n := int(binary.LittleEndian.Uint32(data[offs[i]:]))
	data[offs[i]+walHeader+n/2] ^= 0xff
}

// spooledIDs counts the request ids in dir's spool files; every file must
// decode whole.
func spooledIDs(t *testing.T, dir string) map[string]int {
	t.Helper()
	ids := map[string]int{}
	for _, r := range spooledRowList(t, dir) {
		ids[r.RequestID]++
	}
	return ids
}

// TestWALRecoverDamage damages a crashed writer's segment of six rows and
// recovers it through New: every whole row comes back exactly once, every
// row that cannot is counted in RowsRejected, and a damaged segment (not a
// torn tail) is kept in rejected/ with its reason.
func TestWALRecoverDamage(t *testing.T) {
	setLen := func(data []byte, off, n int) { binary.LittleEndian.PutUint32(data[off:], uint32(n)) }
	tests := []struct {
		name     string
		damage   func(data []byte, offs []int) []byte
		want     []int // rows recovered
		rejected int64
		log      []string // substrings of the log line that explains it
		alsoTorn bool     // a second warning: the torn tail
	}{
		{
			name:     "first record's payload",
			damage:   func(d []byte, offs []int) []byte { flipPayload(d, offs, 0); return d },
			want:     []int{1, 2, 3, 4, 5},
			rejected: 1,
			log:      []string{"level=WARN", "corrupt records", "offset=0 ", "records_skipped=1 "},
		},
		{
			name: "two records' payloads",
			damage: func(d []byte, offs []int) []byte {
				flipPayload(d, offs, 0)
				flipPayload(d, offs, 3)
				return d
			},
			want:     []int{1, 2, 4, 5},
			rejected: 2,
			log:      []string{"level=WARN", "corrupt records", "offset=0 ", "records_skipped=2 "},
		},
		{
			name:     "last record's payload",
			damage:   func(d []byte, offs []int) []byte { flipPayload(d, offs, 5); return d },
			want:     []int{0, 1, 2, 3, 4},
			rejected: 1,
			log:      []string{"level=WARN", "corrupt records", "records_skipped=1 "},
		},
		{
			name:     "length past the end in the middle",
			damage:   func(d []byte, offs []int) []byte { setLen(d, offs[2], 1<<24); return d },
			want:     []int{0, 1},
			rejected: 4, // the record and the three after it
			log:      []string{"level=ERROR", "cannot be trusted", "records_not_read=4 "},
		},
		{
			name: "length one short in the middle",
			damage: func(d []byte, offs []int) []byte {
				setLen(d, offs[2], int(binary.LittleEndian.Uint32(d[offs[2]:]))-1)
				return d
			},
			want:     []int{0, 1},
			rejected: 4,
			// Where the short length leads is one byte before the next
			// header, which passes for one when the byte it takes for the
			// start of the request id is lower-case hex (1 time in 16): the
			// record is then skipped as corrupt and the scan stops at the
			// next. Either way records 3 to 6 are lost and counted.
			log: []string{"level=ERROR", "cannot be trusted", "rows_rejected=4 "},
		},
		{
			name: "first record's payload and a torn tail",
			damage: func(d []byte, offs []int) []byte {
				flipPayload(d, offs, 0)
				return d[:len(d)-10]
			},
			want:     []int{1, 2, 3, 4},
			rejected: 1,
			log:      []string{"level=WARN", "corrupt records", "offset=0 ", "records_skipped=1 "},
			alsoTorn: true,
		},
		{
			name:   "torn tail",
			damage: func(d []byte, offs []int) []byte { return d[:len(d)-10] },
			want:   []int{0, 1, 2, 3, 4},
			log:    []string{"level=WARN", "torn record at the end of a segment cut"},
		},
		{
			name:   "torn header",
			damage: func(d []byte, offs []int) []byte { return append(d, 200, 0, 0, 0, 1, 2) },
			want:   []int{0, 1, 2, 3, 4, 5},
			log:    []string{"level=WARN", "torn record at the end of a segment cut"},
		},
		{
			name:   "zeros a crash left after the last record",
			damage: func(d []byte, offs []int) []byte { return append(d, make([]byte, 4096)...) },
			want:   []int{0, 1, 2, 3, 4, 5},
			log:    []string{"level=WARN", "torn record at the end of a segment cut"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			seg, data, ids := crashedSegment(t, Options{SpoolDir: dir}, 6)
			damaged := tt.damage(data, walOffsets(t, data))
			if err := os.WriteFile(seg, damaged, 0o644); err != nil {
				t.Fatal(err)
			}

			var log spoolLog
			w := newWriter(t, Options{SpoolDir: dir, Durability: DurabilityWAL, Logger: log.logger()})
			closeWriter(t, w)

			got := spooledIDs(t, dir)
			for _, i := range tt.want {
				if got[ids[i]] != 1 {
					t.Errorf("row %d recovered %d times; want once", i+1, got[ids[i]])
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("recovered %d rows; want %d", len(got), len(tt.want))
			}
			if st := w.Stats(); st.RowsRejected != tt.rejected || st.RowsDropped != 0 {
				t.Errorf("RowsRejected = %d, RowsDropped = %d; want %d, 0", st.RowsRejected, st.RowsDropped, tt.rejected)
			}
			if f := walFiles(t, dir); len(f) != 0 {
				t.Errorf("WAL segments left: %v", f)
			}
			want := 1
			if tt.alsoTorn {
				want++
				if len(log.lines("WARN", "torn record at the end of a segment cut")) != 1 {
					t.Errorf("torn tail not logged:\n%s", log.String())
				}
			}
			if n := len(log.lines("WARN")) + len(log.lines("ERROR")); n != want {
				t.Errorf("%d warnings or errors logged; want %d:\n%s", n, want, log.String())
			}
			if lines := log.lines("", tt.log...); len(lines) != 1 {
				t.Errorf("no one log line with %q:\n%s", tt.log, log.String())
			} else if tt.rejected > 0 && !bytes.Contains([]byte(lines[0]), []byte("segment="+seg)) {
				t.Errorf("log line does not name the segment %s: %s", seg, lines[0])
			}

			copied := filepath.Join(dir, rejectedDir, filepath.Base(seg))
			kept, err := os.ReadFile(copied)
			if tt.rejected == 0 {
				if err == nil {
					t.Errorf("torn tail only, but %s was kept", copied)
				}
				return
			}
			if err != nil || !bytes.Equal(kept, damaged) {
				t.Errorf("rejected copy %s: %v; want the damaged segment as it was", copied, err)
			}
			reason, err := os.ReadFile(filepath.Join(dir, rejectedDir, errorFileName(filepath.Base(seg))))
			if err != nil || !bytes.Contains(reason, []byte(strconv.Itoa(len(tt.want))+" whole record(s) went to the spool")) {
				t.Errorf("reason file: %q, %v", reason, err)
			}
			// The copy is no spool file: a later writer leaves it alone.
			w = newWriter(t, Options{SpoolDir: dir, Durability: DurabilityWAL})
			closeWriter(t, w)
			if _, err := os.Stat(copied); err != nil {
				t.Errorf("rejected copy gone after a restart: %v", err)
			}
		})
	}
}

// TestWALCorruptFirstRecord is QA's case end to end: ClickHouse
// unreachable while six rows are written, a crash, the first record's
// payload damaged on disk, a restart with ClickHouse up. Rows 2-6 are
// inserted exactly once; row 1 is counted and its segment kept.
func TestWALCorruptFirstRecord(t *testing.T) {
	chURL, db := testDB(t)
	dir := t.TempDir()
	seg, data, ids := crashedSegment(t, Options{URL: closedPortURL(t), Database: db, SpoolDir: dir}, 6)
	flipPayload(data, walOffsets(t, data), 0)
	if err := os.WriteFile(seg, data, 0o644); err != nil {
		t.Fatal(err)
	}

	w := newWriter(t, Options{URL: chURL, Database: db, SpoolDir: dir, Durability: DurabilityWAL, FlushInterval: 50 * time.Millisecond})
	waitFor(t, "WAL replay", 20*time.Second, func() bool { return w.Stats().RowsReplayed == 5 })
	closeWriter(t, w)
	want := map[string]bool{}
	for _, id := range ids[1:] {
		want[id] = true
	}
	assertExactlyOnce(t, chURL, db, want)
	if st := w.Stats(); st.RowsRejected != 1 {
		t.Errorf("RowsRejected = %d; want 1", st.RowsRejected)
	}
	if _, err := os.Stat(filepath.Join(dir, rejectedDir, filepath.Base(seg))); err != nil {
		t.Errorf("damaged segment not kept: %v", err)
	}
}

// walRecord appends a record of id and payload as the WAL writes it.
func walRecord(dst []byte, id string, payload []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.ChecksumIEEE(payload))
	dst = append(dst, id...)
	return append(dst, payload...)
}

// FuzzWALRecords: any bytes are scanned without a panic; what is handed on
// passes its CRC and lies within the segment, and what is not is accounted
// for.
func FuzzWALRecords(f *testing.F) {
	var seg []byte
	for i := range 4 {
		seg = walRecord(seg, strings.Repeat(strconv.Itoa(i), 32), bytes.Repeat([]byte{byte(i + 1)}, 10+i))
	}
	f.Add(seg)
	f.Add(seg[:len(seg)-3])
	f.Add(append(slices.Clone(seg), make([]byte, 100)...))
	bad := slices.Clone(seg)
	bad[walHeader+2] ^= 1
	f.Add(bad)
	bad = slices.Clone(seg)
	bad[0] = 0xff
	f.Add(bad)
	f.Fuzz(func(t *testing.T, data []byte) {
		whole := 0
		s := walRecords(data, func(id, payload []byte) bool {
			whole += walHeader + len(payload)
			if len(id) != record.IDLen || len(payload) == 0 {
				t.Fatalf("record id %q, %d-byte payload", id, len(payload))
			}
			return true
		})
		if whole > len(data) || s.unread() < 0 || (s.damaged() && s.String() == "") {
			t.Fatalf("whole records %d bytes of %d; scan %+v", whole, len(data), s)
		}
		if !s.damaged() && !s.torn && whole != len(data) {
			t.Fatalf("%d of %d bytes read, no damage reported: %+v", whole, len(data), s)
		}
	})
}
