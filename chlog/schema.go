package chlog

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"strings"
)

// schemaVersion is the version of the table layout below: the highest
// since of any column. Raise it with each column added; never change or
// remove a column of an earlier version (tables of older releases are
// upgraded by adding what they lack, see migrate.go).
//
//	1: the first release's columns
//	2: truncated_reason (why a capture was cut: max_capture, storage_budget)
const schemaVersion = 2

// column is one column of the table: its name, its ClickHouse type (as
// system.columns spells it) and the schema version it arrived in.
type column struct {
	name, typ string
	since     int
}

// columns is the table layout, declared once: CREATE TABLE, the start-up
// comparison with system.columns and the ALTERs that add missing columns
// all come from it. Names, types and order match block.input (checked by
// TestSchemaMatchesBlock).
var columns = []column{
	{"request_id", "String", 1},
	{"created_at", "DateTime", 1},
	{"route", "String", 1},
	{"tenant_id", "String", 1},
	{"key_id", "String", 1},
	{"model", "String", 1},
	{"method", "String", 1},
	{"path", "String", 1},
	{"upstream", "String", 1},
	{"status", "UInt16", 1},
	{"error_type", "String", 1},
	{"ttfb_ms", "Nullable(UInt32)", 1},
	{"ttft_ms", "Nullable(UInt32)", 1},
	{"duration_ms", "UInt32", 1},
	{"bytes_in", "UInt64", 1},
	{"bytes_out", "UInt64", 1},
	{"chunk_count", "UInt32", 1},
	{"tokens_in", "Nullable(UInt64)", 1},
	{"tokens_out", "Nullable(UInt64)", 1},
	{"request_headers", "String", 1},
	{"response_headers", "String", 1},
	{"request_body", "String", 1},
	{"response_chunks", "Array(String)", 1},
	{"chunk_offsets_ms", "Array(UInt32)", 1},
	{"truncated", "UInt8", 1},
	{"client_ip", "String", 1},
	{"user_agent", "String", 1},
	{"instance", "String", 1},
	{"truncated_reason", "String", 2},
}

// bulkyColumns hold the captured bytes; on servers with codecs they get ZSTD.
var bulkyColumns = map[string]bool{
	"request_headers": true, "response_headers": true,
	"request_body": true, "response_chunks": true,
}

// createTableSQL returns the DDL. It uses only what ClickHouse 18.16
// understands, plus column codecs when withCodecs is set.
//
// Layout, for the product's three queries:
//   - PARTITION BY toYYYYMMDD(created_at): "tokens by tenant today" and
//     "TTFT p95 over 10 minutes" prune to one or two daily partitions, and
//     old days can be dropped (or TTL'd) a partition at a time.
//   - ORDER BY (route, created_at): the p95 query groups by route over a
//     recent time range; with few routes, each route's rows are one sorted
//     run, so the primary index skips all granules outside the last 10
//     minutes in every run. The tenant query reads today's partition whole,
//     which it must anyway.
//   - request_id lookups have no index on 18.16 (skip indexes are
//     experimental there); they scan the request_id column only (about 33
//     bytes a row), and PREWHERE (automatic) then reads the bulky columns of
//     the matching granule alone. index_granularity 1024 instead of 8192
//     makes that granule small, as rows carry kilobytes of captured bytes.
func createTableSQL(db, table string, withCodecs bool) string {
	return tableDDL(db, table, "", "MergeTree", withCodecs)
}

// tableDDL is the CREATE TABLE of the layout above with the given engine,
// ON CLUSTER onCluster when that is set.
func tableDDL(db, table, onCluster, engine string, withCodecs bool) string {
	var s strings.Builder
	fmt.Fprintf(&s, "CREATE TABLE IF NOT EXISTS %s.%s%s (\n", db, table, onClusterClause(onCluster))
	for i, c := range columns {
		fmt.Fprintf(&s, "    %s %s", c.name, c.typ)
		if withCodecs && bulkyColumns[c.name] {
			s.WriteString(" CODEC(ZSTD(3))")
		}
		if i < len(columns)-1 {
			s.WriteString(",")
		}
		s.WriteString("\n")
	}
	s.WriteString(") ENGINE = " + engine + "\nPARTITION BY toYYYYMMDD(created_at)\nORDER BY (route, created_at)\nSETTINGS index_granularity = 1024")
	return s.String()
}

// serverVersion is a parsed "major.minor" of SELECT version().
type serverVersion struct{ major, minor int }

func parseVersion(s string) serverVersion {
	parts := strings.SplitN(strings.TrimSpace(s), ".", 3)
	var v serverVersion
	if len(parts) >= 2 {
		v.major, _ = strconv.Atoi(parts[0])
		v.minor, _ = strconv.Atoi(parts[1])
	}
	return v
}

