package chlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/usage"
)

// ReparseOptions say which stored rows Reparse recomputes and where they
// are. The zero value of every field means its default.
type ReparseOptions struct {
	// URLs are ClickHouse nodes' HTTP URLs. Required. In a cluster the
	// first that answers is read from; without one each node's own table
	// is reparsed (Reparse).
	URLs []string
	// Cluster, when set, is the cluster of a Distributed table over
	// <Table>_local (see cluster.go): rows are read through the
	// Distributed table and the mutations go to <Table>_local ON CLUSTER,
	// waited for on every node of URLs.
	Cluster string
	// Database and Table name the table; defaults "relay" and "stream_logs".
	Database, Table string
	// User and Password are sent as headers, never logged or printed.
	User, Password string

	// Since selects rows created at or after it; zero means all rows.
	Since time.Time
	// Route selects one route's rows; "" means every route.
	Route string
	// Kinds are the configured routes' kinds: a raw route's first token
	// is its first byte, an sse route's its first content by its API's
	// rules. Rows of a route not listed are skipped (and counted).
	Kinds map[string]record.Kind
	// DryRun computes and counts the changes without writing them.
	DryRun bool

	// KeyRows is how many rows' keys (request_id, created_at, sizes) one
	// SELECT pages through, in (created_at, request_id) order; default
	// 20000. Each page scans the remaining keys, so pages are large.
	KeyRows int
	// BatchRows is how many rows' columns one SELECT reads; default 500.
	// Rows carry their captured bytes: a batch is cut earlier at
	// BatchBytes.
	BatchRows int
	// BatchBytes bounds the captured bytes (bytes_in + bytes_out) read per
	// SELECT; default 64 MiB.
	BatchBytes int64
	// MutationRows is how many changed rows one ALTER TABLE ... UPDATE
	// carries; default 20000. On ClickHouse 18.16 every mutation rewrites
	// the table's parts, so a run makes as few as it can.
	MutationRows int
	// Timeout bounds each query; default 60s.
	Timeout time.Duration
	// WaitTimeout bounds the wait for the mutations to finish; default 30m.
	WaitTimeout time.Duration
	// Note, when set, is told what the run waits on (mutations of the
	// table left unfinished before it, the wait's progress), as lines
	// for an operator.
	Note func(line string)
}

// ReparseResult counts what Reparse read and changed.
type ReparseResult struct {
	Rows    int // rows read
	Skipped int // rows of routes whose kind is unknown (not in Kinds)
	Changed int // rows with at least one column changed
	// Per column: rows whose value changed.
	TTFT, TokensIn, TokensOut, Model, ErrorType int
	Mutations                                   int // ALTER TABLE ... UPDATE statements sent (0 on a dry run)
}

