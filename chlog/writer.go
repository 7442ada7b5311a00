package chlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/stream-relay/stream-relay/record"
)

// Errors callers may branch on.
var (
	ErrClosed = errors.New("chlog: writer closed")
)

// spoolQueue is how many cut blocks may wait for the spooler while the
// sender is busy; past it the current block keeps growing up to overloadFactor
// times the batch limits, then rows are dropped (and counted).
const (
	spoolQueue     = 4
	overloadFactor = 4
)

// Writer batches records into Native blocks and sends them to ClickHouse,
// spooling what it cannot send. It is safe for concurrent use.
type Writer struct {
	o     Options
	log   *slog.Logger
	ch    *chClient // nil in embedded mode
	spool *spool
	wal   *wal // nil unless Durability is "wal"
	stats counters

	mu         sync.Mutex // guards the fields below and the WAL's buffers
	cur        *block
	free       []*block
	seq        uint64
	closed     bool
	overloaded bool // a drop was logged; reset when a block is handed off

	sendq    chan *block // at most one block waits for the sender
	spoolq   chan *block
	flushReq chan flushReq

	insertMu sync.Mutex  // one insert in flight per writer
	down     atomic.Bool // the last live insert failed: spool until replay succeeds
	// schemaPending: New could not reach the server; the replayer creates
	// the database and table before it sends anything.
	schemaPending atomic.Bool
	kickRep       chan struct{}

	stop       chan struct{}
	ctx        context.Context // cancelled by Close after the final flush
	cancel     context.CancelFunc
	wg         sync.WaitGroup // flusher, spooler
	replayDone chan struct{}
}

type flushReq struct {
	ctx  context.Context
	done chan error
}

// New validates o, creates the database and table when missing (when a URL
// is set), recovers a leftover WAL, and starts the background goroutines.
func New(o Options) (*Writer, error) {
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	w := &Writer{
		o:          o,
		log:        o.Logger,
		sendq:      make(chan *block, 1),
		spoolq:     make(chan *block, spoolQueue),
		flushReq:   make(chan flushReq),
		kickRep:    make(chan struct{}, 1),
		stop:       make(chan struct{}),
		replayDone: make(chan struct{}),
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	var err error
	if w.spool, err = openSpool(w, o.SpoolDir, o.SpoolMaxBytes); err != nil {
		return nil, err
	}
	if o.URL != "" {
		w.ch = newClient(&w.o)
		ctx, cancel := context.WithTimeout(context.Background(), o.InsertTimeout)
		err := w.ensureSchema(ctx)
		cancel()
		if _, isCH := AsException(err); isCH {
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
			return nil, err
		}
	}
	w.cur = newBlock()
	w.cur.seq = w.nextSeqLocked()
	if w.wal != nil {
		w.wal.curSeq = w.cur.seq
		w.wal.start()
	}
	w.wg.Add(2)
	go w.flusher()
	go w.spooler()
	if w.ch != nil {
		go w.replayer()
	} else {
		close(w.replayDone)
	}
	return w, nil
}

func (w *Writer) nextSeqLocked() uint64 {
	w.seq++
	return w.seq
}

// Write copies r into the current block. It never waits for ClickHouse or
// the spool; in "wal" durability it waits for the fsync that covers r.
func (w *Writer) Write(r *record.Record) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		w.stats.rowsDropped.Add(1)
		w.log.Error("chlog: write after close: row dropped")
		return
	}
	b := w.cur
	if b.rows >= overloadFactor*w.o.BatchRows || b.bytes >= overloadFactor*w.o.BatchBytes {
		logIt := !w.overloaded
		w.overloaded = true
		w.mu.Unlock()
		w.stats.rowsDropped.Add(1)
		if logIt {
			w.log.Error("chlog: sender and spool both behind: dropping rows", "block_rows", b.rows, "block_bytes", b.bytes)
		}
		return
	}
	b.add(r)
	var ticket uint64
	if w.wal != nil {
		ticket = w.wal.appendLocked(r)
	}
	if b.rows >= w.o.BatchRows || b.bytes >= w.o.BatchBytes {
		w.handOffLocked()
	}
	w.mu.Unlock()
	if ticket > 0 {
		w.wal.wait(ticket)
	}
}

// handOffLocked passes the full current block to the sender when it is free,
// else to the spooler, else leaves it growing.
func (w *Writer) handOffLocked() {
	b := w.cur
	if w.ch != nil && !w.down.Load() {
		select {
		case w.sendq <- b:
			w.rotateLocked()
			return
		default:
		}
	}
	select {
	case w.spoolq <- b:
		w.rotateLocked()
	default:
	}
}

