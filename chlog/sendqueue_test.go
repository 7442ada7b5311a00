package chlog

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/compress"
)

// TestSendQueueBounds: the queue keeps blocks in order up to its byte
// bound (an empty queue takes any block), and popAged takes only blocks
// queued before the cutoff.
func TestSendQueueBounds(t *testing.T) {
	q := newSendQueue(100)
	t0 := time.Now()
	mk := func(n int) *block { return &block{bytes: n} }
	big := mk(500)
	if !q.push(big, t0) {
		t.Fatal("an empty queue refused a block larger than its bound")
	}
	if q.push(mk(1), t0) {
		t.Fatal("a full queue took another block")
	}
	if q.pop() != big || q.pop() != nil || q.len() != 0 {
		t.Fatal("pop did not empty the queue in order")
	}
	a, b, c := mk(40), mk(40), mk(40)
	if !q.push(a, t0) || !q.push(b, t0.Add(time.Second)) {
		t.Fatal("blocks within the bound refused")
	}
	if q.push(c, t0) {
		t.Fatal("block past the bound taken")
	}
	if got := q.popAged(t0.Add(-time.Millisecond)); got != nil {
		t.Fatal("popAged took a block queued after the cutoff")
	}
	if got := q.popAged(t0.Add(time.Millisecond)); got != a {
		t.Fatal("popAged did not take the aged block")
	}
	if got := q.popAged(t0.Add(time.Millisecond)); got != nil {
		t.Fatal("popAged took a younger block")
	}
	if !q.push(c, t0) || q.len() != 2 || q.pop() != b || q.pop() != c {
		t.Fatal("queue lost order after popAged")
	}
}

// TestSendQueueNeverEmpty: a queue that never empties (one block pushed
// for each popped, always some waiting) keeps its arrays bounded and its
// order. Before the fix they grew by every block ever pushed.
func TestSendQueueNeverEmpty(t *testing.T) {
	q := newSendQueue(1 << 30)
	t0 := time.Now()
	var next, want int
	push := func() {
		if !q.push(&block{bytes: 1, rows: next}, t0.Add(time.Duration(next))) {
			t.Fatal("push refused")
		}
		next++
	}
	for range 10 {
		push()
	}
	for range 10000 {
		push()
		b := q.pop()
		if b == nil || b.rows != want {
			t.Fatalf("popped %v, want block %d", b, want)
		}
		want++
	}
	if q.len() != 10 || cap(q.blocks) > 4*compactAfter || cap(q.cutAt) > 4*compactAfter {
		t.Fatalf("len %d, caps %d and %d after 10000 blocks through a queue of 10: want 10, and caps bounded", q.len(), cap(q.blocks), cap(q.cutAt))
	}
	if got := q.popAged(t0.Add(time.Duration(want))); got == nil || got.rows != want {
		t.Fatalf("popAged after compaction: %v, want block %d (cutAt moved with its block)", got, want)
	}
}

// TestZBodyFrames: the body is the source compressed into ClickHouse's
// frames, extended by the pieces more gives until it gives none, and an
// ended body cannot be read.
func TestZBodyFrames(t *testing.T) {
	src := bytes.Repeat([]byte("data: {\"delta\":\"tok\"}\n\n"), 3*compressChunk/20)
	first := src[:compressChunk+100]
	calls := 0
	z := &zbody{src: first, lz4: compress.NewWriter(compress.LevelZero, compress.LZ4), more: func() []byte {
		calls++
		if calls == 1 {
			return src[len(first):] // the rest, as a piece of its own
		}
		return nil
	}}
	framed, err := io.ReadAll(z)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	got := make([]byte, len(src))
	r := compress.NewReader(bytes.NewReader(framed))
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatalf("decompress: %v", err)
	}
	if n, _ := r.Read(make([]byte, 1)); n != 0 {
		t.Fatal("body longer than its source")
	}
	if !bytes.Equal(got, src) || calls != 2 {
		t.Fatalf("decompressed %d bytes (want %d) after %d calls of more (want 2)", len(got), len(src), calls)
	}
	z.end()
	if _, err := z.Read(make([]byte, 10)); !errors.Is(err, errBodyEnded) {
		t.Fatalf("read after end: %v; want errBodyEnded", err)
	}
}

