package chlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/stream-relay/stream-relay/internal/mono"
	"github.com/stream-relay/stream-relay/record"
)

// Errors callers may branch on.
var (
	ErrClosed = errors.New("chlog: writer closed")
)

// spoolQueue is how many cut blocks may wait for the spooler (when the
// sender's queue is full, or ClickHouse is down); past it the current
// block keeps growing. Nothing is ever
// dropped for lack of room: the memory budget (budget.go) bounds the bytes
// held, by degrading capture and then refusing new requests.
const spoolQueue = 64

// keepBufferBytes: a block or an encode buffer that grew past this is
// dropped after use instead of being kept for the next one, so that a burst
// of huge rows does not pin memory at its peak; unless the writer's blocks
// are cut larger (keepBytes).
const keepBufferBytes = 4 << 20

// keepBytes is what a block's columns or an encode buffer may hold and still
// be kept for the next block: two batches (a block is cut once its rows
// reach BatchBytes, the last row may take it past), at least
// keepBufferBytes, at most an eighth of the memory budget. Kept buffers
// turn each block's growth (allocating, zeroing and copying its bytes
// again) into none; the writer lets go of them after idleTrim without a
// row.
func keepBytes(o *Options) int {
	return max(keepBufferBytes, min(2*o.BatchBytes, int(o.MaxBufferBytes/8)))
}

// startWaitNote is how long the start-up's schema check waits for
// ClickHouse before it logs that it is waiting.
const startWaitNote = 5 * time.Second

// Writer batches records into Native blocks and sends them to ClickHouse,
// spooling what it cannot send. It is safe for concurrent use.
type Writer struct {
	o      Options
	log    *slog.Logger
	ch     *chClient // nil in embedded mode
	spool  *spool
	wal    *wal // nil unless Durability is "wal"
	stats  counters
	budget *budget

	keep      int // keepBytes(o)
	trimTicks int // idleTrimTicks(o)

	mu     sync.Mutex // guards the fields below and the WAL's buffers
	cur    *block
	free   []*block
	seq    uint64
	closed bool

	// closing is set when Close begins; from then on every loss of rows
	// (a rowsLost error, made by lose) is kept in lostAtClose, under
	// lossMu, for Close to return, whoever met it: an insert abandoned at
	// Close's deadline whose spool write failed has no caller left to
	// read its error.
	closing     atomic.Bool
	lossMu      sync.Mutex
	lostAtClose error

	// sendingSince is when (mono) the flusher's insert in progress began,
	// 0 between inserts: while one hangs, the flusher cuts no block, and
	// the spooler cuts and spools the current one (rescueCurrent).
	sendingSince atomic.Int64

	sendq    *sendQueue // blocks waiting for the sender (sendqueue.go)
	segments segments   // buffers of gathered blocks, kept for reuse (segments.go)
	spoolq   chan *block
	flushReq chan flushReq
	growReq  chan struct{} // wakes the grower (reserve.go)
	grown    atomic.Int64  // growths the grower made (tests)

	insertMu sync.Mutex  // one insert in flight per writer
	down     atomic.Bool // the last live insert failed: spool until replay succeeds
	// schemaPending: New could not reach the server, or an insert found
	// the table gone (tableGone); the replayer creates the database and
	// table before it sends anything.
	schemaPending atomic.Bool
	// goneOnNode, with a cluster, is the node an insert found without the
	// table (the host its error was "Received from", or "" when it does not
	// say): the re-check makes the tables ON CLUSTER even when the node
	// the client talks to has them (ensureClusterSchema).
	goneOnNode atomic.Pointer[string]
	kickRep    chan struct{}

	stop       chan struct{}
	ctx        context.Context // cancelled by Close after the final flush
	cancel     context.CancelFunc
	wg         sync.WaitGroup // flusher, spooler, grower
	replayDone chan struct{}
}

type flushReq struct {
	ctx  context.Context
	done chan error
}

