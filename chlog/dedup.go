package chlog

import (
	"context"
	"strings"
)

// Server-side deduplication, where the server has it.
//
// ClickHouse 22.2 added the insert setting insert_deduplication_token
// (ClickHouse pull request 32304): the server names each block of an insert
// <token>_<n> instead of hashing its data and drops a block whose name it
// saw among the table's last N blocks. Replicated tables keep that window
// on every version (replicated_deduplication_window); a plain MergeTree
// only with the table setting non_replicated_deduplication_window > 0.
// With it, every insert carries its block's queryID as the token, so a
// retry of an insert the server had applied is dropped by the server
// itself. The presence check (present.go) still runs before every re-send
// of a block with unknown outcome: it is the guarantee on 18.16, and on
// every version when more than N blocks came in between.

// dedupSince is the first ClickHouse release with insert_deduplication_token.
var dedupSince = serverVersion{22, 2}

// dedupWindow is the number of recent blocks a plain MergeTree table
// remembers for deduplication when the relay sets it.
const dedupWindow = "1000"

// enableServerDedup turns on insert_deduplication_token for servers of
// version v that have it, and on a plain MergeTree table sets
// non_replicated_deduplication_window unless NoMigrate says the operator
// owns the DDL. ensureSchema calls it after the table exists. Nothing here
// is needed for correctness (the presence check is), so a failure is only
// logged.
func (w *Writer) enableServerDedup(ctx context.Context, v serverVersion) {
	if !v.atLeast(dedupSince.major, dedupSince.minor) {
		w.log.Info("chlog: server has no insert_deduplication_token; unknown outcomes are settled by the presence check alone", "server_version", v.String())
		return
	}
	// Harmless where the window is 0: the server then ignores the token.
	w.ch.dedupToken.Store(true)
	db, table := w.o.Database, w.o.Table
	engine, err := w.ch.query(ctx, "SELECT engine FROM system.tables WHERE database = '"+db+"' AND name = '"+table+"'")
	if err != nil {
		w.log.Warn("chlog: dedup: read table engine", "table", db+"."+table, "err", err)
		return
	}
	engine = strings.TrimSpace(engine)
	if strings.HasPrefix(engine, "Replicated") {
		w.log.Info("chlog: inserts carry insert_deduplication_token (replicated table)", "table", db+"."+table)
		return
	}
	if w.o.NoMigrate {
		w.log.Info("chlog: inserts carry insert_deduplication_token; migrate is off, so non_replicated_deduplication_window is the operator's", "table", db+"."+table)
		return
	}
	if _, err := w.ch.query(ctx, "ALTER TABLE "+db+"."+table+" MODIFY SETTING non_replicated_deduplication_window = "+dedupWindow); err != nil {
		w.log.Warn("chlog: dedup: set non_replicated_deduplication_window", "table", db+"."+table, "err", err)
		return
	}
	w.log.Info("chlog: inserts carry insert_deduplication_token", "table", db+"."+table, "non_replicated_deduplication_window", dedupWindow)
}
