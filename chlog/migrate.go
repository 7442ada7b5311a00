package chlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ErrSchema is the class of SchemaError: the table cannot take the relay's
// rows as it is. errors.Is(err, ErrSchema) holds for every SchemaError.
var ErrSchema = errors.New("chlog: table does not fit the schema")

// SchemaError is a table that cannot take the relay's rows as it is: a
// column of a foreign type, or columns missing while migrate is false.
// New refuses to start on it rather than store rows without those fields.
type SchemaError struct {
	Table   string   // database.table
	Columns []string // the columns at fault, in schema order
	msg     string
}

func (e *SchemaError) Error() string { return "chlog: table " + e.Table + ": " + e.msg }

// Is makes errors.Is(err, ErrSchema) hold.
func (e *SchemaError) Is(target error) bool { return target == ErrSchema }

// tableColumn is a column as system.columns describes it.
type tableColumn struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	DefaultKind string `json:"default_kind"` // "", DEFAULT, MATERIALIZED or ALIAS
}

// schemaPlan is the difference between columns and a table.
type schemaPlan struct {
	missing []column // in schema order
	after   []string // per missing column: the column to add it after, "" for the end
	extra   []string // table columns the relay does not write, left alone
	bad     []string // one clause per column of an incompatible type
	badCols []string
}

// planSchema compares the schema with the table's columns.
func planSchema(have []tableColumn) schemaPlan {
	var p schemaPlan
	byName := make(map[string]tableColumn, len(have))
	for _, c := range have {
		byName[c.Name] = c
	}
	known := make(map[string]bool, len(columns))
	for i, c := range columns {
		known[c.name] = true
		tc, ok := byName[c.name]
		if !ok {
			p.missing = append(p.missing, c)
			// The previous schema column exists by the time this one is
			// added (it was there or was added just before). 18.16 has no
			// ADD COLUMN ... FIRST: a missing first column goes at the end.
			after := ""
			if i > 0 {
				after = columns[i-1].name
			}
			p.after = append(p.after, after)
			continue
		}
		if why := incompatible(c.typ, tc); why != "" {
			p.bad = append(p.bad, "column "+c.name+" "+why)
			p.badCols = append(p.badCols, c.name)
		}
	}
	for _, c := range have {
		if !known[c.Name] {
			p.extra = append(p.extra, c.Name)
		}
	}
	return p
}

// incompatible says why a table column cannot take the relay's Native
// column of type want as it is, or returns "" when it can.
//
// Only an exact type match is compatible, with one exception. Verified on
// ClickHouse 18.16 with a Native insert into a MergeTree table: the server
// does not convert a block's column to the table's type, it needs the same
// in-memory column. A wider integer (UInt32 for UInt16, UInt64 for
// UInt32), a signed one, Float32, Enum8 for String, FixedString,
// LowCardinality(String) for String and X for Nullable(X) all fail every
// insert with BAD_CAST (code 368). Nullable(X) for X is worse: the insert
// is accepted and the next SELECT of the column crashes the server
// (segmentation fault in DataTypeNullable). Current servers convert some
// of these on insert; that is not verified here, so they are refused too.
// The exception: DateTime('Zone') for DateTime, the same UInt32 seconds
// (verified: stored and read back unchanged). An ALIAS column keeps no
// inserted value (18.16 drops it silently) and current servers refuse an
// insert into a MATERIALIZED one, so both are refused whatever their type.
func incompatible(want string, have tableColumn) string {
	typ := strings.TrimSpace(have.Type)
	switch have.DefaultKind {
	case "ALIAS", "MATERIALIZED":
		return "is " + have.DefaultKind + " " + typ + " and takes no inserted value, the relay writes " + want
	}
	if typ == want || sameDateTime(want, typ) {
		return ""
	}
	return "has type " + typ + ", the relay writes " + want
}

// migrate compares the schema with the table in system.columns. A column
// of a foreign type stops start-up (one SchemaError naming every such
// column and both types); missing columns are added with ALTER TABLE ...
// ADD COLUMN, each logged, unless NoMigrate is set, which makes them a
// SchemaError too; extra columns are left alone.
func (w *Writer) migrate(ctx context.Context) error {
	return w.migrateTable(ctx, w.o.Table, "")
}

