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
	// URLs are ClickHouse nodes (storage.clickhouse.urls): the first that
	// answers is asked. Default: [URL]. In a cluster, Table is the
	// Distributed table, readable on every node.
	URLs []string
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

// NotFoundError lists the places Find looked in and the lookups that failed.
type NotFoundError struct {
	ID     string
	Looked []string
	Failed []string
}

func (e *NotFoundError) Error() string {
	s := fmt.Sprintf("chlog: request_id %s not found; looked in: %s", e.ID, strings.Join(e.Looked, "; "))
	if len(e.Failed) > 0 {
		s += "; failed: " + strings.Join(e.Failed, "; ")
	}
	return s
}

// Is makes errors.Is(err, ErrNotFound) hold.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

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

	walDir := filepath.Join(o.SpoolDir, "wal")
	row, path, n, fails := findInWAL(walDir, want)
	nf.Looked = append(nf.Looked, fmt.Sprintf("wal %s (%d segments)", walDir, n))
	nf.Failed = append(nf.Failed, fails...)
	if row != nil {
		return &Found{Row: *row, Where: "wal segment " + path, Warnings: nf.Failed}, nil
	}

	for _, dir := range []string{o.SpoolDir, filepath.Join(o.SpoolDir, "rejected")} {
		rejected := dir != o.SpoolDir
		row, path, n, fails := findInSpoolDir(dir, want)
		what := "spool"
		if rejected {
			what = "rejected"
		}
		nf.Looked = append(nf.Looked, fmt.Sprintf("%s %s (%d files)", what, dir, n))
		nf.Failed = append(nf.Failed, fails...)
		if row != nil {
			where := "spool file " + path
			if rejected {
				where = "rejected spool file " + path
			}
			return &Found{Row: *row, Where: where, Rejected: rejected, Warnings: nf.Failed}, nil
		}
	}

	// The first node that answers decides; a node that cannot be asked
	// is a warning and the next one is asked.
	for _, u := range o.URLs {
		where := fmt.Sprintf("clickhouse %s.%s at %s", o.Database, o.Table, redactURL(u))
		nf.Looked = append(nf.Looked, where)
		row, err := findInClickHouse(ctx, &o, u, id)
		if err != nil {
			nf.Failed = append(nf.Failed, err.Error())
			continue
		}
		if row != nil {
			return &Found{Row: *row, Where: where, Warnings: nf.Failed}, nil
		}
		break
	}
	return nil, nf
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

// findInClickHouse runs one SELECT * ... FORMAT Native and decodes the
// answer by column name: columns the relay does not know are skipped,
// columns the table lacks are left zero. nil, nil means no such row.
func findInClickHouse(ctx context.Context, o *FindOptions, baseURL, id string) (*Row, error) {
	if !isIdent(o.Database) || !isIdent(o.Table) {
		return nil, fmt.Errorf("clickhouse: database=%q table=%q: must match [A-Za-z_][A-Za-z0-9_]*", o.Database, o.Table)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	// id is validated hex: it cannot break out of the quotes.
	sql := "SELECT * FROM " + o.Database + "." + o.Table + " WHERE request_id = '" + id + "' LIMIT 1 FORMAT Native"
	u := strings.TrimRight(baseURL, "/") + "/"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(sql))
	if err != nil {
		return nil, fmt.Errorf("clickhouse: url=%s: %w", redactURL(baseURL), err)
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
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, newException(resp.StatusCode, resp.Header.Get("X-ClickHouse-Exception-Code"), msg)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: read answer: %w", err)
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

// findInSpoolDir decodes the spool files of dir, newest first, that contain
// the id's bytes at all. It returns the row and its file, the number of
// files looked at, and the files that could not be read or decoded.
func findInSpoolDir(dir string, id []byte) (row *Row, path string, files int, fails []string) {
	names, err := newestFirst(dir, spoolExt)
	if err != nil {
		return nil, "", 0, append(fails, err.Error())
	}
	for _, name := range names {
		files++
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
			return hit, p, files, fails
		}
		if derr != nil {
			fails = append(fails, fmt.Sprintf("%s: %v", p, derr))
		}
	}
	return nil, "", files, fails
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
		if !e.IsDir() && strings.HasSuffix(e.Name(), ext) {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	slices.Reverse(names)
	return names, nil
}

// errStop ends decodeBlocks early once the row is found.
var errStop = errors.New("stop")

// findInWAL reads the WAL segments of dir read-only. The request id in each
// record's header (see wal.go) picks the one record to decode. A torn or
// still growing last record ends a segment's scan; a corrupt record is
// skipped and the records after it are read (walscan.go), and the damage
// is reported among the failed lookups.
func findInWAL(dir string, id []byte) (row *Row, path string, segs int, fails []string) {
	names, err := newestFirst(dir, walExt)
	if err != nil {
		return nil, "", 0, append(fails, err.Error())
	}
	for _, name := range names {
		segs++
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
				fails = append(fails, fmt.Sprintf("%s: %v", p, err))
			} else if len(rows) == 1 {
				hit = &rows[0]
			}
			return false
		})
		if scan.damaged() {
			fails = append(fails, fmt.Sprintf("wal segment %s: %s", p, scan))
		}
		if hit != nil {
			return hit, p, segs, fails
		}
	}
	return nil, "", segs, fails
}

// redactURL drops a password written into the URL.
func redactURL(s string) string {
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