// unwellAtStart are the ClickHouse codes of the schema check at start that
// say the cluster is unwell, not the configuration wrong (ZooKeeper gone:
// 225, 999; a table read-only: 242; a host or a shard unreachable: 159,
// 209, 210, 279; a server busy or short of memory or disk for the moment:
// 173, 202, 203, 236, 241, 243, 394, 425, 439; a quota spent: 201): the
// writer starts spooling, as when no node answers, and the replayer makes
// the schema once they pass. (202 and 241 made the relay exit.)
var unwellAtStart = codeSet(159, 173, 201, 202, 203, 209, 210, 225, 236, 241, 242, 243, 279, 394, 425, 439, 999)

// unwell reports whether e, an answer to the schema check, says the server
// is unwell for a moment (unwellAtStart), not that the table or the
// configuration is wrong: also an HTTP 5xx, 408 or 429 without a
// ClickHouse code, a proxy's or load balancer's in front of a server that
// is still starting (the relay exited 1 on a chproxy's 502, a crash loop,
// and after a late start called the table blocked).
func unwell(e *Exception) bool {
	return unwellAtStart[e.Code] || e.Code == 0 && (e.Status >= 500 || e.Status == 408 || e.Status == 429)
}

// tableGone notes an insert error that says the table or its database is
// missing (dropped while the relay ran): the replayer makes the schema
// again before its next insert, as at a start the server missed.
func (w *Writer) tableGone(err error) {
	if e, ok := AsException(err); ok && (e.Code == codeUnknownTable || e.Code == codeUnknownDatabase) {
		if w.o.Cluster != "" {
			node := receivedFrom(e.Message)
			w.goneOnNode.Store(&node)
		}
		w.schemaPending.Store(true)
	}
}

// receivedFrom returns the host a Distributed table's error names as the
// one it came from ("Received from host:port."), or "".
func receivedFrom(msg string) string {
	_, rest, ok := strings.Cut(msg, "Received from ")
	if !ok {
		return ""
	}
	host, _, _ := strings.Cut(rest, " ")
	return strings.TrimRight(host, ".,:")
}

// New validates o, creates the database and table when missing (when a URL
// is set), recovers a leftover WAL, and starts the background goroutines.
func New(o Options) (*Writer, error) {
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	w := makeWriter(context.Background(), o)
	w.budget.keepForBlocks(o.BatchBytes)
	if o.URL != "" {
		w.budget.spoolHigh = o.SpoolMaxBytes - o.SpoolMaxBytes/4
	}
	var err error
	if w.spool, err = openSpool(w, o.SpoolDir, o.SpoolMaxBytes); err != nil {
		return nil, err
	}
	if o.URL != "" {
		w.ch = newClient(&w.o)
		ctx, cancel := context.WithTimeout(context.Background(), o.InsertTimeout)
		// A server that takes the connection and never answers held the
		// start silent for the whole insert_timeout: say what it waits for.
		slow := time.AfterFunc(startWaitNote, func() {
			w.log.Warn("chlog: ClickHouse has not answered the start-up schema check yet; the relay starts once it answers, or spooling after insert_timeout",
				"waited", startWaitNote, "insert_timeout", o.InsertTimeout)
		})
		err := w.ensureSchema(ctx)
		slow.Stop()
		cancel()
		if e, isCH := AsException(err); isCH && !unwell(e) || errors.Is(err, ErrSchema) {
			w.spool.unlock()
			return nil, err // the server answered: a configuration error
		}
		if err != nil {
			// Unreachable: start anyway, spooling; the replayer creates the
			// schema once the server answers.
			w.log.Error("chlog: ClickHouse unreachable at start; spooling until it answers", "err", err)
			w.schemaPending.Store(true)
			w.down.Store(true)
		}
	} else {
		w.log.Info("chlog: no ClickHouse URL: blocks go to the spool only", "dir", o.SpoolDir)
	}
	w.seq = max(uint64(time.Now().UnixNano()), w.spool.maxSeq()+1)
	if o.Durability == DurabilityWAL {
		if w.wal, err = openWAL(w); err != nil {
			w.spool.unlock()
			return nil, err
		}
	} else if err = recoverWAL(w); err != nil {
		w.spool.unlock()
		return nil, err
	}
	w.cur = newBlock()
	w.cur.seq = w.nextSeqLocked()
	if w.wal != nil {
		w.wal.curSeq = w.cur.seq
		w.wal.start()
	}
	w.wg.Add(3)
	go w.flusher()
	go w.spooler()
	go w.grower()
	if w.ch != nil {
		go w.replayer()
	} else {
		close(w.replayDone)
	}
	return w, nil
}

