package chlog

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// A ClickHouse cluster (Options.Cluster set).
//
// Tables, all made ON CLUSTER so that every node has them:
//
//	<db>.<table>_local  ReplicatedMergeTree('/clickhouse/tables/{shard}/<db>.<table>_local', '{replica}'),
//	                    the same columns, partitions and order as the single-server table
//	<db>.<table>        Distributed(<cluster>, <db>, <table>_local, cityHash64(request_id))
//
// so the product's SQL (FROM <db>.<table>) runs unchanged on any node.
//
// Inserts go to the Distributed table of the current node with
// insert_distributed_sync=1: the node splits the block by
// cityHash64(request_id) and writes each shard's rows to one live replica
// of that shard before it answers. Why this and not an insert per shard by
// the relay: the cluster's layout (shards, weights, replicas, their native
// ports) stays in remote_servers where the servers and every reader take it
// from, the relay needs only HTTP URLs of some nodes, and a block is still
// one request. The default asynchronous Distributed insert is not used: it
// answers 200 with a shard down and keeps the rows in a queue on that
// node's disk, out of reach of the relay's spool and of its exactly-once
// checks.
//
// Exactly once. The split is deterministic (same rows, same order, same
// shards), and ReplicatedMergeTree drops a part whose data it has seen
// among its last replicated_deduplication_window (100) blocks, on either
// replica, because the part's block id is written to ZooKeeper with the
// part. An insert that fails after some shards stored their part (a shard
// down: 279 ALL_CONNECTION_TRIES_FAILED; ZooKeeper gone or a replica
// read-only: 225, 242; a node cut off midway) is therefore an unknown
// outcome: the block is settled by the presence check (present.go, through
// the Distributed table, so on every shard) before a re-send, which sends
// only the rows not found. Rows of one shard and one partition are stored
// as one part or not at all, so a shard's rows are found all or none; when
// the check reads a replica that has not fetched a part yet, the re-sent
// rows of that shard form the same part again and the replicas drop it.
// The processes check asks every node (query_id or initial_query_id), and
// the lookup counts only rows in parts registered in ZooKeeper
// (registered.go: an insert answered 319 "Unknown status" can leave a part
// that one replica serves and the server drops later).
//
// insert_deduplication_token (current servers) is not sent in cluster
// mode: with a token, a re-send of missing rows under a new token would no
// longer be recognised by its data.

// localSuffix names the replicated table under the Distributed one.
const localSuffix = "_local"

// onClusterClause is " ON CLUSTER name", or "" for no cluster.
func onClusterClause(cluster string) string {
	if cluster == "" {
		return ""
	}
	return " ON CLUSTER " + cluster
}

// localTable is the name of the replicated table of the cluster.
func (w *Writer) localTable() string { return w.o.Table + localSuffix }

// replicatedEngine is the local table's engine: its ZooKeeper path is per
// shard (macro {shard}), its replica name per node (macro {replica}).
func replicatedEngine(db, local string) string {
	return "ReplicatedMergeTree('/clickhouse/tables/{shard}/" + db + "." + local + "', '{replica}')"
}

// distributedDDL creates the Distributed table over the local one.
func distributedDDL(db, table, local, cluster string) string {
	return "CREATE TABLE IF NOT EXISTS " + db + "." + table + onClusterClause(cluster) +
		" AS " + db + "." + local +
		" ENGINE = Distributed(" + cluster + ", " + db + ", " + local + ", " + shardingKey + ")"
}