func (v serverVersion) atLeast(major, minor int) bool {
	return v.major > major || v.major == major && v.minor >= minor
}

func (v serverVersion) String() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

// ensureSchema creates the database and table when missing, brings an
// existing table up to the schema (migrate.go) or refuses it with an error
// wrapping ErrSchema, and applies the version-dependent extras, logging
// what it did.
func (w *Writer) ensureSchema(ctx context.Context) error {
	vs, err := w.ch.query(ctx, "SELECT version()")
	if err != nil {
		return fmt.Errorf("chlog: urls: %w", err)
	}
	v := parseVersion(vs)
	if w.o.Cluster != "" {
		return w.ensureClusterSchema(ctx, v, strings.TrimSpace(vs))
	}
	db, table := w.o.Database, w.o.Table
	exists, err := w.ch.query(ctx, "EXISTS TABLE "+db+"."+table)
	if err != nil {
		// 18.16 errors when the database itself is missing; any other
		// error (a busy server) says nothing, and the checks of an
		// existing table below must not be skipped on it.
		if e, ok := AsException(err); !ok || e.Code != codeUnknownDatabase {
			return fmt.Errorf("chlog: table=%s.%s: %w", db, table, err)
		}
		exists = "0"
	}
	if strings.TrimSpace(exists) == "1" {
		// The Distributed table of a cluster without cluster set would
		// take inserts asynchronously: answered 200 with a shard down, the
		// rows queued on the node's disk, out of reach of the spool and of
		// the exactly-once checks.
		engine, full, err := w.engineOf(ctx, db, table)
		if err != nil {
			return err
		}
		if over := distributedClusterArg(full); over != "" {
			return &SchemaError{Table: db + "." + table, Columns: nil,
				msg: fmt.Sprintf("Distributed over cluster %s, but storage.clickhouse.cluster is not set: set it to %s (inserts then go synchronously to every shard), or point storage.clickhouse.table at a single-server table", over, over)}
		}
		if err := w.checkEngine(ctx, table, engine, full); err != nil {
			return err
		}
		w.log.Info("chlog: using existing table", "table", db+"."+table, "server_version", strings.TrimSpace(vs))
	} else {
		// Only now: a user allowed to insert but not to run DDL (the
		// operator made the table) is refused even a CREATE DATABASE IF
		// NOT EXISTS of a database that exists.
		if _, err := w.ch.query(ctx, "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
			return fmt.Errorf("chlog: database=%s: %w", db, err)
		}
		// Codecs came in 19.10; 20.1 is a conservative bound.
		codecs := v.atLeast(20, 1)
		if _, err := w.ch.query(ctx, createTableSQL(db, table, codecs)); err != nil {
			return fmt.Errorf("chlog: table=%s.%s: create: %w", db, table, err)
		}
		w.log.Info("chlog: created table", "table", db+"."+table, "server_version", strings.TrimSpace(vs),
			"schema_version", schemaVersion, "zstd_codecs", codecs)
	}
	// Also right after CREATE: IF NOT EXISTS is a no-op when another relay
	// (perhaps an older release) created the table in between.
	if err := w.migrate(ctx); err != nil {
		return err
	}
	w.enableServerDedup(ctx, v)
	return w.applyTTL(ctx, v, table, "")
}

// storingEngines keep every row inserted, as it was sent. (SharedMergeTree
// is ClickHouse Cloud's MergeTree. The Log engines keep rows, but cannot
// be ALTERed: a table of one must have every column already.)
var storingEngines = map[string]bool{
	"MergeTree": true, "ReplicatedMergeTree": true, "SharedMergeTree": true, "Distributed": true,
	"Log": true, "TinyLog": true, "StripeLog": true,
}

// checkEngine refuses an existing table whose engine does not keep each
// row as sent: a Summing, Replacing, Aggregating or Collapsing MergeTree
// folds rows of one key (route, second) together, Null drops them, Memory
// loses them at a restart, a view takes no inserts. Each was answered
// "fits" and rows were lost or every insert failed. A Buffer in front of a
// table is taken, with a warning (the relay migrates the Buffer's
// columns, not its destination's), when its destination passes the same
// checks: a Buffer over Null lost every row, one over an asynchronous
// Distributed table got around that refusal.
func (w *Writer) checkEngine(ctx context.Context, table, engine, full string) error {
	name := w.o.Database + "." + table
	if engine == "Buffer" {
		db, dest, ok := bufferDestination(full, w.o.Database)
		if !ok {
			return &SchemaError{Table: name, msg: "a Buffer whose destination table cannot be read from its engine (" + full + ")"}
		}
		destEngine, destFull, err := w.engineOf(ctx, db, dest)
		if err != nil {
			return err
		}
		if over := distributedClusterArg(destFull); over != "" {
			return &SchemaError{Table: name, msg: fmt.Sprintf("a Buffer over %s.%s, Distributed over cluster %s, but storage.clickhouse.cluster is not set: point storage.clickhouse.table at a single-server table", db, dest, over)}
		}
		if destEngine != "Distributed" && !storingEngines[destEngine] {
			return &SchemaError{Table: name, msg: fmt.Sprintf("a Buffer over %s.%s of engine %s, which does not keep each row as sent: use a MergeTree or ReplicatedMergeTree table", db, dest, cmp.Or(destEngine, "(missing)"))}
		}
		w.log.Warn("chlog: the table is a Buffer: the relay adds missing columns to it, not to its destination table; ALTER the destination too after an upgrade",
			"table", name, "destination", db+"."+dest)
		return nil
	}
	if !storingEngines[engine] {
		return &SchemaError{Table: name,
			msg: "engine " + engine + " does not keep each row as sent (it folds rows of one key, drops them, loses them at a restart, or takes no inserts): use a MergeTree or ReplicatedMergeTree table, or point storage.clickhouse.table elsewhere"}
	}
	return nil
}