// makeWriter makes a Writer's state from validated options, without
// touching the spool or the server and without goroutines (New and
// ReplaySpool build on it).
func makeWriter(ctx context.Context, o Options) *Writer {
	w := &Writer{
		o:          o,
		log:        o.Logger,
		sendq:      newSendQueue(sendQueueBytes(&o)),
		spoolq:     make(chan *block, spoolQueue),
		flushReq:   make(chan flushReq),
		kickRep:    make(chan struct{}, 1),
		growReq:    make(chan struct{}, 1),
		stop:       make(chan struct{}),
		replayDone: make(chan struct{}),
	}
	w.budget = newBudget(o.MaxBufferBytes, &w.stats)
	w.budget.down = &w.down
	w.keep = keepBytes(&o)
	w.trimTicks = idleTrimTicks(&o)
	w.segments.max, w.segments.each = w.coalesceLimit(), w.keep
	w.ctx, w.cancel = context.WithCancel(ctx)
	return w
}

func (w *Writer) nextSeqLocked() uint64 {
	w.seq++
	return w.seq
}

// Admit reserves room in the memory budget for the row of a request about
// to be served, and decides its capture: when the budget has no room for
// it, capture is turned off and the row says so (Truncated,
// TruncatedReason storage_budget). It returns false when not even a row
// without bodies fits: the request must then be refused (503
// storage_overloaded), and its record may still be written (stored when room
// allows). Once Admit returned true, Write of r never fails for lack of
// room. It allocates nothing.
func (w *Writer) Admit(r *record.Record) bool {
	return w.budget.admit(r)
}

// Overloaded reports whether Admit would refuse a row now, without
// reserving one: the relay asks it before an `Expect: 100-continue` upload,
// so that a client is not made to send a body only to be refused.
func (w *Writer) Overloaded() bool { return w.budget.overloaded() }

// Write copies r into the current block. It never waits for ClickHouse or
// the spool and never drops a row of an admitted request (nor of any record
// written without Admit); in "wal" durability it waits for the fsync that
// covers r. It returns ErrClosed after Close (the row is dropped and
// counted) and, in "wal" durability, the error of a failed WAL write or
// fsync (the row is then queued but not durable).
func (w *Writer) Write(r *record.Record) error {
	charged := r.Charged
	if charged == 0 && r.ErrorType == record.ErrStorageOverloaded {
		// Refused at admission: stored only when a row slot is free now.
		if !w.budget.take(rowSlot, w.budget.limit) {
			return nil // counted as refused by Admit
		}
		charged = rowSlot
	}
	// The budget now holds the row's bytes; the record must not charge again.
	r.Budget, r.Charged = nil, 0
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		w.budget.release(charged)
		w.stats.rowsDropped.Add(1)
		w.log.Error("chlog: write after close: row dropped")
		return ErrClosed
	}
	b := w.cur
	b.add(r)
	d := b.charge()
	w.budget.move(charged, int64(d))
	var ticket uint64
	if w.wal != nil {
		ticket = w.wal.appendLocked(r, b)
	}
	if b.rows >= w.o.BatchRows || b.bytes >= w.o.BatchBytes {
		w.handOffLocked()
	}
	if _, grow := w.cur.measure(w.o.BatchBytes, w.keep); grow {
		w.wakeGrower() // reserve.go
	}
	w.mu.Unlock()
	if ticket > 0 {
		return w.waitWAL(ticket)
	}
	return nil
}

// waitWAL waits for the fsync that covers ticket.
func (w *Writer) waitWAL(ticket uint64) error {
	return w.wal.wait(ticket)
}

