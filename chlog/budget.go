package chlog

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/stream-relay/stream-relay/internal/mono"
	"github.com/stream-relay/stream-relay/record"
)

// The memory budget (Options.MaxBufferBytes) covers every captured byte the
// relay holds for storage: records of requests in flight (a fixed row slot
// each plus what they capture, charged as it arrives) and blocks (current,
// queued for the sender or spooler, being encoded, sent or spooled).
//
//	used + rowSlot <= limit    admission of a request (else 503 storage_overloaded)
//	used + n <= ceiling        capture of n more bytes (else capture stops: storage_budget)
//
// Below the ceiling lies room kept for rows only (see newBudget), so that
// capture never starves the admission of new requests, and blocks waiting
// for the disk or ClickHouse make new rows meta only well before they make
// the relay refuse requests. A row written into a block moves its bytes
// from its record to the block unconditionally: that is what makes the slot
// a guarantee. A block being encoded counts twice (the block and its
// encoded copy); blocks release their bytes once sent or spooled.

// rowSlot is reserved for every admitted request: the row without bodies
// (fixed columns, ids, route, path, user agent, the two header objects,
// which the server's and upstream's 8 KiB header buffers bound) in the
// record and then in a block.
const rowSlot = 32 << 10

// captureFloor: a request's full capture begins only while this much of
// its route's capture limit (or all of it, when smaller) still fits under
// the ceiling; otherwise it is stored meta only from the start.
const captureFloor = 256 << 10

// Bounds of the default budget: a quarter of the memory the process may use,
// at most 1 GiB, at least 64 MiB.
const (
	defaultBufferMax = 1 << 30
	defaultBufferMin = 64 << 20
)

// budget accounts the bytes against MaxBufferBytes. used is the writer's
// bufferedBytes counter, so Stats shows it.
type budget struct {
	limit, ceiling int64
	used           *atomic.Int64
	c              *counters
	// spoolHigh, when > 0, is the spool size from which new requests are
	// admitted meta only (see admit): three quarters of spool_max_bytes.
	spoolHigh int64
	// diskHigh is the same for the room on the spool's file system
	// (spool.diskShortLocked; -1 when unknown), heeded while the writer
	// spools (spooling): with ClickHouse taking the rows, a small disk
	// under an empty spool made every request meta only.
	diskHigh atomic.Int64
	down     *atomic.Bool
	// spooledAt is when (mono) rows last went to the spool (noteSpooled):
	// ClickHouse hanging, the writer spools aged blocks long before an
	// insert fails (down), and the replayer, finding the spool empty (its
	// writes failing on the full disk), says up again. Heeding down alone,
	// no request was captured meta only, and whole groups of full rows,
	// larger than the disk, were dropped.
	spooledAt atomic.Int64
}

// spoolingWindow is how long after rows last went to the spool the writer
// counts as spooling (spoolFull).
const spoolingWindow = 10 * time.Second

// noteSpooled records that rows go to the spool now.
func (b *budget) noteSpooled() {
	if b != nil {
		b.spooledAt.Store(mono.Now())
	}
}

// spooling reports whether the writer spools: ClickHouse is down, or rows
// went to the spool within spoolingWindow.
func (b *budget) spooling() bool {
	if b.down != nil && b.down.Load() {
		return true
	}
	at := b.spooledAt.Load()
	return at != 0 && mono.Now()-at < int64(spoolingWindow)
}

var _ record.Budget = (*budget)(nil)

// newBudget keeps an eighth of the limit above the capture ceiling for rows
// without bodies; see keepForBlocks.
func newBudget(limit int64, c *counters) *budget {
	b := &budget{limit: limit, ceiling: limit - limit/8, used: &c.bufferedBytes, c: c}
	b.diskHigh.Store(-1)
	return b
}

// keepForBlocks widens the room kept above the capture ceiling to cover
// the encoded copies of the blocks in hand too (the sender's and the
// spooler's, each about batchBytes): two batches when that is more than an
// eighth of the limit, but never more than half the limit.
func (b *budget) keepForBlocks(batchBytes int) {
	rows := max(b.limit/8, min(b.limit/2, 2*int64(batchBytes)))
	b.ceiling = b.limit - rows
}

