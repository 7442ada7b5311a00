package chlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// FindOptions say where Find looks for a stored request. The zero value of
// every field means its default.
type FindOptions struct {
	// URL is the ClickHouse HTTP URL; empty means embedded mode: only the
	// spool directory and the WAL are searched (unless URLs is set).
	URL string
	// URLs are ClickHouse nodes (storage.clickhouse.urls). In a cluster
	// (Cluster set) Table is the Distributed table, readable on every
	// node, and the first node that answers is asked; without one each node
	// keeps its own table (the relay wrote to whichever answered), and every
	// node is asked until one has the row. Default: [URL].
	URLs []string
	// Cluster is storage.clickhouse.cluster: empty when the nodes are not
	// one cluster.
	Cluster string
	// Database and Table name the table; defaults "relay" and "stream_logs".
	Database, Table string
	// User and Password are sent as headers, never logged or printed.
	User, Password string
	// SpoolDir holds spool files, rejected/ and wal/; default "data/spool".
	SpoolDir string
	// Timeout bounds the ClickHouse query; default 30s.
	Timeout time.Duration
}

// Found is a stored request and where it was found.
type Found struct {
	Row Row
	// Where names the place: "clickhouse relay.stream_logs at http://...",
	// "spool file PATH", "rejected spool file PATH" or "wal segment PATH".
	Where string
	// Rejected is set when the row is in spool_dir/rejected/: it can never
	// be inserted as it is and will not reach ClickHouse by itself.
	Rejected bool
	// Warnings are lookups that failed along the way (ClickHouse
	// unreachable, an unreadable file) although the row was found.
	Warnings []string
}

// ErrNotFound is the class of errors Find returns when no place holds the
// request; the error itself says where Find looked.
var ErrNotFound = errors.New("chlog: request not found")

// ErrBadRequestID is returned for an id that is not 32 lower-case hex
// characters.
var ErrBadRequestID = errors.New("chlog: request_id must be 32 lower-case hex characters")

// ErrIncomplete is the class of errors Find returns when the row is in
// none of the places that answered but some shard of the Distributed table
// did not answer: the row may be there, so this is no clean miss
// (errors.Is(err, ErrNotFound) does not hold).
var ErrIncomplete = errors.New("chlog: lookup incomplete: a shard did not answer")

// NotFoundError lists the places Find looked in and the lookups that failed.
type NotFoundError struct {
	ID     string
	Looked []string
	Failed []string
	// Unanswered are the shards that did not answer the node that was
	// asked last ("shard 2 (127.0.0.1:9002, 127.0.0.1:9003)"; the
	// addresses alone when the shard's number could not be told): the
	// shards that answered do not hold the row, the others were not
	// searched.
	Unanswered []string
	// Unreadable are the directories under spool_dir (wal, the spool
	// files, rejected) that exist but could not be listed, each naming
	// spool_dir and the cause; they are among Failed too. The row may be
	// in one of them, so the miss is no answer. A directory that does not
	// exist is no failure: nothing was written there yet.
	Unreadable []string
}

func (e *NotFoundError) Error() string {
	s := fmt.Sprintf("chlog: request_id %s not found; looked in: %s", e.ID, strings.Join(e.Looked, "; "))
	if len(e.Unanswered) > 0 {
		s = fmt.Sprintf("chlog: request_id %s %s; looked in: %s", e.ID, e.UnansweredText(), strings.Join(e.Looked, "; "))
	}
	if len(e.Failed) > 0 {
		s += "; failed: " + strings.Join(e.Failed, "; ")
	}
	return s
}

// UnansweredText is the one line that says the miss is no answer: "not
// found on the shards that answered; shard 2 (host:port, host:port) did
// not answer". It is "" when every shard answered.
func (e *NotFoundError) UnansweredText() string {
	if len(e.Unanswered) == 0 {
		return ""
	}
	return "not found on the shards that answered; " + strings.Join(e.Unanswered, ", ") + " did not answer"
}

// Is makes errors.Is(err, ErrNotFound) hold for a clean miss, and
// errors.Is(err, ErrIncomplete) when a shard did not answer.
func (e *NotFoundError) Is(target error) bool {
	if len(e.Unanswered) > 0 {
		return target == ErrIncomplete
	}
	return target == ErrNotFound
}

