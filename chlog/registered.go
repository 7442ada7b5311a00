package chlog

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The presence check in a cluster counts only rows that ClickHouse keeps.
//
// An insert into a replicated table that loses ZooKeeper while it commits
// (18.16 answers code 319 "Unknown status, client must retry. Reason:
// Connection loss") leaves its part on the replica that wrote it: visible
// to SELECT, but not registered in ZooKeeper. The other replica never
// fetches it and the server drops it later (its part check removes a local
// part ZooKeeper does not know after 5 minutes; a merge over its block
// number removes it sooner). Seen on 18.16, ZooKeeper killed six times
// under six concurrent inserters: of six inserts answered 319, two were
// stored on both replicas and four on neither right after; in another run
// two stayed on the writing replica only, still there 20 s later. A check
// that read such a replica took those rows for stored and never re-sent
// them. That is the likely way TestClusterZooKeeperDown once lost 32 rows in
// CI (about one shard's share of a block; the servers' logs of that run
// were gone).
//
// So in a cluster the check reads, through the Distributed table, each
// row's part (_part) and the macros of the node that served it
// (system.macros, joined in on each shard: the join's subquery runs where
// the shard's rows are read), makes that replica's ZooKeeper path from the
// table's engine arguments (system.tables' engine_full, e.g.
// '/clickhouse/tables/{shard}/db.t' and '{replica}') and asks ZooKeeper
// (system.zookeeper on the node the relay talks to) which parts that
// replica has registered. A row counts as stored only in a registered part.
// A row seen only in unregistered parts may also be in a part that a merge
// or a fetch registered between the two reads, so the check runs again
// (registeredTries in all, a second apart) before such rows are taken for
// missing and re-sent. The re-sent part is registered; the orphan stays
// visible on its replica, a second copy there, until the server drops it.
//
// system.replicas would name each replica's path directly. A first version
// read it, and test clusters then lost a node to a segmentation fault (a
// null ZooKeeper in zkutil::ZooKeeper::createImpl) in 1 of 16 fresh runs
// under load; but a later CI run lost a node the same way before any such
// query, so the link is not shown. system.macros and system.tables are
// plain in-memory tables, and that is reason enough to prefer them.

// registeredTries is how often the check reads a block whose rows are seen
// only in unregistered parts before it re-sends them.
const registeredTries = 3

// registeredRetryDelay is the pause between those reads.
const registeredRetryDelay = time.Second

// servedRow is one row of the cluster presence query: a request id, the
// part it was read from and the macros of the node that read it (see
// servedSQL).
type servedRow struct {
	id, part, macros string
}