// ensureClusterSchema is ensureSchema for a cluster: what the node the
// client talks to lacks is created ON CLUSTER (IF NOT EXISTS keeps that
// harmless on nodes that have it), missing columns are added ON CLUSTER to
// the local table, and a Distributed table that lacks columns is made
// again over the local one. Nothing runs ON CLUSTER when the node has it
// all: a relay starts with a node down.
func (w *Writer) ensureClusterSchema(ctx context.Context, v serverVersion, version string) error {
	db, table, local, cl := w.o.Database, w.o.Table, w.localTable(), w.o.Cluster
	if err := w.checkClusterName(ctx); err != nil {
		return err
	}
	w.ch.ddlHostDown.Store(false) // each start finds out anew
	localEngine, err := w.tableEngine(ctx, local)
	if err != nil {
		return err
	}
	distEngine, err := w.tableEngine(ctx, table)
	if err != nil {
		return err
	}
	if distEngine == "Distributed" {
		full, err := w.engineFull(ctx, table)
		if err != nil {
			return err
		}
		if over := distributedClusterArg(full); over != "" && over != cl {
			return &SchemaError{Table: db + "." + table, Columns: nil,
				msg: fmt.Sprintf("Distributed over cluster %s, not %s: set storage.clickhouse.cluster to %s, or rename the table away and let the relay create it", over, cl, over)}
		}
		if msg := distributedMismatch(full, db, local); msg != "" {
			return &SchemaError{Table: db + "." + table, Columns: nil,
				msg: msg + " (rename it away and let the relay create it)"}
		}
	}
	if localEngine != "" && localEngine != "ReplicatedMergeTree" && localEngine != "SharedMergeTree" {
		// A Replicated Summing or Replacing MergeTree folds rows of one
		// key (route, second) together: it must be the plain one.
		return &SchemaError{Table: db + "." + local, Columns: nil,
			msg: fmt.Sprintf("engine %s; with cluster %s it must be a ReplicatedMergeTree, which keeps each row as sent (rename it away and let the relay create it)", localEngine, cl)}
	}
	if distEngine != "" && distEngine != "Distributed" {
		return &SchemaError{Table: db + "." + table, Columns: nil,
			msg: fmt.Sprintf("engine %s; with cluster %s it must be the Distributed table over %s (rename it away and let the relay create it)", distEngine, cl, local)}
	}
	// An insert found a node of the cluster without the tables (dropped
	// there, or a replica added since): make them ON CLUSTER although this
	// node has them (IF NOT EXISTS leaves the others alone); the re-check
	// found this node whole, said "fits", and every insert routed to that
	// node failed again, for good. The node is forgotten only once the
	// schema is whole: a CREATE that fails (a timeout, the writer closing)
	// is tried again at the next check, not dropped with the note.
	gone := w.goneOnNode.Load()
	if gone != nil && localEngine != "" && distEngine != "" {
		w.log.Warn("chlog: a node of the cluster lacks the table: creating it ON CLUSTER where missing",
			"node", *gone, "table", db+"."+local, "cluster", cl)
		localEngine, distEngine = "", ""
	}
	if localEngine == "" || distEngine == "" {
		if err := w.clusterDDL(ctx, "CREATE DATABASE IF NOT EXISTS "+db+onClusterClause(cl), "DATABASE "+db); err != nil {
			return fmt.Errorf("chlog: database=%s cluster=%s: %w", db, cl, err)
		}
	}
	if localEngine == "" {
		codecs := v.atLeast(20, 1)
		if err := w.clusterDDL(ctx, tableDDL(db, local, cl, replicatedEngine(db, local), codecs), "TABLE "+db+"."+local); err != nil {
			return fmt.Errorf("chlog: table=%s.%s cluster=%s: create: %w", db, local, cl, err)
		}
		w.log.Info("chlog: created replicated table on the cluster", "table", db+"."+local, "cluster", cl,
			"server_version", version, "schema_version", schemaVersion, "zstd_codecs", codecs)
	} else {
		w.log.Info("chlog: using existing replicated table", "table", db+"."+local, "cluster", cl, "server_version", version)
	}
	if err := w.migrateTable(ctx, local, cl); err != nil {
		return err
	}
	if distEngine == "" {
		if err := w.clusterDDL(ctx, distributedDDL(db, table, local, cl), "TABLE "+db+"."+table); err != nil {
			return fmt.Errorf("chlog: table=%s.%s cluster=%s: create: %w", db, table, cl, err)
		}
		w.log.Info("chlog: created distributed table on the cluster", "table", db+"."+table, "over", local, "cluster", cl)
	} else if err := w.syncDistributed(ctx); err != nil {
		return err
	}
	w.log.Info("chlog: inserts go to the distributed table synchronously (insert_distributed_sync=1); replicas deduplicate re-sent parts",
		"table", db+"."+table, "cluster", cl, "nodes", len(w.ch.nodes))
	if err := w.applyTTL(ctx, v, local, cl); err != nil {
		return err
	}
	if gone != nil {
		w.goneOnNode.CompareAndSwap(gone, nil)
	}
	return nil
}