// rotateLocked starts a new current block (and WAL segment).
func (w *Writer) rotateLocked() {
	old := w.cur
	if n := len(w.free); n > 0 {
		w.cur, w.free = w.free[n-1], w.free[:n-1]
	} else {
		w.cur = newBlock()
	}
	w.cur.seq = w.nextSeqLocked()
	w.overloaded = false
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
	w.rotateLocked()
	return b
}

func (w *Writer) recycle(b *block) {
	b.reset()
	w.mu.Lock()
	if len(w.free) < 2 {
		w.free = append(w.free, b)
	}
	w.mu.Unlock()
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
// written after Close are dropped and counted. When ctx ends first, Close
// returns its error; blocks still in hand are then spooled in the background.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.closed = true
	w.mu.Unlock()
	err := w.Flush(ctx)
	close(w.stop)
	done := make(chan struct{})
	go func() {
		w.wg.Wait() // flusher and spooler drain their queues into the spool
		w.cancel()  // stops a replay in flight; its file stays
		<-w.replayDone
		if w.wal != nil {
			w.wal.close()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return errors.Join(err, fmt.Errorf("chlog: close: %w", ctx.Err()))
	}
	return err
}

// flusher is the sender: it inserts full blocks, cuts the current block
// every FlushInterval, and serves Flush.
func (w *Writer) flusher() {
	defer w.wg.Done()
	t := time.NewTicker(w.o.FlushInterval)
	defer t.Stop()
	var buf proto.Buffer
	for {
		select {
		case b := <-w.sendq:
			w.send(w.ctx, b, &buf)
		case <-t.C:
			w.mu.Lock()
			b := w.cutLocked()
			w.mu.Unlock()
			if b != nil {
				w.send(w.ctx, b, &buf)
			}
		case req := <-w.flushReq:
			var err error
			for done := false; !done; {
				select {
				case b := <-w.sendq:
					err = errors.Join(err, w.send(req.ctx, b, &buf))
				case b := <-w.spoolq:
					err = errors.Join(err, w.send(req.ctx, b, &buf))
				default:
					done = true
				}
			}
			w.mu.Lock()
			b := w.cutLocked()
			w.mu.Unlock()
			if b != nil {
				err = errors.Join(err, w.send(req.ctx, b, &buf))
			}
			req.done <- err
		case <-w.stop:
			for {
				select {
				case b := <-w.sendq:
					w.spoolBlock(b, &buf, false)
				default:
					return
				}
			}
		}
	}
}

// spooler writes blocks the sender had no time for to the spool.
func (w *Writer) spooler() {
	defer w.wg.Done()
	var buf proto.Buffer
	for {
		select {
		case b := <-w.spoolq:
			w.spoolBlock(b, &buf, false)
			w.kickReplayer()
		case <-w.stop:
			for {
				select {
				case b := <-w.spoolq:
					w.spoolBlock(b, &buf, false)
				default:
					return
				}
			}
		}
	}
}

// spoolBlock encodes b into the spool and recycles it.
func (w *Writer) spoolBlock(b *block, buf *proto.Buffer, unknown bool) {
	m, err := w.encode(b, buf)
	if err != nil {
		return
	}
	w.spoolEncoded(m, buf.Buf, unknown)
}

func (w *Writer) spoolEncoded(m blockMeta, native []byte, unknown bool) {
	if err := w.spool.put(m.seq, m.rows, unknown, m.first[:], m.last[:], native); err != nil {
		if w.wal != nil {
			w.log.Error("chlog: spool write failed; rows stay in the WAL for the next start", "rows", m.rows, "err", err)
			return // keep the segment
		}
		w.stats.rowsDropped.Add(int64(m.rows))
		w.log.Error("chlog: spool write failed: rows dropped", "rows", m.rows, "err", err)
		return
	}
	w.releaseWAL(m.seq)
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
}

// encode writes b into buf (reset first) and recycles b. An encode error is a
// broken invariant (column lengths differ); it is logged and the rows counted
// as dropped.
func (w *Writer) encode(b *block, buf *proto.Buffer) (blockMeta, error) {
	m := blockMeta{seq: b.seq, rows: b.rows, first: b.first, last: b.last}
	buf.Reset()
	err := b.encode(buf)
	w.recycle(b)
	if err != nil {
		w.stats.rowsDropped.Add(int64(m.rows))
		w.log.Error("chlog: BUG: encode block", "rows", m.rows, "err", err)
	}
	return m, err
}