// handOffLocked queues the full current block for the sender while its
// queue has room, else passes it to the spooler, else leaves it growing.
func (w *Writer) handOffLocked() {
	b := w.cur
	next := b.sizes(w.keep) // before b is handed off
	if w.ch != nil && !w.down.Load() && w.sendq.push(b, time.Now()) {
		w.rotateLocked(next)
		return
	}
	select {
	case w.spoolq <- b:
		w.rotateLocked(next)
	default:
	}
}

// rotateLocked starts a new current block (and WAL segment): a recycled
// one, else a new one of the given sizes.
func (w *Writer) rotateLocked(next blockSizes) {
	old := w.cur
	if n := len(w.free); n > 0 {
		w.cur, w.free = w.free[n-1], w.free[:n-1]
		w.cur.uncharged = blockMem(w.cur) // its spare capacity: no row's yet
	} else {
		w.cur = newBlock()
		w.cur.presize(next)
	}
	w.cur.seq = w.nextSeqLocked()
	if w.wal != nil {
		w.wal.rotateLocked(old.seq, w.cur.seq)
	}
}

// cutLocked takes the current block if it has rows.
func (w *Writer) cutLocked() *block {
	if w.cur.rows == 0 {
		return nil
	}
	b := w.cur
	w.rotateLocked(b.sizes(w.keep))
	return b
}

// blockMem approximates the memory b's columns hold: the rows' encoded
// size plus the unused capacity of the columns that grow with captured
// bytes and the positions of the chunk strings.
func blockMem(b *block) int {
	return b.bytes + cap(b.chunkData.Buf) - len(b.chunkData.Buf) + cap(b.reqBody.Buf) - len(b.reqBody.Buf) + b.reqBody.spare + positionBytes*cap(b.chunkData.Pos)
}

// charge brings b.held up to date after a row was added and returns by how
// much it changed: b's memory (blockMem) less the spare capacity it was
// recycled with that no row has taken yet. A recycled block is thus
// charged its rows' bytes, and any capacity it grows beyond; a new one all
// its capacity, as it grows.
func (b *block) charge() int {
	b.uncharged = min(b.uncharged, blockMem(b)-b.bytes)
	d := blockMem(b) - b.uncharged - b.held
	b.held += d
	return d
}

// blockCap is the capacity of b's column buffers that grow with captured
// bytes and headers.
func blockCap(b *block) int {
	return cap(b.chunkData.Buf) + cap(b.reqBody.Buf) + positionBytes*cap(b.chunkData.Pos) + cap(b.reqHeaders.Buf) + cap(b.respHeaders.Buf)
}

// recycle keeps b for reuse unless its buffers grew past w.keep (or two
// blocks are kept already): a huge block is left to the GC.
func (w *Writer) recycle(b *block) {
	b.reqBody.release() // the request bodies it held by reference, encoded
	if b.bytes > w.keep || blockCap(b) > w.keep {
		return
	}
	b.reset()
	b.held = 0
	w.mu.Lock()
	if c := w.cur; c.rows == 0 && blockCap(c) < blockCap(b) {
		// The current block is new and empty (no block was free when it
		// started): b takes its place, rather than its growing from
		// nothing while b waits.
		b.seq = c.seq
		b.uncharged = blockMem(b)
		w.cur, b = b, c
	}
	if len(w.free) < 2 {
		w.free = append(w.free, b)
	}
	w.mu.Unlock()
}

// idleTrim: after this long without a row (at least three flush
// intervals), the writer lets go of the buffers it keeps for reuse, so
// that memory returns to its idle level after a burst. It was three flush
// intervals (3 s): traffic that paused for a few seconds then grew the
// blocks anew, and growing MiBs is what stalled streams (reserve.go).
const idleTrim = time.Minute

// idleTrimTicks is idleTrim in flush intervals.
func idleTrimTicks(o *Options) int {
	return max(3, int(idleTrim/o.FlushInterval))
}

// trimLocked drops the blocks kept for reuse and gives the (empty) current
// block fresh columns.
func (w *Writer) trimLocked() {
	w.free = nil
	if w.cur.rows == 0 {
		nb := newBlock()
		nb.seq = w.cur.seq
		w.cur = nb
	}
}