func (o *ReparseOptions) setDefaults() {
	if o.Database == "" {
		o.Database = "relay"
	}
	if o.Table == "" {
		o.Table = "stream_logs"
	}
	if o.KeyRows <= 0 {
		o.KeyRows = 20000
	}
	if o.BatchRows <= 0 {
		o.BatchRows = 500
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 64 << 20
	}
	if o.MutationRows <= 0 {
		o.MutationRows = 20000
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	if o.WaitTimeout <= 0 {
		o.WaitTimeout = 30 * time.Minute
	}
}

// Derived are the values of a stored row that the relay derives from its
// bytes. A Known flag is false when the row does not hold what the value
// is computed from (capture: meta, a capture cut before the answer): the
// stored value is then left as it is. A row holds its whole request body
// when the body stored is bytes_in long: an empty one when the request
// had none.
type Derived struct {
	TTFTms              *uint32
	TTFTKnown           bool
	TokensIn, TokensOut *uint64
	TokensKnown         bool
	Model               string
	ModelKnown          bool
	// StreamError: the stored chunks of an sse response hold an error
	// event the provider sent in the stream (usage.HasStreamError), which
	// makes the live path's error_type upstream_stream_error. False says
	// nothing: bytes not stored, or a row stored before the relay looked.
	StreamError bool
}

// Derive recomputes a stored row's ttft_ms, tokens_in, tokens_out, model
// and in-stream error with the code the relay runs on the live path: the
// first-token scan of its API's rules over the stored chunks (which are
// the relayed reads, so the chunk found is the read the relay stamped),
// the usage scan over the whole captured response, the request's model,
// and the error-event scan over the stored chunks.
func Derive(row *Row, kind record.Kind) Derived {
	var d Derived
	api := usage.APIForPath(row.Path)
	n := len(row.ChunkOffsetsMS)
	captured := len(row.Chunks) > 0 && len(row.Chunks) == n
	var data []byte
	var ends []uint32
	if captured {
		for _, c := range row.Chunks {
			data = append(data, c...)
			ends = append(ends, uint32(len(data)))
		}
	}
	// An sse route's binary answer is read as a raw route's, unless it is
	// a stored file read back (as live: upstream's tokenScanner).
	storedRead := kind != record.KindRaw && usage.StoredRead(row.Method, row.ResponseHeaders)
	raw := kind == record.KindRaw || kind == record.KindSSE && !storedRead && usage.BinaryAnswer(row.ResponseHeaders)
	// An error status has no first token, a raw response's is its first
	// read, an sse response's is found in its captured chunks; a read of
	// stored objects has none (as live: upstream's tokenScanner).
	if storedRead {
		d.TTFTKnown = true
	} else if i := usage.FirstTokenChunk(api, raw, int(row.Status), n, data, ends); i >= 0 && (raw || captured) {
		v := row.ChunkOffsetsMS[i]
		d.TTFTms, d.TTFTKnown = &v, true
	} else {
		// None found: certain for an error status, and for a response
		// whose reads are all there (no capture cut) to scan, or that had
		// none; a cut capture or bytes not stored (meta) say nothing.
		d.TTFTKnown = row.Status >= 400 || !row.Truncated && (raw || captured || n == 0)
	}
	if kind == record.KindSSE && !raw && captured && !storedRead {
		// A capture cut short may still hold the error event: found is
		// certain, not found says nothing. A read of stored objects is not
		// scanned, as live (upstream's tokenScanner).
		d.StreamError = usage.HasStreamError(false, int(row.Status), data, ends)
	}
	// A read's tokens (GET, HEAD: a stored answer fetched again) are the
	// live path's choice, which took what came before into account
	// (handlers' retrievals): they are left as they are.
	// Nor are a stored object's (usage.StoredObject: 0 live).
	read := usage.IsRead(row.Method)
	if !raw && captured && !row.Truncated && !read && !usage.StoredObject(row.Path) {
		var t usage.Tokens
		t.Scan(api, data)
		if in, out, ok := t.CountsFor(row.Path); ok {
			i, o := uint64(in), uint64(out)
			d.TokensIn, d.TokensOut = &i, &o
		}
		d.TokensKnown = true
	}
	// The model is the live path's: the request body's top-level "model",
	// else the one a Gemini path names (usage.RequestModel), "" when
	// neither; an empty body's is the path's alone.
	switch {
	case uint64(len(row.RequestBody)) == row.BytesIn:
		// The whole body is stored, or the request had none: what it
		// gives is certain, "" included.
		d.Model, d.ModelKnown = usage.RequestModel(row.Path, row.RequestBody), true
	case len(row.RequestBody) > 0:
		// Cut at the capture limit: a model found in the part stored.
		d.Model = usage.RequestModel(row.Path, row.RequestBody)
		d.ModelKnown = d.Model != ""
	case row.Model == "":
		// Not stored (capture: meta, the storage budget): the live path
		// read a body that named no model, so the path's, if it has one.
		d.Model = usage.PathModel(row.Path)
		d.ModelKnown = d.Model != ""
	}
	return d
}

// change is one row's corrected values.
type change struct {
	id        string
	ttft      *uint32
	setTTFT   bool
	in, out   *uint64
	setTokens [2]bool
	model     string
	setModel  bool
	errType   string
	setErr    bool
}

// Reparse recomputes ttft_ms, tokens_in, tokens_out and model of the
// selected stored rows (Derive) and writes the values that differ with
// ALTER TABLE ... UPDATE mutations, MutationRows rows each, waiting for
// them to finish. It reads in bounded batches: the keys of KeyRows rows
// in (created_at, request_id) order, then those rows' columns BatchRows
// (or BatchBytes) at a time.
//
// Nodes that are not one cluster (URLs without Cluster) each keep their
// own table, with the rows the relay wrote there while the others did not
// answer: each is reparsed in turn, and the result is their sum (a node
// that fails is an error joined to the others', after the rest ran).
func Reparse(ctx context.Context, o ReparseOptions) (*ReparseResult, error) {
	if o.Cluster != "" || len(o.URLs) <= 1 {
		return reparseNode(ctx, o)
	}
	total := &ReparseResult{}
	var errs []error
	for _, u := range o.URLs {
		one := o
		one.URLs = []string{u}
		res, err := reparseNode(ctx, one)
		if res != nil {
			total.add(res)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", RedactURL(u), err))
			if ctx.Err() != nil {
				break
			}
		}
	}
	return total, errors.Join(errs...)
}

// add counts r's rows and changes into t.
func (t *ReparseResult) add(r *ReparseResult) {
	t.Rows += r.Rows
	t.Skipped += r.Skipped
	t.Changed += r.Changed
	t.TTFT += r.TTFT
	t.TokensIn += r.TokensIn
	t.TokensOut += r.TokensOut
	t.Model += r.Model
	t.ErrorType += r.ErrorType
	t.Mutations += r.Mutations
}

// reparseNode is Reparse over one table: one node's, or a cluster's
// Distributed table.
func reparseNode(ctx context.Context, o ReparseOptions) (*ReparseResult, error) {
	o.setDefaults()
	if len(o.URLs) == 0 {
		return nil, errors.New("chlog: reparse: urls: a ClickHouse URL is required")
	}
	for _, n := range []struct{ what, v string }{{"database", o.Database}, {"table", o.Table}, {"cluster", o.Cluster}} {
		if n.v != "" && !ValidIdent(n.v) {
			return nil, fmt.Errorf("chlog: reparse: %s=%q: must match [A-Za-z_][A-Za-z0-9_]*", n.what, n.v)
		}
	}
	c := &reparseClient{o: &o}
	res := &ReparseResult{}
	var pending []change
	cost := 0 // pending's AST elements (mutationCost), a few per command besides
	stmt := 0 // pending's statement bytes (mutationBytes), with a cluster
	flush := func() error {
		if len(pending) == 0 || o.DryRun {
			pending, cost, stmt = pending[:0], 0, 0
			return nil
		}
		if res.Mutations == 0 {
			if err := c.noteUnfinished(ctx); err != nil {
				return err
			}
		}
		if err := c.mutate(ctx, pending); err != nil {
			return err
		}
		res.Mutations++
		pending, cost, stmt = pending[:0], 0, 0
		return nil
	}
	var cur *Row // keyset cursor: the last row read
	for {
		keys, err := c.keys(ctx, cur)
		if err != nil {
			return res, err
		}
		if len(keys) == 0 {
			break
		}
		cur = &keys[len(keys)-1]
		for start := 0; start < len(keys); {
			end, size := start, int64(0)
			for end < len(keys) && end-start < o.BatchRows && (end == start || size+int64(keys[end].BytesIn+keys[end].BytesOut) <= o.BatchBytes) {
				size += int64(keys[end].BytesIn + keys[end].BytesOut)
				end++
			}
			rows, err := c.rows(ctx, keys[start:end])
			if err != nil {
				return res, err
			}
			for i := range rows {
				res.Rows++
				ch, skipped := compare(&rows[i], &o, res)
				if skipped {
					res.Skipped++
				}
				if ch != nil {
					res.Changed++
					n, b := mutationCost(ch), 0
					if o.Cluster != "" {
						b = mutationBytes(ch)
					}
					if b > maxClusterMutationBytes && ch.setModel {
						// A derived model of ~100 KB: no ON CLUSTER
						// statement can carry it. The row's other
						// changes are written.
						ch.setModel = false
						res.Model--
						n, b = mutationCost(ch), mutationBytes(ch)
						if n == 0 {
							res.Changed--
							continue
						}
					}
					if cost+n > maxMutationAST || stmt+b > maxClusterMutationBytes {
						if err := flush(); err != nil {
							return res, err
						}
					}
					pending = append(pending, *ch)
					cost, stmt = cost+n, stmt+b
					if len(pending) >= o.MutationRows {
						if err := flush(); err != nil {
							return res, err
						}
					}
				}
			}
			start = end
		}
		if len(keys) < o.KeyRows {
			break
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	if res.Mutations > 0 {
		if err := c.waitMutations(ctx); err != nil {
			return res, err
		}
	}
	return res, nil
}

// compare derives row's values and returns the change to write, counting
// it per column in res; nil when nothing differs.
func compare(row *Row, o *ReparseOptions, res *ReparseResult) (ch *change, skipped bool) {
	kind, ok := o.Kinds[row.Route]
	if !ok {
		return nil, true
	}
	d := Derive(row, kind)
	c := change{id: row.RequestID}
	if d.TTFTKnown && !eqPtr(d.TTFTms, row.TTFTms) {
		c.ttft, c.setTTFT = d.TTFTms, true
		res.TTFT++
	}
	if d.TokensKnown {
		if !eqPtr(d.TokensIn, row.TokensIn) {
			c.in, c.setTokens[0] = d.TokensIn, true
			res.TokensIn++
		}
		if !eqPtr(d.TokensOut, row.TokensOut) {
			c.out, c.setTokens[1] = d.TokensOut, true
			res.TokensOut++
		}
	}
	if d.ModelKnown && d.Model != row.Model {
		c.model, c.setModel = d.Model, true
		res.Model++
	}
	if d.StreamError && row.ErrorType != record.ErrUpstreamStreamError && streamEndError(row.ErrorType) {
		c.errType, c.setErr = record.ErrUpstreamStreamError, true
		res.ErrorType++
	}
	if !c.setTTFT && !c.setTokens[0] && !c.setTokens[1] && !c.setModel && !c.setErr {
		return nil, false
	}
	return &c, false
}

// streamEndError reports whether a row's error_type is one the live path
// gives way to when the stream held an error event (the event came first:
// what ended the stream after it is its consequence): none, or a stream
// cut by either side.
func streamEndError(t string) bool {
	switch t {
	case "", record.ErrUpstreamReset, record.ErrUpstreamTimeout, record.ErrClientClosed:
		return true
	}
	return false
}

func eqPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

// reparseClient runs Reparse's queries over HTTP.
type reparseClient struct {
	o    *ReparseOptions
	node int // index in URLs of the node that answered last
	// before holds, per node URL, the mutations of the table unfinished
	// when this run sent its first: not waited for (another run's, or one
	// that fails for good: 18.16 keeps it unfinished and says nothing).
	before map[string][]string
}

// maxMutationAST bounds the AST elements of one ALTER TABLE ... UPDATE
// (mutationCost): ClickHouse refuses a statement of more than
// max_ast_elements (50,000 by default; a cluster's nodes parse the ON
// CLUSTER statement with their own settings), and three changed columns of
// 20,000 rows came to 60,000 ("AST is too big"), the same first batch at
// every run.
const maxMutationAST = 40_000

// maxClusterMutationBytes bounds an ON CLUSTER mutation's statement
// (mutationBytes): each node's DDL worker parses it with its own
// max_query_size (256 KiB by default; the relay sets it only on the node it
// sends to), and ZooKeeper keeps it in one node of at most 1 MiB. 1,501 rows
// with three changed columns came to 262 KB: refused on the other nodes
// ("Max query size exceeded"), the same first batch at every run.
const maxClusterMutationBytes = 200 << 10

// mutationBytes is about what change adds to a mutation's statement: for
// each column it sets, its quoted id in transform's array and in the IN
// list, and the value.
func mutationBytes(ch *change) int {
	id := len(ch.id) + 3 // quoted, a comma
	n := 0
	add := func(set bool, v int) {
		if set {
			n += 2*id + v + 1
		}
	}
	add(ch.setTTFT, 10)
	add(ch.setTokens[0], 20)
	add(ch.setTokens[1], 20)
	add(ch.setModel, 2*len(ch.model)+3)
	add(ch.setErr, 2*len(ch.errType)+3)
	return n
}

// mutationCost is the AST elements change adds to a mutation: its id in
// the IN list of each column's command (transform's arrays of ids and
// values are literals, one element each whatever their length).
func mutationCost(ch *change) int {
	n := 0
	for _, set := range [...]bool{ch.setTTFT, ch.setTokens[0], ch.setTokens[1], ch.setModel, ch.setErr} {
		if set {
			n++
		}
	}
	return n
}

func (c *reparseClient) table() string { return c.o.Database + "." + c.o.Table }

// where is the row selection of the options, as SQL.
func (c *reparseClient) where() string {
	var w []string
	if !c.o.Since.IsZero() {
		w = append(w, "created_at >= toDateTime("+strconv.FormatInt(c.o.Since.Unix(), 10)+")")
	}
	if c.o.Route != "" {
		w = append(w, "route = "+quoteString(c.o.Route))
	}
	if len(w) == 0 {
		return "1"
	}
	return strings.Join(w, " AND ")
}

// keys returns the request_id, created_at and sizes of the next KeyRows
// rows after cur.
func (c *reparseClient) keys(ctx context.Context, cur *Row) ([]Row, error) {
	w := c.where()
	if cur != nil {
		t := strconv.FormatInt(cur.CreatedAt.Unix(), 10)
		w += " AND (created_at > toDateTime(" + t + ") OR created_at = toDateTime(" + t + ") AND request_id > " + quoteString(cur.RequestID) + ")"
	}
	sql := "SELECT request_id, created_at, bytes_in, bytes_out FROM " + c.table() + " WHERE " + w +
		" ORDER BY created_at, request_id LIMIT " + strconv.Itoa(c.o.KeyRows) + " FORMAT Native"
	return c.selectRows(ctx, sql)
}

// rows reads the columns Derive needs of the rows of keys.
func (c *reparseClient) rows(ctx context.Context, keys []Row) ([]Row, error) {
	lo, hi := keys[0].CreatedAt, keys[0].CreatedAt
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = quoteString(k.RequestID)
		if k.CreatedAt.Before(lo) {
			lo = k.CreatedAt
		}
		if k.CreatedAt.After(hi) {
			hi = k.CreatedAt
		}
	}
	sql := "SELECT request_id, created_at, route, method, path, status, error_type, model, ttft_ms, tokens_in, tokens_out, bytes_in, request_body, response_headers, response_chunks, chunk_offsets_ms, truncated FROM " +
		c.table() + " WHERE created_at >= toDateTime(" + strconv.FormatInt(lo.Unix(), 10) + ") AND created_at <= toDateTime(" + strconv.FormatInt(hi.Unix(), 10) +
		") AND request_id IN (" + strings.Join(ids, ",") + ") FORMAT Native"
	return c.selectRows(ctx, sql)
}

func (c *reparseClient) selectRows(ctx context.Context, sql string) ([]Row, error) {
	data, err := c.query(ctx, sql)
	if err != nil {
		return nil, err
	}
	rows, err := DecodeRows(data)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	return rows, nil
}

// mutate writes one batch of changes as one ALTER TABLE ... UPDATE (one
// mutation; each column has its own UPDATE command, restricted to the rows
// whose value changed, with the values looked up by request_id).
func (c *reparseClient) mutate(ctx context.Context, changes []change) error {
	var cmds []string
	add := func(col, typ string, pick func(*change) (set, null bool, v string)) {
		var ids, vals, nulls []string
		for i := range changes {
			set, null, v := pick(&changes[i])
			switch {
			case !set:
			case null:
				nulls = append(nulls, quoteString(changes[i].id))
			default:
				ids = append(ids, quoteString(changes[i].id))
				vals = append(vals, v)
			}
		}
		if len(ids) > 0 {
			idList := strings.Join(ids, ",")
			def := "to" + typ + "(0)"
			arr := "CAST([" + strings.Join(vals, ",") + "] AS Array(" + typ + "))"
			if typ == "String" {
				def, arr = "''", "["+strings.Join(vals, ",")+"]"
			}
			cmds = append(cmds, "UPDATE "+col+" = transform(request_id, ["+idList+"], "+arr+", "+def+") WHERE request_id IN ("+idList+")")
		}
		if len(nulls) > 0 {
			cmds = append(cmds, "UPDATE "+col+" = NULL WHERE request_id IN ("+strings.Join(nulls, ",")+")")
		}
	}
	add("ttft_ms", "UInt32", func(ch *change) (bool, bool, string) {
		if ch.ttft == nil {
			return ch.setTTFT, true, ""
		}
		return ch.setTTFT, false, strconv.FormatUint(uint64(*ch.ttft), 10)
	})
	add("tokens_in", "UInt64", func(ch *change) (bool, bool, string) {
		if ch.in == nil {
			return ch.setTokens[0], true, ""
		}
		return ch.setTokens[0], false, strconv.FormatUint(*ch.in, 10)
	})
	add("tokens_out", "UInt64", func(ch *change) (bool, bool, string) {
		if ch.out == nil {
			return ch.setTokens[1], true, ""
		}
		return ch.setTokens[1], false, strconv.FormatUint(*ch.out, 10)
	})
	add("model", "String", func(ch *change) (bool, bool, string) {
		return ch.setModel, false, quoteString(ch.model)
	})
	add("error_type", "String", func(ch *change) (bool, bool, string) {
		return ch.setErr, false, quoteString(ch.errType)
	})
	target := c.table()
	if c.o.Cluster != "" {
		target = c.o.Database + "." + c.o.Table + localSuffix + " ON CLUSTER " + c.o.Cluster
	}
	_, err := c.query(ctx, "ALTER TABLE "+target+" "+strings.Join(cmds, ", "))
	if err != nil {
		return fmt.Errorf("chlog: reparse: alter table %s: %w", target, err)
	}
	return nil
}

// mutationNodes are the nodes whose mutations of the table a run waits
// for, and the table there: every node of a cluster (each replica applies
// its own), else the one that answered last.
func (c *reparseClient) mutationNodes() (nodes []string, table string) {
	if c.o.Cluster != "" {
		return c.o.URLs, c.o.Table + localSuffix
	}
	return c.o.URLs[c.node : c.node+1], c.o.Table
}

// noteUnfinished records, before the run's first mutation, the mutations of
// the table that are unfinished on each node (before), and tells Note of
// them: the run's own apply after them, so one that never finishes holds
// them too.
func (c *reparseClient) noteUnfinished(ctx context.Context) error {
	nodes, table := c.mutationNodes()
	c.before = map[string][]string{}
	for _, u := range nodes {
		out, err := c.queryOn(ctx, u, "SELECT mutation_id FROM system.mutations WHERE database = "+quoteString(c.o.Database)+
			" AND table = "+quoteString(table)+" AND is_done = 0 FORMAT TabSeparated")
		if err != nil {
			return fmt.Errorf("chlog: reparse: look for unfinished mutations: %w", err)
		}
		ids := strings.Fields(string(out))
		c.before[u] = ids
		if len(ids) > 0 && c.o.Note != nil {
			c.o.Note(fmt.Sprintf("%d mutation(s) of %s.%s at %s were unfinished before this run (%s; see system.mutations): this run's apply after them, and wait while one of them never finishes",
				len(ids), c.o.Database, table, RedactURL(u), strings.Join(ids, ", ")))
		}
	}
	return nil
}

// waitNoteEvery is how often the wait for mutations tells Note how many
// are left.
const waitNoteEvery = 30 * time.Second

// waitMutations waits until the mutations of the table this run sent (those
// unfinished and not in before) are done, on every node of a cluster.
func (c *reparseClient) waitMutations(ctx context.Context) error {
	nodes, table := c.mutationNodes()
	deadline := time.Now().Add(c.o.WaitTimeout)
	for _, u := range nodes {
		sql := "SELECT count(), sum(parts_to_do) FROM system.mutations WHERE database = " + quoteString(c.o.Database) +
			" AND table = " + quoteString(table) + " AND is_done = 0"
		if ids := c.before[u]; len(ids) > 0 {
			quoted := make([]string, len(ids))
			for i, id := range ids {
				quoted[i] = quoteString(id)
			}
			sql += " AND mutation_id NOT IN (" + strings.Join(quoted, ",") + ")"
		}
		sql += " FORMAT TabSeparated"
		noted := time.Now()
		for delay := 50 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
			out, err := c.queryOn(ctx, u, sql)
			if err != nil {
				return fmt.Errorf("chlog: reparse: wait for mutations: %w", err)
			}
			cnt, parts, _ := strings.Cut(strings.TrimSpace(string(out)), "\t")
			n, err := strconv.Atoi(cnt)
			if err != nil {
				return fmt.Errorf("chlog: reparse: wait for mutations: answer %q", out)
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("chlog: reparse: %d mutations of %s.%s at %s unfinished after %v (see system.mutations)", n, c.o.Database, table, RedactURL(u), c.o.WaitTimeout)
			}
			if c.o.Note != nil && time.Since(noted) >= waitNoteEvery {
				noted = time.Now()
				c.o.Note(fmt.Sprintf("waiting for %d mutation(s) of %s.%s at %s (%s parts to do)", n, c.o.Database, table, RedactURL(u), parts))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(delay):
			}
		}
	}
	return nil
}

// query runs sql on the node that answered last, moving on to the next
// node of URLs when one cannot be reached.
func (c *reparseClient) query(ctx context.Context, sql string) ([]byte, error) {
	var errs []error
	for range c.o.URLs {
		out, err := c.queryOn(ctx, c.o.URLs[c.node], sql)
		if err == nil {
			return out, nil
		}
		if _, ok := AsException(err); ok {
			return nil, err // the server answered: another node would too
		}
		errs = append(errs, err)
		c.node = (c.node + 1) % len(c.o.URLs)
	}
	return nil, errors.Join(errs...)
}

// queryOn posts sql to the node at base and returns the answer.
func (c *reparseClient) queryOn(ctx context.Context, base, sql string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	// A batch of changes makes a long statement.
	u := strings.TrimRight(base, "/") + "/?max_query_size=" + strconv.Itoa(max(len(sql)+1, 256<<10))
	if c.o.Cluster != "" {
		u += "&distributed_ddl_task_timeout=" + strconv.Itoa(int(c.o.Timeout/time.Second))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(sql))
	if err != nil {
		return nil, fmt.Errorf("clickhouse: url=%s: %w", RedactURL(base), err)
	}
	if c.o.User != "" {
		req.Header.Set("X-ClickHouse-User", c.o.User)
	}
	if c.o.Password != "" {
		req.Header.Set("X-ClickHouse-Key", c.o.Password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %s", RedactURL(base), c.redact(err, base))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, newException(resp.StatusCode, resp.Header.Get("X-ClickHouse-Exception-Code"), msg)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: read answer: %w", RedactURL(base), err)
	}
	return data, nil
}

// redact is err's text without the password of base's URL or of the
// options.
func (c *reparseClient) redact(err error, base string) string {
	s := err.Error()
	if u, perr := url.Parse(base); perr == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			s = strings.ReplaceAll(s, p, "xxxxx")
		}
	}
	if c.o.Password != "" {
		s = strings.ReplaceAll(s, c.o.Password, "xxxxx")
	}
	return s
}

// quoteString is s as a ClickHouse string literal.
func quoteString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '\'':
			b.WriteByte('\\')
			b.WriteByte(c)
		case 0:
			b.WriteString(`\0`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}
