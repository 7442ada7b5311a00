// Package chlog stores every finished request as one row of the ClickHouse
// table stream_logs, whole: headers, request body and response chunks.
//
// Rows are copied into ch-go proto columns of the current Native block
// (a large request body is taken by reference instead: bodycol.go),
// put in the table's key order when it is encoded (order.go), and
// group-committed over ClickHouse's HTTP interface as
// INSERT INTO db.table FORMAT Native (LZ4-compressed with decompress=1),
// which works on ClickHouse 18.16 as on current servers, unlike ch-go's TCP
// client. What cannot be inserted goes to a spool directory of raw Native
// files that a replayer re-sends; with no URL the spool is the sink.
//
//	w, err := chlog.New(chlog.Options{URL: "http://127.0.0.1:8123"})
//	...
//	w.Write(rec)        // once per finished request; never waits on I/O
//	...
//	err = w.Close(ctx)  // final flush, or spool
//
// Crash windows: with durability "batch" a crash loses at most the rows of
// the current block (one FlushInterval) and those handed to the sender or
// spooler but not yet spooled; with "wal" a row is on disk before Write
// returns (see wal.go for how each row ends up stored exactly once).
package chlog
