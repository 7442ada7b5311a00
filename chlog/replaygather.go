package chlog

import (
	"path/filepath"
)

// spoolGather lets a replayed insert take in the spool files queued behind
// the one it began with, oldest first, while it runs, up to limit bytes
// (the writer's coalesceLimit): each insert makes a part on the server, so
// a spool drained one insert per file costs ClickHouse a part (and its
// merges) per file. Only files known not to be stored that read and verify
// join; the first that does not ends the gathering and heads a later
// insert, where the replayer's checks deal with it alone.
//
// next runs on the HTTP transport's goroutine while the replayer waits in
// deliverGathering; the replayer reads files only after the body ended.
type spoolGather struct {
	w        *Writer
	m        blockMeta   // the insert's rows so far
	head     spoolFile   // the file the insert began with
	headData []byte      // its bytes
	files    []spoolFile // taken behind the head, oldest first
	datas    [][]byte    // their bytes
	size     int
	limit    int
	ended    bool
}

func newSpoolGather(w *Writer, head spoolFile, data []byte) *spoolGather {
	return &spoolGather{w: w, m: head.meta(), head: head, headData: data, size: len(data), limit: w.coalesceLimit()}
}

// newest is the last file of the insert so far.
func (g *spoolGather) newest() spoolFile {
	if n := len(g.files); n > 0 {
		return g.files[n-1]
	}
	return g.head
}

// next reads the file behind the last one taken, or returns nil.
func (g *spoolGather) next() []byte {
	if g.ended || g.size >= g.limit {
		return nil
	}
	f, ok := g.w.spool.nextAfter(g.newest())
	if !ok {
		return nil
	}
	data, err := readSpoolFile(filepath.Join(g.w.spool.dir, f.name))
	if err == nil {
		var trailing int
		if data, trailing, err = verifySpool(data, f); trailing > 0 {
			g.w.log.Warn("chlog: replay: bytes after a spool file's rows are not the relay's: its rows are sent without them",
				"file", f.name, "rows", f.rows, "trailing_bytes", trailing)
		}
	}
	if err != nil {
		_ = g.w.spool.done(f, false) // it heads a later insert, alone
		return nil
	}
	g.files = append(g.files, f)
	g.datas = append(g.datas, data)
	g.size += len(data)
	g.m.rows += f.rows
	g.m.last = f.meta().last
	return data
}

// end returns the insert as sent: on failure its files joined, for the
// retries.
func (g *spoolGather) end(ok bool) (blockMeta, []byte) {
	g.ended = true
	if ok || len(g.datas) == 0 {
		return g.m, g.headData
	}
	joined := make([]byte, 0, g.size)
	joined = append(joined, g.headData...)
	for _, d := range g.datas {
		joined = append(joined, d...)
	}
	return g.m, joined
}

// taken returns the files of the insert: head (the file sent, when nothing
// gathered) and those gathered behind it.
func (g *spoolGather) taken(head spoolFile) []spoolFile {
	if g == nil {
		return []spoolFile{head}
	}
	return append([]spoolFile{g.head}, g.files...)
}