// registeredIDs returns which of ids have a row in a part that the replica
// holding it has registered in ZooKeeper, within [lo, hi] (cluster mode).
// orphans counts the ids seen only in unregistered parts on the last read.
func (w *Writer) registeredIDs(ctx context.Context, lo, hi time.Time, ids []string) (stored map[string]bool, orphans int, err error) {
	tpl, err := w.replicaTemplate(ctx)
	if err != nil || tpl.path == "" {
		return nil, 0, err // no local table here: nothing stored, as presentIDs finds
	}
	for try := 1; ; try++ {
		rows, err := w.ch.servedRows(ctx, w.o.Database, w.o.Table, lo, hi, ids)
		if err != nil {
			return nil, 0, err
		}
		parts := map[string]map[string]bool{} // by the serving node's macros
		for _, r := range rows {
			if _, ok := parts[r.macros]; ok {
				continue
			}
			path, err := tpl.replicaPath(r.macros)
			if err != nil {
				return nil, 0, err
			}
			names, err := w.ch.registeredParts(ctx, path)
			if err != nil {
				return nil, 0, err
			}
			parts[r.macros] = names
		}
		stored = make(map[string]bool, len(rows))
		for _, r := range rows {
			if parts[r.macros][r.part] {
				stored[r.id] = true
			}
		}
		unregistered := map[string]bool{}
		for _, r := range rows {
			if !stored[r.id] {
				unregistered[r.id] = true
			}
		}
		if len(unregistered) == 0 || try >= registeredTries {
			return stored, len(unregistered), nil
		}
		select {
		case <-time.After(registeredRetryDelay):
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
}

// servedRows runs the cluster presence query: for each of ids (an external
// table, as in presentIDs) stored in [lo, hi], the part and the node it was
// read from. The node's macros come from a join on the column truncated (0
// or 1 in every row) whose subquery each shard runs itself; a scalar
// subquery would run once, on the node asked.
func (c *chClient) servedRows(ctx context.Context, db, table string, lo, hi time.Time, ids []string) ([]servedRow, error) {
	var out bytes.Buffer
	if err := c.postIDs(ctx, servedSQL(db, table, lo, hi), ids, &out); err != nil {
		return nil, err
	}
	asked := make(map[string]bool, len(ids))
	for _, id := range ids {
		asked[id] = true
	}
	var rows []servedRow
	for line := range strings.Lines(out.String()) {
		f := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
		if len(f) != 3 {
			continue
		}
		if id := quoteID([]byte(f[0])); asked[id] { // only the block's own ids
			rows = append(rows, servedRow{id: id, part: unescapeTSV(f[1]), macros: unescapeTSV(f[2])})
		}
	}
	return rows, nil
}

// servedSQL is the query of servedRows. A node's macros come as one string,
// name and value joined by macroSep, pairs by pairSep (bytes TSV leaves
// alone).
func servedSQL(db, table string, lo, hi time.Time) string {
	return "SELECT DISTINCT request_id, _part, macros FROM " + db + "." + table +
		" ANY INNER JOIN (SELECT arrayJoin([toUInt8(0), toUInt8(1)]) AS truncated, macros FROM" +
		" (SELECT arrayStringConcat(groupArray(concat(macro, '\\x1f', substitution)), '\\x1e') AS macros FROM system.macros))" +
		" USING truncated" +
		" WHERE created_at >= toDateTime(" + strconv.FormatInt(lo.Unix(), 10) + ")" +
		" AND created_at <= toDateTime(" + strconv.FormatInt(hi.Unix(), 10) + ")" +
		" AND request_id IN ids FORMAT TSV"
}

// registeredParts returns the parts the replica at ZooKeeper path replica
// has registered there.
func (c *chClient) registeredParts(ctx context.Context, replica string) (map[string]bool, error) {
	var out bytes.Buffer
	sql := "SELECT name FROM system.zookeeper WHERE path = " + quoteString(replica+"/parts") + " FORMAT TSV"
	if err := c.post(ctx, "/", "", []byte(sql), &out); err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for line := range strings.Lines(out.String()) {
		if name := unescapeTSV(strings.TrimSuffix(line, "\n")); name != "" {
			names[name] = true
		}
	}
	return names, nil
}

// Separators of servedSQL's macros string.
const (
	macroSep = "\x1f"
	pairSep  = "\x1e"
)

// replicaTemplate is the local table's ZooKeeper path and replica name as
// its engine arguments give them, macros unexpanded.
type replicaTemplate struct {
	path, replica string
	db, table     string // for the {database} and {table} macros of current servers
}

// replicaTemplate reads the local table's engine arguments on the node the
// relay talks to; the zero template when that node has no such table.
func (w *Writer) replicaTemplate(ctx context.Context) (replicaTemplate, error) {
	db, local := w.o.Database, w.localTable()
	ans, err := w.ch.query(ctx, "SELECT engine_full FROM system.tables WHERE database = "+quoteString(db)+" AND name = "+quoteString(local)+" FORMAT TSV")
	if err != nil {
		return replicaTemplate{}, fmt.Errorf("chlog: table %s.%s: read its engine: %w", db, local, err)
	}
	// 18.16 shows the arguments' quotes escaped (\'/clickhouse/...\').
	engine := strings.ReplaceAll(unescapeTSV(strings.TrimSpace(ans)), `\'`, `'`)
	if engine == "" {
		return replicaTemplate{}, nil
	}
	args := quotedArgs(engine, 2)
	if !strings.HasPrefix(engine, "Replicated") || len(args) < 2 {
		return replicaTemplate{}, fmt.Errorf("chlog: table %s.%s: engine %q names no ZooKeeper path and replica", db, local, engine)
	}
	return replicaTemplate{path: args[0], replica: args[1], db: db, table: local}, nil
}

// replicaPath is the ZooKeeper path of the replica on the node whose macros
// servedSQL returned.
func (t replicaTemplate) replicaPath(macros string) (string, error) {
	m := map[string]string{"database": t.db, "table": t.table}
	for pair := range strings.SplitSeq(macros, pairSep) {
		if k, v, ok := strings.Cut(pair, macroSep); ok {
			m[k] = v
		}
	}
	path, err := expandMacros(t.path, m)
	if err != nil {
		return "", err
	}
	replica, err := expandMacros(t.replica, m)
	if err != nil {
		return "", err
	}
	return path + "/replicas/" + replica, nil
}

// expandMacros replaces each {name} in s by m[name].
func expandMacros(s string, m map[string]string) (string, error) {
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("chlog: %q: unclosed macro", s)
		}
		name := s[i+1 : i+j]
		v, ok := m[name]
		if !ok {
			return "", fmt.Errorf("chlog: %q: macro {%s} is not defined on the node", s, name)
		}
		b.WriteString(s[:i])
		b.WriteString(v)
		s = s[i+j+1:]
	}
}

// quotedArgs returns the first n single-quoted string arguments of an
// engine definition, unescaped (\' and \\).
func quotedArgs(engine string, n int) []string {
	var out []string
	for i := 0; i < len(engine) && len(out) < n; i++ {
		if engine[i] != '\'' {
			continue
		}
		var b strings.Builder
		for i++; i < len(engine) && engine[i] != '\''; i++ {
			if engine[i] == '\\' && i+1 < len(engine) {
				i++
			}
			b.WriteByte(engine[i])
		}
		out = append(out, b.String())
	}
	return out
}

// unescapeTSV undoes TSV's escaping of a field (\\, \t, \n and the like).
func unescapeTSV(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case '0':
			b.WriteByte(0)
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
