package chlog

import "sync/atomic"

// Stats are the writer's counters since New, for metrics.
type Stats struct {
	RowsWritten  int64 // rows confirmed in ClickHouse (live and replayed)
	RowsSpooled  int64 // rows written to spool files
	RowsReplayed int64 // spooled rows later inserted (also in RowsWritten)
	RowsDropped  int64 // rows lost: spool cap, overload, write after Close, failed spool write
	InsertErrors int64 // failed insert attempts, retries included
	WALErrors    int64 // failed WAL writes or fsyncs
	SpoolFiles   int64 // files in the spool now
	SpoolBytes   int64 // bytes in the spool now

	RowsRejected  int64 // rows of blocks moved to spool_dir/rejected/ (can never be inserted as they are), and WAL records recovery could not read (their segment is copied there)
	Blocked       int64 // 1 while the head block keeps failing with a schema error, else 0
	BufferedBytes int64 // captured bytes held in memory now (records and blocks), against MaxBufferBytes
	RowsDegraded  int64 // rows stored meta only because storage was over its memory budget
	Refused       int64 // requests refused with 503 storage_overloaded
}

type counters struct {
	rowsWritten, rowsSpooled, rowsReplayed, rowsDropped atomic.Int64
	insertErrors, walErrors                             atomic.Int64
	spoolFiles, spoolBytes                              atomic.Int64
	rowsRejected, blocked, bufferedBytes                atomic.Int64
	rowsDegraded, refused                               atomic.Int64
}

// Stats returns a snapshot of the counters.
func (w *Writer) Stats() Stats {
	c := &w.stats
	return Stats{
		RowsWritten:  c.rowsWritten.Load(),
		RowsSpooled:  c.rowsSpooled.Load(),
		RowsReplayed: c.rowsReplayed.Load(),
		RowsDropped:  c.rowsDropped.Load(),
		InsertErrors: c.insertErrors.Load(),
		WALErrors:    c.walErrors.Load(),
		SpoolFiles:   c.spoolFiles.Load(),
		SpoolBytes:   c.spoolBytes.Load(),

		RowsRejected:  c.rowsRejected.Load(),
		Blocked:       c.blocked.Load(),
		BufferedBytes: c.bufferedBytes.Load(),
		RowsDegraded:  c.rowsDegraded.Load(),
		Refused:       c.refused.Load(),
	}
}