// bufferDestination reads the destination database and table of a Buffer
// engine (engine_full "Buffer(db, table, num_layers, ...)"): each a quoted
// or bare identifier; currentDatabase() and an empty name mean the
// Buffer's own database, own.
func bufferDestination(full, own string) (db, table string, ok bool) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(full), "Buffer(")
	if !ok {
		return "", "", false
	}
	db, rest, ok = engineArg(rest)
	if !ok {
		return "", "", false
	}
	if table, _, ok = engineArg(rest); !ok || table == "" {
		return "", "", false
	}
	if db == "" || db == "currentDatabase()" {
		db = own
	}
	return db, table, true
}

// engineArg reads one argument of an engine's list, a quoted identifier
// (', ` or ", a backslash escaping the next byte) or a bare one up to the
// next comma, and returns it and what follows its comma.
func engineArg(s string) (arg, rest string, ok bool) {
	s = strings.TrimLeft(s, " ")
	if s == "" {
		return "", "", false
	}
	if q := s[0]; q == '\'' || q == '`' || q == '"' {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			switch c := s[i]; {
			case c == '\\' && i+1 < len(s):
				i++
				b.WriteByte(s[i])
			case c == q:
				rest = strings.TrimLeft(s[i+1:], " ")
				rest, ok = strings.CutPrefix(rest, ",")
				return b.String(), rest, ok
			default:
				b.WriteByte(c)
			}
		}
		return "", "", false
	}
	arg, rest, ok = strings.Cut(s, ",")
	return strings.TrimSpace(arg), rest, ok
}

// applyTTL sets the TTL of db.table (ON CLUSTER onCluster when set) where
// the server has TTL and ttl_days asks for one, and migrate is on (with
// migrate off the relay runs no ALTER: the TTL is the operator's).
func (w *Writer) applyTTL(ctx context.Context, v serverVersion, table, onCluster string) error {
	if w.o.TTLDays <= 0 {
		return nil
	}
	if !v.atLeast(19, 6) {
		w.log.Warn("chlog: server has no TTL; ttl_days ignored", "server_version", v.String(), "ttl_days", w.o.TTLDays)
		return nil
	}
	db := w.o.Database
	q := fmt.Sprintf("ALTER TABLE %s.%s%s MODIFY TTL created_at + INTERVAL %d DAY", db, table, onClusterClause(onCluster), w.o.TTLDays)
	if w.o.NoMigrate {
		w.log.Warn("chlog: migrate is off, so the relay runs no ALTER: set the TTL yourself", "table", db+"."+table, "ttl_days", w.o.TTLDays, "alter", q)
		return nil
	}
	// Set already (the usual start): no ALTER, which would start a TTL
	// mutation on every start and, ON CLUSTER, wait for every node.
	if engine, err := w.engineFull(ctx, table); err == nil && hasTTLDays(engine, w.o.TTLDays) {
		return nil
	}
	if _, err := w.ch.ddl(ctx, q); err != nil {
		// Expiry is housekeeping: a TTL that cannot be set now (a node
		// of the cluster down) must not stop inserts. The next start
		// tries again.
		w.log.Warn("chlog: could not set the TTL; rows are stored, and the next start tries again", "table", db+"."+table, "ttl_days", w.o.TTLDays, "err", err)
		return nil
	}
	w.log.Info("chlog: applied TTL", "table", db+"."+table, "ttl_days", w.o.TTLDays)
	return nil
}

// hasTTLDays reports whether a table's engine_full carries the TTL
// applyTTL sets for days, as servers normalize it ("TTL created_at +
// toIntervalDay(30)").
func hasTTLDays(engine string, days int) bool {
	return strings.Contains(engine, fmt.Sprintf("TTL created_at + toIntervalDay(%d)", days))
}