// ValidRequestID reports whether id is 32 lower-case hex characters, the
// form of X-Request-Id and stream_logs.request_id.
func ValidRequestID(id string) bool {
	if len(id) != record.IDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Find returns the stored row of request id. It looks where a row goes on
// its way, upstream stage first, so that a row moving on while Find runs is
// still met further down: the WAL segments (spool_dir/wal), the spool files
// (newest first), spool_dir/rejected, then ClickHouse when a URL is set.
// Files are only read. A row still in a writer's memory (the current block,
// up to one flush interval) is in none of these places yet.
func Find(ctx context.Context, o FindOptions, id string) (*Found, error) {
	if !ValidRequestID(id) {
		return nil, fmt.Errorf("%w: request_id=%q", ErrBadRequestID, id)
	}
	o.setDefaults()
	nf := &NotFoundError{ID: id}
	want := []byte(id)

	// list names the files of dir; one that cannot be listed is recorded
	// as unreadable.
	list := func(dir, ext string) []string {
		names, err := newestFirst(dir, ext)
		if err != nil {
			msg := fmt.Sprintf("spool_dir %s cannot be read: %v", o.SpoolDir, err)
			nf.Unreadable = append(nf.Unreadable, msg)
			nf.Failed = append(nf.Failed, msg)
		}
		return names
	}

	walPath := filepath.Join(o.SpoolDir, walDir)
	segs := list(walPath, walExt)
	row, path, fails := findInWAL(walPath, segs, want)
	nf.Looked = append(nf.Looked, fmt.Sprintf("wal %s (%d segments)", walPath, len(segs)))
	nf.Failed = append(nf.Failed, fails...)
	if row != nil {
		return &Found{Row: *row, Where: "wal segment " + path, Warnings: nf.Failed}, nil
	}

	for _, dir := range []string{o.SpoolDir, filepath.Join(o.SpoolDir, "rejected")} {
		rejected := dir != o.SpoolDir
		names := list(dir, spoolExt)
		row, path, fails := findInSpoolDir(dir, names, want)
		what := "spool"
		if rejected {
			what = "rejected"
		}
		nf.Looked = append(nf.Looked, fmt.Sprintf("%s %s (%d files)", what, dir, len(names)))
		nf.Failed = append(nf.Failed, fails...)
		if row != nil {
			where := "spool file " + path
			if rejected {
				where = "rejected spool file " + path
			}
			return &Found{Row: *row, Where: where, Rejected: rejected, Warnings: nf.Failed}, nil
		}
	}

	// In a cluster the first node that answers decides; without one every
	// node is asked. A node that cannot be asked is a warning and the next
	// one is asked. A node whose Distributed
	// read fails because a whole shard is down (code 279 or 210) is asked
	// again with skip_unavailable_shards=1: the shards that answer are
	// searched, and a miss there names the shard that did not answer.
	for _, u := range o.URLs {
		where := fmt.Sprintf("clickhouse %s.%s at %s", o.Database, o.Table, RedactURL(u))
		nf.Looked = append(nf.Looked, where)
		row, err := findInClickHouse(ctx, &o, u, id, false)
		var unanswered []string
		if e, ok := AsException(err); ok && shardUnavailable(e.Code) {
			unanswered = unansweredShards(ctx, &o, u, e)
			row, err = findInClickHouse(ctx, &o, u, id, true)
		}
		if err != nil {
			nf.Failed = append(nf.Failed, err.Error())
			continue
		}
		if row != nil {
			f := &Found{Row: *row, Where: where, Warnings: nf.Failed}
			if len(unanswered) > 0 {
				f.Warnings = append(f.Warnings, fmt.Sprintf("%s did not answer %s (found on the shards that answered)", strings.Join(unanswered, ", "), where))
			}
			return f, nil
		}
		nf.Unanswered = unanswered
		if o.Cluster != "" {
			break
		}
	}

	// Last, the copies of damaged WAL segments (walscan.go's setAside):
	// their whole records went on to the spool and ClickHouse, looked in
	// above; a row found only here is one that was never stored, or whose
	// stored copy is gone.
	rejWAL := filepath.Join(o.SpoolDir, rejectedDir)
	names, _ := newestFirst(rejWAL, walExt) // an error was recorded above: the same directory
	nf.Looked = append(nf.Looked, fmt.Sprintf("rejected wal copies %s (%d segments)", rejWAL, len(names)))
	row, path, fails = findInWAL(rejWAL, names, want)
	nf.Failed = append(nf.Failed, fails...)
	if row != nil {
		return &Found{Row: *row, Where: "rejected wal segment " + path + " (a damaged segment's copy: never replayed)", Rejected: true, Warnings: nf.Failed}, nil
	}
	return nil, nf
}

// Codes of a Distributed read that failed because no replica of some shard
// could be reached: ALL_CONNECTION_TRIES_FAILED and NETWORK_ERROR.
const (
	codeAllConnectionTriesFailed = 279
	codeNetworkError             = 210
)

func shardUnavailable(code int) bool {
	return code == codeAllConnectionTriesFailed || code == codeNetworkError
}

// addrInText matches the "(host:port)" ClickHouse writes after a
// connection failure to another server.
var addrInText = regexp.MustCompile(`\(([^()\s,]+:[0-9]+)\)`)

// unansweredShards names the shards whose replicas the failed read e could
// not reach: "shard N (host:port, ...)" from the addresses in the server's
// text and system.clusters of the table's cluster. When the cluster cannot
// be read it returns the addresses alone, and when the text names none,
// the error's first line.
func unansweredShards(ctx context.Context, o *FindOptions, baseURL string, e *Exception) []string {
	var addrs []string
	for _, m := range addrInText.FindAllStringSubmatch(e.Message, -1) {
		if !slices.Contains(addrs, m[1]) {
			addrs = append(addrs, m[1])
		}
	}
	if len(addrs) == 0 {
		return []string{"a shard (" + trimException(e) + ")"}
	}
	fallback := []string{"a shard (" + strings.Join(addrs, ", ") + ")"}
	engine, err := chText(ctx, o, baseURL, nil, "SELECT engine_full FROM system.tables WHERE database = '"+o.Database+"' AND name = '"+o.Table+"' FORMAT TSV")
	if err != nil {
		return fallback
	}
	args, ok := strings.CutPrefix(strings.TrimSpace(engine), "Distributed(")
	cluster, _, _ := strings.Cut(args, ",")
	cluster = strings.Trim(strings.TrimSpace(cluster), "'`\"")
	if !ok || !ValidIdent(cluster) {
		return fallback
	}
	tsv, err := chText(ctx, o, baseURL, nil, "SELECT shard_num, host_name, host_address, port FROM system.clusters WHERE cluster = '"+cluster+"' ORDER BY shard_num, replica_num FORMAT TSV")
	if err != nil {
		return fallback
	}
	type shard struct {
		num      string
		replicas []string
		down     bool
	}
	var shards []*shard
	for _, line := range strings.Split(strings.TrimSpace(tsv), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			continue
		}
		if len(shards) == 0 || shards[len(shards)-1].num != f[0] {
			shards = append(shards, &shard{num: f[0]})
		}
		sh := shards[len(shards)-1]
		sh.replicas = append(sh.replicas, f[1]+":"+f[3])
		if slices.Contains(addrs, f[1]+":"+f[3]) || slices.Contains(addrs, f[2]+":"+f[3]) {
			sh.down = true
		}
	}
	var out []string
	for _, sh := range shards {
		if sh.down {
			out = append(out, "shard "+sh.num+" ("+strings.Join(sh.replicas, ", ")+")")
		}
	}
	if len(out) == 0 {
		return fallback
	}
	return out
}

