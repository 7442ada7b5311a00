package chlog

import (
	"bytes"
	"context"
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
// row's part (_part) and the replica that served it (replica_path, joined
// in on each shard: the join's subquery runs where the shard's rows are
// read), then asks ZooKeeper (system.zookeeper on the node the relay talks
// to) which parts each of those replicas has registered. A row counts as
// stored only in a registered part. A row seen only in unregistered parts
// may also be in a part that a merge or a fetch registered between the two
// reads, so the check runs again (registeredTries in all, a second apart)
// before such rows are taken for missing and re-sent. The re-sent part is
// registered; the orphan stays visible on its replica, a second copy there,
// until the server drops it.

// registeredTries is how often the check reads a block whose rows are seen
// only in unregistered parts before it re-sends them.
const registeredTries = 3

// registeredRetryDelay is the pause between those reads.
const registeredRetryDelay = time.Second

// servedRow is one row of the cluster presence query: a request id, the
// part it was read from and the ZooKeeper path of the replica that read it.
type servedRow struct {
	id, part, replica string
}

// registeredIDs returns which of ids have a row in a part that the replica
// holding it has registered in ZooKeeper, within [lo, hi] (cluster mode).
// orphans counts the ids seen only in unregistered parts on the last read.
func (w *Writer) registeredIDs(ctx context.Context, lo, hi time.Time, ids []string) (stored map[string]bool, orphans int, err error) {
	for try := 1; ; try++ {
		rows, err := w.ch.servedRows(ctx, w.o.Database, w.o.Table, w.localTable(), lo, hi, ids)
		if err != nil {
			return nil, 0, err
		}
		parts := map[string]map[string]bool{}
		for _, r := range rows {
			if _, ok := parts[r.replica]; ok {
				continue
			}
			names, err := w.ch.registeredParts(ctx, r.replica)
			if err != nil {
				return nil, 0, err
			}
			parts[r.replica] = names
		}
		stored = make(map[string]bool, len(rows))
		for _, r := range rows {
			if parts[r.replica][r.part] {
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
// table, as in presentIDs) stored in [lo, hi], the part and the replica it
// was read from. The replica comes from a join with system.replicas on the
// column truncated (0 or 1 in every row), whose subquery each shard runs
// itself; a scalar subquery would run once, on the node asked.
func (c *chClient) servedRows(ctx context.Context, db, table, local string, lo, hi time.Time, ids []string) ([]servedRow, error) {
	var out bytes.Buffer
	if err := c.postIDs(ctx, servedSQL(db, table, local, lo, hi), ids, &out); err != nil {
		return nil, err
	}
	var rows []servedRow
	for line := range strings.Lines(out.String()) {
		f := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
		if len(f) != 3 {
			continue
		}
		if id := quoteID([]byte(f[0])); id != "" {
			rows = append(rows, servedRow{id: id, part: unescapeTSV(f[1]), replica: unescapeTSV(f[2])})
		}
	}
	return rows, nil
}

// servedSQL is the query of servedRows.
func servedSQL(db, table, local string, lo, hi time.Time) string {
	return "SELECT DISTINCT request_id, _part, replica FROM " + db + "." + table +
		" ANY INNER JOIN (SELECT arrayJoin([toUInt8(0), toUInt8(1)]) AS truncated, replica_path AS replica" +
		" FROM system.replicas WHERE database = " + sqlString(db) + " AND table = " + sqlString(local) + ") USING truncated" +
		" WHERE created_at >= toDateTime(" + strconv.FormatInt(lo.Unix(), 10) + ")" +
		" AND created_at <= toDateTime(" + strconv.FormatInt(hi.Unix(), 10) + ")" +
		" AND request_id IN ids FORMAT TSV"
}

// registeredParts returns the parts the replica at ZooKeeper path replica
// has registered there.
func (c *chClient) registeredParts(ctx context.Context, replica string) (map[string]bool, error) {
	var out bytes.Buffer
	sql := "SELECT name FROM system.zookeeper WHERE path = " + sqlString(replica+"/parts") + " FORMAT TSV"
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

// sqlString quotes s as a ClickHouse string literal.
func sqlString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
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