// TestZBodyPlain: without a compressor the body is the Native bytes as
// they are, extended by the pieces more gives, read in pieces of at most
// compressChunk.
func TestZBodyPlain(t *testing.T) {
	src := bytes.Repeat([]byte("0123456789"), compressChunk/4)
	calls := 0
	z := &zbody{src: src[:compressChunk+7], more: func() []byte {
		calls++
		if calls == 1 {
			return src[compressChunk+7:]
		}
		return nil
	}}
	var got []byte
	buf := make([]byte, 3*compressChunk)
	for i := 0; i < 100; i++ {
		n, err := z.Read(buf)
		if n > compressChunk {
			t.Fatalf("read %d bytes at once; want at most %d", n, compressChunk)
		}
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, src) || calls != 2 {
		t.Fatalf("body of %d bytes (want %d) after %d calls of more (want 2)", len(got), len(src), calls)
	}
}

// pieceWriter records each write it is given.
type pieceWriter struct {
	all    []byte
	writes []int
}

func (w *pieceWriter) Write(p []byte) (int, error) {
	w.all = append(w.all, p...)
	w.writes = append(w.writes, len(p))
	return len(p), nil
}

// TestZBodyWriteTo: written out (the transport's io.Copy), the body is the
// same bytes as read, raw or compressed, in one write per piece (at most
// compressChunk raw bytes, or one frame) instead of a copy per 32 KiB; an
// ended body writes nothing.
func TestZBodyWriteTo(t *testing.T) {
	src := bytes.Repeat([]byte("data: {\"delta\":\"tok\"}\n\n"), 3*compressChunk/20)
	cut := compressChunk + 100
	for _, compressed := range []bool{false, true} {
		newBody := func() *zbody {
			calls := 0
			z := &zbody{src: src[:cut], more: func() []byte {
				calls++
				if calls == 1 {
					return src[cut:]
				}
				return nil
			}}
			if compressed {
				z.lz4 = compress.NewWriter(compress.LevelZero, compress.LZ4)
			}
			return z
		}
		want, err := io.ReadAll(newBody())
		if err != nil {
			t.Fatal(err)
		}
		var w pieceWriter
		n, err := io.Copy(&w, newBody()) // as the transport copies it
		if err != nil || n != int64(len(want)) || !bytes.Equal(w.all, want) {
			t.Fatalf("compressed %v: WriteTo wrote %d bytes (%v), want the %d Read gives", compressed, n, err, len(want))
		}
		// Each piece in compressChunk parts; compressed, a frame each.
		parts := func(n int) int { return (n + compressChunk - 1) / compressChunk }
		if k := parts(cut) + parts(len(src)-cut); len(w.writes) != k {
			t.Errorf("compressed %v: %d writes %v, want %d", compressed, len(w.writes), w.writes, k)
		}
		for _, k := range w.writes {
			if !compressed && k > compressChunk {
				t.Errorf("a write of %d raw bytes, want at most %d", k, compressChunk)
			}
		}
		z := newBody()
		z.end()
		if n, err := z.WriteTo(&w); n != 0 || !errors.Is(err, errBodyEnded) {
			t.Errorf("WriteTo after end: %d, %v; want 0, errBodyEnded", n, err)
		}
	}
}

// TestCompressionPerNode: auto compresses inserts to every node but one on
// loopback, and says so to the server (decompress=1) exactly then.
func TestCompressionPerNode(t *testing.T) {
	tests := []struct {
		mode, url string
		want      bool
	}{
		{CompressionAuto, "http://127.0.0.1:8123", false},
		{CompressionAuto, "http://127.3.4.5:8123", false},
		{CompressionAuto, "http://[::1]:8123", false},
		{CompressionAuto, "http://localhost:8123", false},
		{CompressionAuto, "http://10.0.0.7:8123", true},
		{CompressionAuto, "https://ch.example.com", true},
		{CompressionLZ4, "http://127.0.0.1:8123", true},
		{CompressionNone, "https://ch.example.com", false},
	}
	for _, tt := range tests {
		c := newClient(&Options{URL: tt.url, Database: "relay", Table: "stream_logs", Compression: tt.mode})
		n := c.nodes[0]
		if n.compress != tt.want || strings.Contains(n.insertURL, "decompress=1") != tt.want {
			t.Errorf("%s to %s: compress %v, insert URL %s; want compress %v", tt.mode, tt.url, n.compress, n.insertURL, tt.want)
		}
	}
}

