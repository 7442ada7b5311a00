package chlog

import (
	"context"
	"strings"
	"time"
)

// ClickHouse 18.16 takes a Native block with a column its table lacks and
// drops that column's values without a word: a column dropped while the
// relay runs (an operator's ALTER TABLE ... DROP COLUMN, a migration gone
// wrong) lost that field of every row from then on, counted as written,
// until the next start added it back. The replayer, between its passes,
// reads the table's columns every columnWatchEvery; when one the relay
// writes is missing, inserts stop (the rows go to the spool, whole) and
// the next pass makes the schema whole as a start does (migrate adds the
// column; with migrate: false the queue blocks, loud), then replays them.
// Rows inserted between the drop and the next look lose the field.

// columnWatchEvery is how often the replayer reads the table's columns.
var columnWatchEvery = 15 * time.Second

// columnsMissing reports whether the table the relay inserts into lacks a
// column it writes, and logs which. A table that cannot be read (the
// server unreachable, the table gone: inserts tell of those) reports false.
func (w *Writer) columnsMissing(ctx context.Context) bool {
	have, err := w.tableColumnsOf(ctx, w.o.Table)
	if err != nil || len(have) == 0 {
		return false
	}
	p := planSchema(have)
	if len(p.missing) == 0 {
		return false
	}
	names := make([]string, len(p.missing))
	for i, c := range p.missing {
		names[i] = c.name
	}
	w.log.Error("chlog: the table lacks column(s) the relay writes (dropped while it ran?); rows go to the spool until the schema is whole again",
		"table", w.o.Database+"."+w.o.Table, "columns", strings.Join(names, ","))
	return true
}

// watchColumns runs columnsMissing when columnWatchEvery has passed since
// last (updated), and readies the next replay pass to repair the schema
// when a column is missing.
func (w *Writer) watchColumns(last *time.Time) {
	if w.ch == nil || time.Since(*last) < columnWatchEvery {
		return
	}
	*last = time.Now()
	ctx, cancel := context.WithTimeout(w.ctx, w.o.InsertTimeout)
	defer cancel()
	if w.columnsMissing(ctx) {
		w.schemaPending.Store(true)
		w.down.Store(true) // live blocks join the spool (send)
	}
}