// trimBuffer drops an encode buffer that grew past the writer's keep size.
func (w *Writer) trimBuffer(buf *proto.Buffer) {
	if cap(buf.Buf) > w.keep {
		buf.Buf = nil
	} else {
		buf.Buf = buf.Buf[:0]
	}
}

// sendBlock sends (or spools) b and then returns its bytes to the budget.
// The encoded copy counts too: the block and its copy both live while it
// is encoded, the copy until it is inserted or spooled.
func (w *Writer) sendBlock(ctx context.Context, b *block, buf *proto.Buffer) error {
	n := int64(b.held + b.bytes)
	w.budget.move(0, int64(b.bytes))
	w.sendingSince.Store(mono.Now())
	err := w.send(ctx, b, buf)
	w.sendingSince.Store(0)
	w.budget.release(n)
	w.trimBuffer(buf)
	return err
}

// reserveBuffer grows buf so that n more bytes fit without the doublings
// of append (each a copy left to the GC).
func reserveBuffer(buf *proto.Buffer, n int) {
	if len(buf.Buf)+n <= cap(buf.Buf) {
		return
	}
	nb := make([]byte, len(buf.Buf), len(buf.Buf)+n+n/8+64<<10)
	copy(nb, buf.Buf)
	buf.Buf = nb
}