// syncDistributed gives the cluster a new Distributed table when the one it
// has lacks a column the relay writes. ClickHouse 18.16 refuses ALTER ...
// ON CLUSTER of a Distributed table over a cluster of replicated shards
// (code 371, "Table isn't replicated, but shard is replicated according to
// its cluster definition"), and the table holds no data (inserts are
// synchronous), so a new one is made from the local table under a name of
// its own and swapped in by one RENAME ... ON CLUSTER, then the old one is
// dropped. The table is never missing for longer than between the two
// renames of that statement, so other relays' inserts go on; and a failure
// before the swap leaves the old table in place (dropping it first left
// the cluster without one, and made every insert fail, while the new one
// was created, or for good if that failed). The names carry a random
// suffix: relays migrating at once swap their own tables.
func (w *Writer) syncDistributed(ctx context.Context) error {
	db, table, local, cl := w.o.Database, w.o.Table, w.localTable(), w.o.Cluster
	have, err := w.tableColumnsOf(ctx, table)
	if err != nil {
		return err
	}
	p := planSchema(have)
	if len(p.bad) > 0 {
		return &SchemaError{Table: db + "." + table, Columns: p.badCols, msg: strings.Join(p.bad, "; ")}
	}
	if len(p.missing) == 0 {
		w.dropSwappedOut(ctx)
		return nil
	}
	var names []string
	for _, c := range p.missing {
		names = append(names, c.name)
	}
	if w.o.NoMigrate {
		return &SchemaError{Table: db + "." + table, Columns: names,
			msg: fmt.Sprintf("missing column(s) %s and storage.clickhouse.migrate is false: recreate it (DROP TABLE %s.%s%s; %s) or set migrate: true",
				strings.Join(names, ", "), db, table, onClusterClause(cl), distributedDDL(db, table, local, cl))}
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	next, old := table+"_new_"+suffix, table+"_old_"+suffix
	if err := w.clusterDDL(ctx, distributedDDL(db, next, local, cl), "TABLE "+db+"."+next); err != nil {
		// Timed out, the CREATE still waits in the nodes' DDL queues (18.16
		// holds a node's queue while an ALTER of the replicated table waits
		// for a replica that is down) and runs when they move on: the DROP
		// queued behind it removes the table then. Each failed start made
		// one that stayed on every node for good.
		w.dropSwapTable(ctx, next)
		return fmt.Errorf("chlog: table=%s.%s cluster=%s: create %s to swap in: %w", db, table, cl, next, err)
	}
	swap := "RENAME TABLE " + db + "." + table + " TO " + db + "." + old + ", " + db + "." + next + " TO " + db + "." + table + onClusterClause(cl)
	if err := w.clusterDDL(ctx, swap, "TABLE "+db+"."+old); err != nil {
		w.dropSwapTable(ctx, next)
		return fmt.Errorf("chlog: table=%s.%s cluster=%s: swap in %s: %w", db, table, cl, next, err)
	}
	// The swap is done: what follows gets time of its own, as the start's
	// deadline may be spent by now (a shard down makes each ON CLUSTER
	// statement wait), and a swapped-out table left behind was never
	// dropped (dropSwappedOut drops such at the next start).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.o.InsertTimeout)
	defer cancel()
	// A node that had no Distributed table got none from the RENAME.
	created := w.clusterDDL(ctx, distributedDDL(db, table, local, cl), "TABLE "+db+"."+table)
	if _, err := w.ch.ddl(ctx, "DROP TABLE IF EXISTS "+db+"."+old+onClusterClause(cl)); err != nil {
		w.log.Warn("chlog: the Distributed table swapped out could not be dropped on every node; the next start drops it",
			"table", db+"."+old, "cluster", cl, "err", err)
	}
	if created != nil {
		return fmt.Errorf("chlog: table=%s.%s cluster=%s: create: %w", db, table, cl, created)
	}
	w.log.Warn("chlog: distributed table lacked columns; a new one over the local table was swapped in", "table", db+"."+table,
		"cluster", cl, "columns", strings.Join(names, ","))
	return nil
}

// dropSwappedOut drops the Distributed tables an earlier migration swapped
// out and could not drop (named table_old_ and 8 hex digits, Distributed
// over the local table; found on the node asked): they read the
// same local tables, and a query over every table of the database counted
// each row twice. A relay migrating at this moment drops its own as well;
// a table made to swap in (_new_) is left alone. Failures are logged.
func (w *Writer) dropSwappedOut(ctx context.Context) {
	db, table, cl := w.o.Database, w.o.Table, w.o.Cluster
	// Distributed tables over the local table only: a table an operator
	// made (stream_logs_old_20250101, a dated copy) holds data.
	out, err := w.ch.query(ctx, "SELECT name FROM system.tables WHERE database = "+quoteString(db)+
		" AND match(name, "+quoteString("^"+regexpQuote(table)+"_old_[0-9a-f]{8}$")+")"+
		" AND engine = 'Distributed' AND match(engine_full, "+quoteString("[ ,'\"`]"+regexpQuote(w.localTable())+"[ ,'\"`)]")+") FORMAT TabSeparated")
	if err != nil {
		w.log.Warn("chlog: could not look for Distributed tables an earlier migration left", "database", db, "err", err)
		return
	}
	for _, old := range strings.Fields(out) {
		if _, err := w.ch.ddl(ctx, "DROP TABLE IF EXISTS "+db+"."+old+onClusterClause(cl)); err != nil {
			w.log.Warn("chlog: could not drop the Distributed table an earlier migration swapped out; drop it by hand",
				"table", db+"."+old, "cluster", cl, "err", err)
			continue
		}
		w.log.Info("chlog: dropped the Distributed table an earlier migration swapped out", "table", db+"."+old, "cluster", cl)
	}
}

// regexpQuote escapes the characters of s that a ClickHouse (re2) regular
// expression reads as operators.
func regexpQuote(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\.+*?()|[]{}^$`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// dropSwapTable drops the table made to swap in (syncDistributed) on the
// cluster after the swap failed; a node that does not finish it in time
// runs it from its DDL queue, after the statements queued before it.
func (w *Writer) dropSwapTable(ctx context.Context, next string) {
	name := w.o.Database + "." + next
	if _, err := w.ch.ddl(ctx, "DROP TABLE IF EXISTS "+name+onClusterClause(w.o.Cluster)); err != nil {
		if e, ok := AsException(err); ok && e.Code == codeDDLTimeout {
			w.ch.ddlHostDown.Store(true)
			w.log.Warn("chlog: the table made to swap in is dropped when the nodes' DDL queues move on", "table", name, "err", err)
			return
		}
		w.log.Warn("chlog: could not drop the table made to swap in; drop it by hand", "table", name, "err", err)
	}
}

// clusterDDL runs an ON CLUSTER statement. When it fails but what it makes
// (exists: "DATABASE db" or "TABLE db.t"; "" for nothing) exists now on the
// node the client talks to, the failure was elsewhere (a node down: "some
// hosts will finish in the background", code 159) and is only logged: the
// other nodes catch up from the DDL queue when back.
//
// Once a statement found a host that does not answer (code 159), the
// following ON CLUSTER statements wait for the hosts only briefly
// (ddlTimeoutHostDown): each would wait the whole timeout for the same
// host, and a start's statements together would outlast its budget.
func (w *Writer) clusterDDL(ctx context.Context, sql, exists string) error {
	_, err := w.ch.ddl(ctx, sql)
	if err == nil || exists == "" {
		return err
	}
	if w.ddlLeftToQueue(err) && w.existsHere(ctx, exists) {
		w.log.Warn("chlog: ON CLUSTER statement failed on some node; it exists here, the others catch up when back",
			"cluster", w.o.Cluster, "object", exists, "err", err)
		return nil
	}
	return err
}

// ddlLeftToQueue reports whether an ON CLUSTER statement's failure leaves
// nothing undone once its object exists on this node: a host that did not
// finish in time (code 159: it runs the statement from the DDL queue when
// back; later statements then wait for the hosts only briefly) or one that
// found the object made already (another relay's start). Any other error
// on some host (read-only replica, a refused statement) means that host
// may never have it: the start fails and is tried again, instead of
// leaving a shard without the table or a column for good.
func (w *Writer) ddlLeftToQueue(err error) bool {
	e, ok := AsException(err)
	if !ok {
		return false
	}
	switch e.Code {
	case codeDDLTimeout:
		w.ch.ddlHostDown.Store(true)
		return true
	case codeIllegalColumn, codeDuplicateColumn, codeTableExists, codeDatabaseExists:
		return true
	}
	return false
}

// codeDDLTimeout is TIMEOUT_EXCEEDED: an ON CLUSTER statement some hosts
// did not finish within distributed_ddl_task_timeout.
const codeDDLTimeout = 159

// Codes of a DDL that found its object made already: ILLEGAL_COLUMN
// ("Cannot add column ...: column with this name already exists" on
// 18.16), DUPLICATE_COLUMN, TABLE_ALREADY_EXISTS, DATABASE_ALREADY_EXISTS.
const (
	codeIllegalColumn   = 44
	codeDuplicateColumn = 15
	codeTableExists     = 57
	codeDatabaseExists  = 82
)

// ddlTimeoutHostDown (seconds) is distributed_ddl_task_timeout once a host
// is known not to answer: enough for the live ones (about 0.1 s).
const ddlTimeoutHostDown = 1

// existsHere reports whether "DATABASE db" or "TABLE db.t" exists on the
// node the client talks to. 18.16 has no EXISTS DATABASE (a syntax error):
// databases are looked up in system.databases.
func (w *Writer) existsHere(ctx context.Context, what string) bool {
	q := "EXISTS " + what
	if db, ok := strings.CutPrefix(what, "DATABASE "); ok {
		q = "SELECT count() FROM system.databases WHERE name = " + quoteString(db)
	}
	ans, err := w.ch.query(ctx, q)
	return err == nil && strings.TrimSpace(ans) == "1"
}

// checkClusterName makes sure the node the client talks to has
// Options.Cluster in its remote_servers (system.clusters): a misspelled
// name would otherwise pass while the tables exist (nothing runs ON
// CLUSTER then) and fail the next migration with code 170. The error is a
// SchemaError: a configuration error that stops start-up.
func (w *Writer) checkClusterName(ctx context.Context) error {
	ans, err := w.ch.query(ctx, "SELECT DISTINCT cluster FROM system.clusters ORDER BY cluster FORMAT TSV")
	if err != nil {
		return fmt.Errorf("chlog: cluster=%s: read system.clusters: %w", w.o.Cluster, err)
	}
	var have []string
	for l := range strings.SplitSeq(ans, "\n") {
		if l = strings.TrimSpace(l); l == w.o.Cluster {
			return nil
		} else if l != "" {
			have = append(have, l)
		}
	}
	_, n := w.ch.current()
	return &SchemaError{Table: w.o.Database + "." + w.o.Table, Columns: nil,
		msg: fmt.Sprintf("cluster=%s: not in the remote_servers of node %s (it has: %s): storage.clickhouse.cluster must name the cluster of the relay's tables",
			w.o.Cluster, n.label, strings.Join(have, ", "))}
}

// engineOf reads a table's engine and engine_full.
func (w *Writer) engineOf(ctx context.Context, db, table string) (engine, full string, err error) {
	ans, err := w.ch.query(ctx, "SELECT engine, engine_full FROM system.tables WHERE database = "+quoteString(db)+" AND name = "+quoteString(table)+" FORMAT TSV")
	if err != nil {
		return "", "", fmt.Errorf("chlog: table %s.%s: read its engine: %w", db, table, err)
	}
	engine, full, _ = strings.Cut(strings.TrimRight(ans, "\n"), "\t")
	return engine, strings.ReplaceAll(unescapeTSV(full), `\'`, `'`), nil
}

// engineFull returns the engine with its arguments (system.tables'
// engine_full, quotes unescaped) of table in Options.Database on the node
// the client talks to, "" when there is no such table.
func (w *Writer) engineFull(ctx context.Context, table string) (string, error) {
	_, full, err := w.engineOf(ctx, w.o.Database, table)
	return full, err
}

// distributedClusterArg is the cluster a Distributed engine (engine_full)
// reads and writes, "" for another engine.
func distributedClusterArg(engine string) string {
	engine = strings.ReplaceAll(engine, `\'`, `'`)
	s, ok := strings.CutPrefix(engine, "Distributed(")
	if !ok {
		return ""
	}
	i := strings.IndexAny(s, ",)")
	if i < 0 {
		return ""
	}
	return strings.Trim(strings.TrimSpace(s[:i]), "'`\"")
}