// TestBurstOneStreamedInsert: blocks cut while an insert waits go into it
// as it streams, in memory: one insert of every row, nothing spooled (the
// sender once took one waiting block and spooled the rest); compressed or
// not.
func TestBurstOneStreamedInsert(t *testing.T) {
	for _, mode := range []string{CompressionLZ4, CompressionNone} {
		t.Run(mode, func(t *testing.T) { testBurstOneStreamedInsert(t, mode) })
	}
}

func testBurstOneStreamedInsert(t *testing.T, compression string) {
	chURL, db := testDB(t)
	var inserts []int
	w := newWriter(t, Options{URL: chURL, Database: db, BatchRows: 5, FlushInterval: time.Hour, Compression: compression,
		OnInsert: func(_ time.Duration, rows int, err error) {
			if err == nil {
				inserts = append(inserts, rows)
			}
		}})
	want := map[string]bool{}
	w.insertMu.Lock() // the sender's first insert waits until all blocks are cut
	for i := range 25 {
		r := sseRecord(i, 20)
		want[string(r.ID[:])] = true
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	w.insertMu.Unlock()
	waitFor(t, "rows in ClickHouse", 30*time.Second, func() bool { return count(t, chURL, db) == 25 })
	closeWriter(t, w)
	assertExactlyOnce(t, chURL, db, want)
	if st := w.Stats(); st.RowsSpooled != 0 || len(inserts) != 1 || inserts[0] != 25 {
		t.Fatalf("inserts %v, %d rows spooled; want one insert of 25 rows, none spooled", inserts, st.RowsSpooled)
	}
}

// TestBurstCutInsertExactlyOnce: a streamed insert that gathered a
// burst's blocks (each in its own buffer) and was cut keeps all of them:
// retried live after the server applied it (found present, not re-sent),
// or spooled as one file of every row when the server never saw it and
// replayed; every row stored exactly once.
func TestBurstCutInsertExactlyOnce(t *testing.T) {
	tests := []struct {
		name    string
		mode    int
		retries int
	}{
		{"cut after applied, retried live", cutAfterOnce, 2},
		{"cut before, spooled and replayed", cutBefore, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chURL, db := testDB(t)
			p, proxyURL := newCutProxy(t, chURL)
			dir := t.TempDir()
			w := newWriter(t, Options{URL: proxyURL, Database: db, SpoolDir: dir, BatchRows: 5,
				FlushInterval: time.Hour, Retries: tt.retries})
			p.mode.Store(int32(tt.mode))
			want := map[string]bool{}
			w.insertMu.Lock() // the first insert starts once all five blocks are cut
			for i := range 25 {
				r := sseRecord(i, 20)
				want[string(r.ID[:])] = true
				if err := w.Write(r); err != nil {
					t.Fatal(err)
				}
			}
			w.insertMu.Unlock()
			if tt.mode == cutBefore {
				waitFor(t, "the cut insert spooled", 30*time.Second, func() bool { return w.Stats().RowsSpooled == 25 })
				names := spoolNames(t, dir)
				if len(names) != 1 || parseMust(t, names[0]).rows != 25 {
					t.Fatalf("spool %v; want one file of all 25 rows", names)
				}
				p.mode.Store(passThrough)
				w.kickReplayer()
			}
			waitFor(t, "rows in ClickHouse", 60*time.Second, func() bool { return count(t, chURL, db) == 25 })
			closeWriter(t, w)
			assertExactlyOnce(t, chURL, db, want)
			if got := p.sent.Load(); got != 1 {
				t.Errorf("server received %d inserts; want 1", got)
			}
		})
	}
}

// TestQueuedBlockSpooledAfterInterval: a block that waited a flush
// interval for a busy sender goes to the spool, so the default
// durability's crash window stays about one flush interval; it reaches
// ClickHouse once, through the replayer.
func TestQueuedBlockSpooledAfterInterval(t *testing.T) {
	chURL, db := testDB(t)
	w := newWriter(t, Options{URL: chURL, Database: db, BatchRows: 5, FlushInterval: 200 * time.Millisecond})
	want := map[string]bool{}
	w.insertMu.Lock() // the server is "busy": no insert can start
	for i := range 10 {
		r := sseRecord(i, 20)
		want[string(r.ID[:])] = true
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a waiting block spooled", 30*time.Second, func() bool { return w.Stats().RowsSpooled >= 5 })
	w.insertMu.Unlock()
	waitFor(t, "rows in ClickHouse", 30*time.Second, func() bool { return count(t, chURL, db) == 10 })
	closeWriter(t, w)
	assertExactlyOnce(t, chURL, db, want)
}