// Flush sends the current block (and any waiting one) now and returns the
// insert error, if any; rows that could not be inserted are in the spool.
func (w *Writer) Flush(ctx context.Context) error {
	req := flushReq{ctx: ctx, done: make(chan error, 1)}
	select {
	case w.flushReq <- req:
	case <-w.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close sends or spools the current block and stops the goroutines. Rows
// written after Close are dropped and counted. When ctx ends first, the
// inserts still in flight are abandoned (their blocks spooled, flagged
// unknown when the server may have them), and Close returns once every
// block in hand is in the spool: a process that exits after Close loses
// none. Its error says which rows were lost (a spool write that failed,
// with no WAL to keep them); inserts that failed or were abandoned are no
// error of Close's, their rows being in the spool for the next start (the
// relay exited 1, as for rows lost, when ClickHouse failed at its exit).
func (w *Writer) Close(ctx context.Context) (err error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.closed = true
	w.mu.Unlock()
	w.closing.Store(true)
	if ferr := w.Flush(ctx); ferr != nil && lostOnly(ferr) == nil {
		// Its losses, if any, are in lostAtClose (lose).
		w.log.Warn("chlog: close: the last insert failed or was cut short; its rows are in the spool for the next start", "err", ferr)
	}
	close(w.stop)
	defer func() {
		w.lossMu.Lock()
		defer w.lossMu.Unlock()
		err = w.lostAtClose
	}()
	done := make(chan struct{})
	go func() {
		w.wg.Wait() // flusher and spooler drain their queues into the spool; the grower ends
		w.cancel()  // stops a replay in flight; its file stays
		<-w.replayDone
		if w.wal != nil {
			w.wal.close()
		}
		w.spool.unlock() // embedded mode has no replayer to release it
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		w.cancel() // abandon the inserts in flight: their blocks go to the spool
		<-done
	}
	return err
}

// rowsLost marks an error that means rows were lost: neither inserted nor
// kept in the spool or the WAL.
type rowsLost struct{ error }

func (e rowsLost) Unwrap() error { return e.error }

// lostOnly returns the parts of err (joined errors are looked into) that
// are rowsLost, nil when there are none.
func lostOnly(err error) error {
	var lost rowsLost
	switch e := err.(type) {
	case nil:
		return nil
	case rowsLost:
		return e
	case interface{ Unwrap() []error }:
		var errs []error
		for _, x := range e.Unwrap() {
			if l := lostOnly(x); l != nil {
				errs = append(errs, l)
			}
		}
		return errors.Join(errs...)
	}
	if errors.As(err, &lost) {
		return lost
	}
	return nil
}

// lose returns err, a loss of rows, as a rowsLost error, and keeps it for
// Close to return once Close has begun (closing).
func (w *Writer) lose(err error) error {
	lost := rowsLost{err}
	if w.closing.Load() {
		w.lossMu.Lock()
		w.lostAtClose = errors.Join(w.lostAtClose, lost)
		w.lossMu.Unlock()
	}
	return lost
}

// flusher is the sender: it inserts full blocks, cuts the current block
// every FlushInterval, and serves Flush.
func (w *Writer) flusher() {
	defer w.wg.Done()
	t := time.NewTicker(w.o.FlushInterval)
	defer t.Stop()
	var buf proto.Buffer
	idle := 0 // ticks in a row without a row
	for {
		select {
		case <-w.sendq.ready:
			idle = 0
			for b := w.sendq.pop(); b != nil; b = w.sendq.pop() {
				w.sendBlock(w.ctx, b, &buf)
			}
		case <-t.C:
			w.mu.Lock()
			b := w.cutLocked()
			if b == nil {
				if idle++; idle == w.trimTicks {
					w.trimLocked()
					buf.Buf = nil
					w.segments.drop()
				}
			} else {
				idle = 0
			}
			w.mu.Unlock()
			if b != nil {
				w.sendBlock(w.ctx, b, &buf)
			}
		case req := <-w.flushReq:
			var err error
			for b := w.sendq.pop(); b != nil; b = w.sendq.pop() {
				err = errors.Join(err, w.sendBlock(req.ctx, b, &buf))
			}
			for done := false; !done; {
				select {
				case b := <-w.spoolq:
					err = errors.Join(err, w.sendBlock(req.ctx, b, &buf))
				default:
					done = true
				}
			}
			w.mu.Lock()
			b := w.cutLocked()
			w.mu.Unlock()
			if b != nil {
				err = errors.Join(err, w.sendBlock(req.ctx, b, &buf))
			}
			req.done <- err
		case <-w.stop:
			// Spool what is left; the losses, if any, are in
			// lostAtClose (lose).
			for b := w.sendq.pop(); b != nil; b = w.sendq.pop() {
				_ = w.spoolBlock(b, &buf, false)
			}
			// The current block: Close's Flush did not reach the flusher
			// (its ctx ended while an insert was in flight).
			w.mu.Lock()
			b := w.cutLocked()
			w.mu.Unlock()
			if b != nil {
				_ = w.spoolBlock(b, &buf, false)
			}
			return
		}
	}
}

// spooler writes blocks the sender had no time for to the spool: all that
// wait (up to the coalesce limit) as one file with one fsync, so that it
// keeps up with a sender that hands it every block (spoolGroup). Every
// half flush interval it also takes the blocks that have waited a flush
// interval for the sender.
func (w *Writer) spooler() {
	defer w.wg.Done()
	var g spoolScratch
	t := time.NewTicker(max(w.o.FlushInterval/2, time.Millisecond))
	defer t.Stop()
	idle := 0         // ticks in a row without a block
	var rescued int64 // when (mono) rescueCurrent last cut a block
	for {
		select {
		case b := <-w.spoolq:
			idle = 0
			w.spoolGroup(&g, b)
			w.kickReplayer()
		case now := <-t.C:
			w.spool.measureDisk() // other writers fill the disk too
			aged, cutoff := false, now.Add(-w.o.FlushInterval)
			for b := w.sendq.popAged(cutoff); b != nil; b = w.sendq.popAged(cutoff) {
				w.spoolGroup(&g, b)
				aged = true
			}
			if b := w.rescueCurrent(&rescued); b != nil {
				w.spoolGroup(&g, b)
				aged = true
			}
			if aged {
				idle = 0
				w.kickReplayer()
				continue
			}
			// Spooling comes in bursts (or, without ClickHouse, steadily):
			// the encode buffer is kept while blocks come, not after.
			if idle++; idle == 2*w.trimTicks {
				g.buf.Buf = nil
			}
		case <-w.stop:
			for {
				select {
				case b := <-w.spoolq:
					_ = w.spoolGroup(&g, b) // its losses are in lostAtClose (lose)
				default:
					return
				}
			}
		}
	}
}

// rescueCurrent cuts the current block for the spooler when the flusher,
// which cuts it every FlushInterval, has been inside one insert for longer
// than that (ClickHouse hanging): its rows would wait in memory until the
// insert timed out (30 s by default), and a crash in batch mode lost them
// all, not about one flush interval's. At most one cut a FlushInterval
// (rescued, when the last was); nil when there is nothing to cut, and with
// a WAL, which keeps the rows already.
func (w *Writer) rescueCurrent(rescued *int64) *block {
	if w.wal != nil {
		return nil
	}
	now := mono.Now()
	since := w.sendingSince.Load()
	every := int64(w.o.FlushInterval)
	if since == 0 || now-since <= every || now-*rescued < every {
		return nil
	}
	w.mu.Lock()
	b := w.cutLocked()
	w.mu.Unlock()
	if b != nil {
		*rescued = now
	}
	return b
}

// spoolScratch is the spooler's scratch space for one group commit.
type spoolScratch struct {
	buf  proto.Buffer
	seqs []uint64
}

// spoolGroup writes b and the blocks waiting behind it into one spool
// file with one fsync (and one of the directory), up to the coalesce limit
// (what one insert takes when the file is replayed). Each block is encoded
// and appended to the file at once (spoolTemp), so the group needs no
// buffer of its size, and its bytes go back to the memory budget as soon as
// they are written, not after the fsync: under overload fewer new requests
// are captured meta only. (What a busy disk takes is not raised by larger
// files: measured under load here, a 16 MiB file took 22 ms to write, 25 ms
// to fsync and 5 ms for the directory, and the fsync grew with the bytes.) The file's name carries the first block's seq, the total rows,
// the first and the last request id. Once the file is durable, each
// block's WAL segment is released.
func (w *Writer) spoolGroup(g *spoolScratch, b *block) error {
	w.budget.noteSpooled()
	g.buf.Reset()
	g.seqs = g.seqs[:0]
	var m blockMeta
	var t *spoolTemp
	var werr error // creating or writing the file failed: the group ends there
	limit := int64(w.coalesceLimit())
	for b != nil {
		held := int64(b.held + b.bytes)
		w.budget.move(0, int64(b.bytes)) // the encoded copy
		reserveBuffer(&g.buf, b.bytes)
		mark := len(g.buf.Buf)
		err := b.encode(&g.buf) // sorts the rows: first and last after it
		rows, seq, first, last := b.rows, b.seq, b.first, b.last
		w.recycle(b)
		if err != nil {
			g.buf.Buf = g.buf.Buf[:mark]
			w.stats.rowsDropped.Add(int64(rows))
			w.log.Error("chlog: BUG: encode block", "rows", rows, "err", err)
			_ = w.lose(fmt.Errorf("chlog: %d rows dropped: encode: %w", rows, err))
		} else if rows > 0 {
			if m.rows == 0 {
				m.seq, m.first = seq, first
			}
			m.rows += rows
			m.last = last
			g.seqs = append(g.seqs, seq)
		}
		if m.rows > 0 && werr == nil {
			if t == nil {
				t, werr = w.spool.createTemp(fmt.Sprintf("%020d-group%s", m.seq, spoolExt))
			}
			if werr == nil {
				var n int
				n, werr = w.spool.write(t, g.buf.Buf)
				g.buf.Buf = g.buf.Buf[:copy(g.buf.Buf, g.buf.Buf[n:])] // the part not written waits for the next
			}
		}
		w.budget.release(held)
		b = nil
		if werr == nil && (t == nil || t.size(g.buf.Buf) < limit) {
			select {
			case b = <-w.spoolq:
			default:
			}
		}
	}
	var err error
	switch {
	case m.rows == 0:
	case werr != nil:
		if t != nil {
			t.abort()
		}
		err = w.spooled(m, g.seqs, fmt.Errorf("chlog: spool: %w", werr))
	default:
		err = w.spooled(m, g.seqs, w.spool.putWritten(t, g.buf.Buf, m.seq, m.rows, m.first[:], m.last[:]))
	}
	w.trimBuffer(&g.buf)
	return err
}

// spoolBlock encodes b into the spool and recycles it; the error says
// its rows were lost.
func (w *Writer) spoolBlock(b *block, buf *proto.Buffer, unknown bool) error {
	n := int64(b.held + b.bytes)
	w.budget.move(0, int64(b.bytes))
	m, err := w.encode(b, buf)
	if err == nil {
		err = w.spoolEncoded(m, buf.Buf, unknown)
	}
	w.budget.release(n)
	w.trimBuffer(buf)
	return err
}

func (w *Writer) spoolEncoded(m blockMeta, native []byte, unknown bool) error {
	seqs := [1]uint64{m.seq}
	return w.putSpool(m, native, unknown, seqs[:])
}

// putSpool writes a spool file and releases the WAL segments of its
// blocks. It returns an error when the rows are lost: the spool write
// failed and no WAL keeps them for the next start.
func (w *Writer) putSpool(m blockMeta, native []byte, unknown bool, seqs []uint64) error {
	w.budget.noteSpooled()
	return w.spooled(m, seqs, w.spool.put(m.seq, m.rows, unknown, m.first[:], m.last[:], native))
}

// spooled ends the spooling of m's rows (the blocks of seqs) that err
// says failed or not: done, their WAL segments are released; failed, the
// WAL keeps them for the next start, and those it does not keep (their WAL
// write failed too: a full or read-only disk fails both), or all of them
// without a WAL, are counted dropped and the returned error says so.
func (w *Writer) spooled(m blockMeta, seqs []uint64, err error) error {
	if err != nil {
		if w.wal != nil {
			w.wal.settle() // the WAL's round of the block's last rows
			w.mu.Lock()
			lost := min(w.wal.unloggedLocked(seqs), m.rows)
			w.mu.Unlock()
			if lost == 0 {
				w.log.Error("chlog: spool write failed; rows stay in the WAL for the next start", "rows", m.rows, "err", err)
				return nil // keep the segments
			}
			w.stats.rowsDropped.Add(int64(lost))
			w.log.Error("chlog: spool write failed, and so had the WAL writes of some of its rows: those are dropped, the rest stay in the WAL for the next start",
				"rows", m.rows, "dropped", lost, "err", err)
			return w.lose(fmt.Errorf("chlog: %d rows dropped: %w", lost, err))
		}
		w.stats.rowsDropped.Add(int64(m.rows))
		w.log.Error("chlog: spool write failed: rows dropped", "rows", m.rows, "err", err)
		return w.lose(fmt.Errorf("chlog: %d rows dropped: %w", m.rows, err))
	}
	for _, seq := range seqs {
		w.releaseWAL(seq)
	}
	return nil
}

func (w *Writer) releaseWAL(seq uint64) {
	if w.wal == nil {
		return
	}
	w.mu.Lock()
	w.wal.releaseLocked(seq)
	w.mu.Unlock()
}

func (w *Writer) kickReplayer() {
	select {
	case w.kickRep <- struct{}{}:
	default:
	}
}

// blockMeta is what outlives a block once encoded.
type blockMeta struct {
	seq         uint64
	rows        int
	first, last [record.IDLen]byte
	tried       int // failed inserts before this call (a replay's passes), for the log
}

// encode writes b into buf (reset first) and recycles b. An encode error is a
// broken invariant (column lengths differ); it is logged and the rows counted
// as dropped.
func (w *Writer) encode(b *block, buf *proto.Buffer) (blockMeta, error) {
	buf.Reset()
	reserveBuffer(buf, b.bytes)
	err := b.encode(buf) // sorts the rows: first and last after it
	m := blockMeta{seq: b.seq, rows: b.rows, first: b.first, last: b.last}
	w.recycle(b)
	if err != nil {
		w.stats.rowsDropped.Add(int64(m.rows))
		w.log.Error("chlog: BUG: encode block", "rows", m.rows, "err", err)
		err = w.lose(fmt.Errorf("chlog: %d rows dropped: encode: %w", m.rows, err))
	}
	return m, err
}