// shardingKey is the sharding key of the Distributed table the relay makes:
// a block sent again goes to the shards it went to before, where the
// replicas' deduplication drops what was stored already.
const shardingKey = "cityHash64(request_id)"

// distributedMismatch says how a Distributed engine (engine_full) differs
// from the one the relay makes over db.local (with shardingKey), "" when it
// does not. Over another table the relay would migrate one table and fill
// another; with another key (rand(), none) a block sent again is split
// over other shards than before, and its rows are stored twice.
func distributedMismatch(engine, db, local string) string {
	args := distributedArgs(engine)
	switch {
	case len(args) < 3:
		return ""
	case args[1] != db || args[2] != local:
		return fmt.Sprintf("Distributed over %s.%s, not %s.%s", args[1], args[2], db, local)
	case len(args) < 4 || strings.ReplaceAll(args[3], " ", "") != shardingKey:
		key := "none"
		if len(args) >= 4 {
			key = args[3]
		}
		return fmt.Sprintf("Distributed with sharding key %s, not %s: a block sent again must reach the shards it reached before", key, shardingKey)
	}
	return ""
}

// distributedArgs returns the arguments of a Distributed engine as
// system.tables' engine_full shows it, unquoted; nil for another engine.
func distributedArgs(engine string) []string {
	engine = strings.ReplaceAll(engine, `\'`, `'`)
	s, ok := strings.CutPrefix(engine, "Distributed(")
	if !ok {
		return nil
	}
	var args []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			if depth == 0 {
				return append(args, strings.Trim(strings.TrimSpace(s[start:i]), "'`\""))
			}
			depth--
		case ',':
			if depth == 0 {
				args = append(args, strings.Trim(strings.TrimSpace(s[start:i]), "'`\""))
				start = i + 1
			}
		}
	}
	return nil // no closing parenthesis
}