// findError is a ClickHouse exception cut to its first line: a failed
// Distributed read's text lists every connection try (kilobytes), which
// is no use to an operator. The whole exception stays reachable with
// AsException.
type findError struct{ e *Exception }

func (f *findError) Error() string {
	return fmt.Sprintf("clickhouse: http %d: code %d: %s", f.e.Status, f.e.Code, trimException(f.e))
}

func (f *findError) Unwrap() error { return f.e }

// maxExceptionText bounds the server text Find reports.
const maxExceptionText = 300

// trimException is the first line of e's text without the "Code: N,
// e.displayText() = " prefix and the ", e.what() = ..." suffix.
func trimException(e *Exception) string {
	s, _, _ := strings.Cut(e.Message, "\n")
	if rest, ok := strings.CutPrefix(s, "Code: "); ok {
		if _, after, ok := strings.Cut(rest, "e.displayText() = "); ok {
			s = after
		}
	}
	if i := strings.LastIndex(s, ", e.what() = "); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSuffix(strings.TrimSpace(s), " Log:")
	if len(s) > maxExceptionText {
		s = strings.ToValidUTF8(s[:maxExceptionText], "") + "..."
	}
	return s
}

func (o *FindOptions) setDefaults() {
	if len(o.URLs) == 0 && o.URL != "" {
		o.URLs = []string{o.URL}
	}
	if o.Database == "" {
		o.Database = "relay"
	}
	if o.Table == "" {
		o.Table = "stream_logs"
	}
	if o.SpoolDir == "" {
		o.SpoolDir = "data/spool"
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
}

// findInClickHouse runs one SELECT ... FORMAT Native of the relay's
// columns the table has (selectList) and decodes the answer by column
// name: columns the table lacks are left zero. nil, nil means no such row.
// skipShards reads a Distributed table with skip_unavailable_shards=1.
func findInClickHouse(ctx context.Context, o *FindOptions, baseURL, id string, skipShards bool) (*Row, error) {
	if !ValidIdent(o.Database) || !ValidIdent(o.Table) {
		return nil, fmt.Errorf("clickhouse: database=%q table=%q: must match [A-Za-z_][A-Za-z0-9_]*", o.Database, o.Table)
	}
	// A replica more than a second behind (its replication queue waiting)
	// is not asked while another of its shard is current: it answered
	// "not found" for rows its shard has (ClickHouse uses replicas up to
	// 300 s behind by default). Ignored for a table that is no
	// Distributed one.
	settings := url.Values{"max_replica_delay_for_distributed_queries": {"1"}}
	if skipShards {
		settings.Set("skip_unavailable_shards", "1")
	}
	// Only the relay's columns the table has: a column an operator added
	// may be of a type the decoder does not read (LowCardinality, Decimal,
	// Map), and SELECT * would fail every lookup.
	names, err := chQueryBytes(ctx, o, baseURL, nil, "SELECT name FROM system.columns WHERE database = "+
		quoteString(o.Database)+" AND table = "+quoteString(o.Table)+" FORMAT TabSeparated")
	if err != nil {
		return nil, err
	}
	list := selectList(strings.Fields(string(names)))
	if list == "" {
		list = "*" // no such table (or none of the relay's columns): the server's own error says which
	}
	// id is validated hex: it cannot break out of the quotes.
	sql := "SELECT " + list + " FROM " + o.Database + "." + o.Table + " WHERE request_id = '" + id + "' LIMIT 1 FORMAT Native"
	data, err := chQueryBytes(ctx, o, baseURL, settings, sql)
	if e, ok := AsException(err); ok && e.Code == codeReadonly {
		// A readonly=1 user may set no setting at all: asked as before.
		settings.Del("max_replica_delay_for_distributed_queries")
		data, err = chQueryBytes(ctx, o, baseURL, settings, sql)
	}
	if err != nil {
		return nil, err
	}
	rows, err := DecodeRows(data)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	for i := range rows {
		if rows[i].RequestID == id {
			return &rows[i], nil
		}
	}
	return nil, nil
}

// codeReadonly is ClickHouse's READONLY: a setting a readonly=1 user may
// not change.
const codeReadonly = 164

// chText is chQueryBytes as text.
func chText(ctx context.Context, o *FindOptions, baseURL string, settings url.Values, sql string) (string, error) {
	b, err := chQueryBytes(ctx, o, baseURL, settings, sql)
	return string(b), err
}

// chQueryBytes POSTs sql to baseURL with settings as URL parameters and
// returns the answer. A ClickHouse error comes back as a *findError.
func chQueryBytes(ctx context.Context, o *FindOptions, baseURL string, settings url.Values, sql string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	u := strings.TrimRight(baseURL, "/") + "/"
	if len(settings) > 0 {
		u += "?" + settings.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(sql))
	if err != nil {
		return nil, fmt.Errorf("clickhouse: url=%s: %w", RedactURL(baseURL), err)
	}
	if o.User != "" {
		req.Header.Set("X-ClickHouse-User", o.User)
	}
	if o.Password != "" {
		req.Header.Set("X-ClickHouse-Key", o.Password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %s", redactErr(err, o, baseURL))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
		return nil, &findError{newException(resp.StatusCode, resp.Header.Get("X-ClickHouse-Exception-Code"), msg)}
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: read answer: %w", err)
	}
	return data, nil
}

// findInSpoolDir decodes the spool files names of dir (newest first) that
// contain the id's bytes at all. It returns the row and its file, and the
// files that could not be read or decoded.
func findInSpoolDir(dir string, names []string, id []byte) (row *Row, path string, fails []string) {
	for _, name := range names {
		p := filepath.Join(dir, name)
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue // replayed or rejected meanwhile: met further down
		}
		if err != nil {
			fails = append(fails, err.Error())
			continue
		}
		if !bytes.Contains(data, id) {
			continue
		}
		// A corrupt file may still hold good blocks before the bad one:
		// look at what decodes.
		var hit *Row
		derr := decodeBlocks(data, func(b *block) error {
			for i := range b.rows {
				if bytes.Equal(b.id.RowBytes(i), id) {
					r := b.row(i)
					hit = &r
					return errStop
				}
			}
			return nil
		})
		if hit != nil {
			return hit, p, fails
		}
		if derr != nil {
			fails = append(fails, fmt.Sprintf("%s: %v", p, derr))
		}
	}
	return nil, "", fails
}

// newestFirst lists the files of dir ending in ext, newest first (spool
// and WAL names start with the block's sequence number). A missing dir is
// no error: nothing was written there yet.
func newestFirst(dir, ext string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() && !special(dir, e) && strings.HasSuffix(e.Name(), ext) {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	slices.Reverse(names)
	return names, nil
}

// errStop ends decodeBlocks early once the row is found.
var errStop = errors.New("stop")

// findInWAL reads the WAL segments names of dir (newest first) read-only.
// The request id in each record's header (see wal.go) picks the records to
// decode. A torn or still growing last record ends a segment's scan; a
// corrupt record is skipped and the records after it are read
// (walscan.go), and the damage is reported among the failed lookups.
//
// The CRC covers the payload only: a header whose id was damaged can lead
// to another request's whole record. Such a record (or one that does not
// decode) is reported as damaged and the scan goes on.
func findInWAL(dir string, names []string, id []byte) (row *Row, path string, fails []string) {
	for _, name := range names {
		p := filepath.Join(dir, name)
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue // its block was inserted or spooled meanwhile
		}
		if err != nil {
			fails = append(fails, err.Error())
			continue
		}
		var hit *Row
		scan := walRecords(data, func(rid, payload []byte) bool {
			if !bytes.Equal(rid, id) {
				return true
			}
			rows, err := DecodeRows(payload)
			if err != nil {
				fails = append(fails, fmt.Sprintf("wal segment %s: a record headed request_id %s does not decode, skipped: %v", p, id, err))
				return true
			}
			for i := range rows {
				if rows[i].RequestID == string(id) {
					hit = &rows[i]
					return false
				}
			}
			got := "no row"
			if len(rows) > 0 {
				got = fmt.Sprintf("request_id %q", rows[0].RequestID)
			}
			fails = append(fails, fmt.Sprintf("wal segment %s: a record headed request_id %s holds %s (damaged header), skipped", p, id, got))
			return true
		})
		if scan.damaged() {
			fails = append(fails, fmt.Sprintf("wal segment %s: %s", p, scan))
		}
		if hit != nil {
			return hit, p, fails
		}
	}
	return nil, "", fails
}

// RedactURL is s with a password written into it replaced (for errors
// and logs), or "(unparseable url)".
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable url)"
	}
	return u.Redacted()
}

// redactErr is err's text with the URL's password, if any, replaced.
func redactErr(err error, o *FindOptions, baseURL string) string {
	s := err.Error()
	if u, perr := url.Parse(baseURL); perr == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			s = strings.ReplaceAll(s, p, "xxxxx")
		}
	}
	if o.Password != "" {
		s = strings.ReplaceAll(s, o.Password, "xxxxx")
	}
	return s
}

// selectList is the comma-separated names of the relay's columns (in the
// table layout's order) among have, a table's column names; "" when none.
func selectList(have []string) string {
	var b strings.Builder
	for _, c := range columns {
		if slices.Contains(have, c.name) {
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(c.name)
		}
	}
	return b.String()
}