// migrateTable is migrate of table (in Options.Database), its ALTERs run
// ON CLUSTER onCluster when that is set.
func (w *Writer) migrateTable(ctx context.Context, table, onCluster string) error {
	qt := w.o.Database + "." + table
	have, err := w.tableColumnsOf(ctx, table)
	if err != nil {
		return err
	}
	p := planSchema(have)
	clauses, faulty := p.bad, p.badCols
	if w.o.NoMigrate && len(p.missing) > 0 {
		var names, adds []string
		for i, c := range p.missing {
			names = append(names, c.name+" "+c.typ)
			adds = append(adds, addColumnClause(c, p.after[i]))
			faulty = append(faulty, c.name)
		}
		clauses = append(clauses, fmt.Sprintf("missing column(s) %s and storage.clickhouse.migrate is false: add them (ALTER TABLE %s%s %s) or set migrate: true",
			strings.Join(names, ", "), qt, onClusterClause(onCluster), strings.Join(adds, ", ")))
	}
	if len(clauses) > 0 {
		return &SchemaError{Table: qt, Columns: faulty, msg: strings.Join(clauses, "; ")}
	}
	added := 0
	for i, c := range p.missing {
		ok, err := w.addColumn(ctx, table, onCluster, c, p.after[i])
		if err != nil {
			return err
		}
		if ok {
			added++
		}
	}
	if len(p.extra) > 0 {
		w.log.Info("chlog: table has columns the relay does not write; left alone", "table", qt, "columns", strings.Join(p.extra, ","))
	}
	w.log.Info("chlog: table fits the schema", "table", qt, "schema_version", schemaVersion, "columns_added", added)
	return nil
}

// addColumn runs one ALTER TABLE ... ADD COLUMN and reports whether it
// added the column. When the ALTER fails because another relay added the
// column meanwhile, that column is checked instead.
func (w *Writer) addColumn(ctx context.Context, table, onCluster string, c column, after string) (bool, error) {
	qt := w.o.Database + "." + table
	_, err := w.ch.ddl(ctx, "ALTER TABLE "+qt+onClusterClause(onCluster)+" "+addColumnClause(c, after))
	if err != nil {
		// On a cluster only a failure that leaves nothing undone counts
		// (ddlLeftToQueue: a host down runs it when back, or another
		// relay added the column); one server's ALTER failed because
		// another writer added the column meanwhile.
		if onCluster == "" || w.ddlLeftToQueue(err) {
			have, err2 := w.tableColumnsOf(ctx, table)
			if err2 == nil {
				for _, tc := range have {
					if tc.Name == c.name && incompatible(c.typ, tc) == "" {
						w.log.Info("chlog: missing column added meanwhile, or here and left to the DDL queue for a node that did not answer",
							"table", qt, "column", c.name, "type", c.typ, "err", err)
						return false, nil
					}
				}
			}
		}
		return false, fmt.Errorf("chlog: table %s: add column %s %s: %w", qt, c.name, c.typ, err)
	}
	args := []any{"table", qt, "column", c.name, "type", c.typ, "after", after, "since_schema_version", c.since}
	if onCluster != "" {
		args = append(args, "on_cluster", onCluster)
	}
	w.log.Warn("chlog: added missing column", args...)
	return true, nil
}

func addColumnClause(c column, after string) string {
	s := "ADD COLUMN " + c.name + " " + c.typ
	if after != "" {
		s += " AFTER " + after
	}
	return s
}

// tableColumnsOf reads table's columns from system.columns of the node the
// client talks to. Database and table are identifiers (Options.validate),
// safe to quote as they are.
func (w *Writer) tableColumnsOf(ctx context.Context, table string) ([]tableColumn, error) {
	q := "SELECT name, type, default_kind FROM system.columns WHERE database = '" + w.o.Database +
		"' AND table = '" + table + "' FORMAT JSONEachRow"
	body, err := w.ch.query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("chlog: table %s.%s: read system.columns: %w", w.o.Database, table, err)
	}
	var out []tableColumn
	dec := json.NewDecoder(strings.NewReader(body))
	for dec.More() {
		var c tableColumn
		if err := dec.Decode(&c); err != nil {
			return nil, fmt.Errorf("chlog: table %s.%s: system.columns answer: %w", w.o.Database, table, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("chlog: table %s.%s: no columns in system.columns", w.o.Database, table)
	}
	return out, nil
}