// tableEngine returns the engine of table in Options.Database on the node
// the client talks to, "" when there is no such table.
func (w *Writer) tableEngine(ctx context.Context, table string) (string, error) {
	engine, _, err := w.engineOf(ctx, w.o.Database, table)
	return engine, err
}

// ddl runs a DDL statement. In cluster mode it waits for the whole answer
// before the status is sent (wait_end_of_query=1: an ON CLUSTER statement
// streams one row per host, and an error after the first row would come
// with status 200) and bounds the wait for the hosts
// (distributed_ddl_task_timeout, below the caller's timeout).
func (c *chClient) ddl(ctx context.Context, sql string) (string, error) {
	if c.cluster == "" {
		return c.query(ctx, sql)
	}
	q := url.Values{}
	q.Set("wait_end_of_query", "1")
	timeout := c.ddlTimeout
	if c.ddlHostDown.Load() {
		timeout = min(timeout, ddlTimeoutHostDown)
	}
	q.Set("distributed_ddl_task_timeout", strconv.Itoa(timeout))
	var out bytes.Buffer
	err := c.post(ctx, "/?"+q.Encode(), "", []byte(sql), &out)
	return out.String(), err
}

// ddlTimeoutFor is distributed_ddl_task_timeout in seconds for an insert
// timeout d: half of it, so that the server's answer (naming the hosts
// that did not finish) comes before the relay gives up.
func ddlTimeoutFor(d time.Duration) int {
	if d <= 0 {
		d = 30 * time.Second
	}
	return max(1, int(d.Seconds()/2))
}

// NodeErrors is how often one ClickHouse node failed by its own fault
// (refused, cut, timed out, a 5xx without a ClickHouse code).
type NodeErrors struct {
	Node   string // host:port of its URL
	Errors int64
}

// NodeErrors returns the failure count of every node of Options.URLs, in
// their order (nil in embedded mode).
func (w *Writer) NodeErrors() []NodeErrors {
	if w.ch == nil {
		return nil
	}
	out := make([]NodeErrors, len(w.ch.nodes))
	for i, n := range w.ch.nodes {
		out[i] = NodeErrors{Node: n.label, Errors: n.errors.Load()}
	}
	return out
}