// take adds n to used when the result stays within max.
func (b *budget) take(n, max int64) bool {
	for {
		u := b.used.Load()
		if u+n > max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// Charge implements record.Budget: capture of n more bytes.
func (b *budget) Charge(r *record.Record, n int) bool {
	if !b.take(int64(n), b.ceiling) {
		if r.TruncatedReason != record.TruncStorageBudget {
			b.c.rowsDegraded.Add(1) // capture stops here for good (record.Record.charge)
		}
		return false
	}
	r.Charged += int64(n)
	return true
}

// admit reserves r's row slot and decides whether its full capture may
// begin: not when the capture memory is near its ceiling, nor when the
// spool is past spoolHigh (spoolFull); then r is stored meta only
// (truncated_reason storage_budget). False when not even the slot fits.
func (b *budget) admit(r *record.Record) bool {
	if !b.take(rowSlot, b.limit) {
		b.c.refused.Add(1)
		r.Capture = false
		return false
	}
	r.Charged = rowSlot
	r.Budget = b
	// The buffers a pooled record kept are filled before any growth is
	// charged: they are charged now, or let go of.
	if n := int64(r.RetainedBytes()); n > 0 {
		if b.take(n, b.ceiling) {
			r.Charged += n
		} else {
			r.DropRetained()
		}
	}
	if r.Capture && (b.used.Load()+int64(min(r.CaptureLimit(), captureFloor)) > b.ceiling || b.spoolFull()) {
		r.Capture = false
		r.Truncated = true
		r.TruncatedReason = record.TruncStorageBudget
		b.c.rowsDegraded.Add(1)
	}
	return true
}

// overloaded reports whether admit would refuse a row slot now.
func (b *budget) overloaded() bool { return b.used.Load()+rowSlot > b.limit }

// spoolFull reports whether the spool, with what is buffered in memory
// (and may go there next), is past spoolHigh. With ClickHouse, the spool
// holds what ClickHouse could not take yet; past its cap the oldest files
// are deleted, rows and all. Before that, new requests are captured meta
// only: a row without its bodies instead of no row. (The embedded spool,
// without ClickHouse, is the store itself: it keeps the newest rows whole
// and lets the oldest go, so it sets no spoolHigh.)
func (b *budget) spoolFull() bool {
	if b.spoolHigh <= 0 {
		return false
	}
	n := b.c.spoolBytes.Load() + b.used.Load()
	if n >= b.spoolHigh {
		return true
	}
	d := b.diskHigh.Load()
	return d >= 0 && n >= d && b.spooling()
}

// move turns a record's charge into a block's n bytes (n may be more or
// less than the charge); it never refuses. A nil budget (a Writer made
// for a spool command) accounts nothing.
func (b *budget) move(charged, n int64) {
	if b != nil {
		b.used.Add(n - charged)
	}
}

// release returns n bytes (a block sent or spooled, or a record not stored).
func (b *budget) release(n int64) {
	if b != nil {
		b.used.Add(-n)
	}
}

// defaultBufferBytes is a quarter of the memory the process may use (the
// cgroup limit when one is set, else physical memory), within
// [defaultBufferMin, defaultBufferMax]; defaultBufferMax when unknown.
func defaultBufferBytes() int64 {
	mem := physicalMemory()
	if lim := cgroupLimit(); lim > 0 && (mem <= 0 || lim < mem) {
		mem = lim
	}
	if mem <= 0 {
		return defaultBufferMax
	}
	return min(max(mem/4, defaultBufferMin), defaultBufferMax)
}

// physicalMemory reads MemTotal from /proc/meminfo; 0 when unknown.
func physicalMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// cgroupLimit reads the memory limit of the process's cgroup (v2, then v1);
// 0 when none is set or it cannot be read.
func cgroupLimit() int64 {
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(bytes.TrimSpace(b))
		if s == "max" {
			return 0
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n >= 1<<62 {
			return 0 // v1 reports "no limit" as a huge number
		}
		return n
	}
	return 0
}
