package chlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/ch-go/compress"
)

// Exception is an error ClickHouse answered with (HTTP status >= 400).
type Exception struct {
	Status  int    // HTTP status
	Code    int    // ClickHouse error code, 0 when not found in the answer
	Message string // the server's text, trimmed
}

func (e *Exception) Error() string {
	return fmt.Sprintf("clickhouse: http %d: code %d: %s", e.Status, e.Code, e.Message)
}

// errUnknownOutcome marks an insert that may or may not have been applied:
// the request was sent but no whole answer came (a timeout, a connection cut
// before or while the answer was read, a 200 whose body broke off), a 5xx
// without a ClickHouse exception code (a proxy's) came, or the server said
// UNKNOWN_STATUS_OF_INSERT. Only a request that never reached the server
// (dial error) or another exception the server answered is a plain failure.
var errUnknownOutcome = errors.New("chlog: insert outcome unknown")

// codeUnknownStatusOfInsert is ClickHouse's UNKNOWN_STATUS_OF_INSERT (a
// replicated insert whose quorum write lost touch): an unknown outcome.
const codeUnknownStatusOfInsert = 319

// chClient talks to ClickHouse's HTTP interface with one reused net/http
// client.
type chClient struct {
	base      string // URL without trailing slash
	insertURL string
	user, key string
	hc        *http.Client
	lz4       *compress.Writer
	zbuf      []byte

	// dedupToken: the server knows insert_deduplication_token (ClickHouse
	// 22.2 and later); every insert then carries one (see enableServerDedup).
	dedupToken atomic.Bool
}

// compressChunk is the raw size of one LZ4 frame in the request body; the
// server's limit is far larger, smaller frames keep the scratch buffer small.
const compressChunk = 1 << 20

func newClient(o *Options) *chClient {
	base := strings.TrimRight(o.URL, "/")
	q := url.Values{}
	q.Set("query", "INSERT INTO "+o.Database+"."+o.Table+" FORMAT Native")
	// decompress=1: the body is ClickHouse's own LZ4 block format, which
	// 18.16 and current servers read; cheaper to produce than gzip.
	q.Set("decompress", "1")
	return &chClient{
		base:      base,
		insertURL: base + "/?" + q.Encode(),
		user:      o.User,
		key:       o.Password,
		hc: &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
		}},
		lz4: compress.NewWriter(compress.LevelZero, compress.LZ4),
	}
}

// insert sends one raw Native body under queryID, with token as its
// insert_deduplication_token where the server knows that setting. Not safe
// for concurrent use (the writer holds its insert slot).
func (c *chClient) insert(ctx context.Context, native []byte, queryID, token string) error {
	c.zbuf = c.zbuf[:0]
	for p := native; len(p) > 0; {
		n := min(len(p), compressChunk)
		if err := c.lz4.Compress(p[:n]); err != nil {
			return fmt.Errorf("compress: %w", err)
		}
		c.zbuf = append(c.zbuf, c.lz4.Data...)
		p = p[n:]
	}
	err := c.do(ctx, c.insertURLFor(queryID, token), c.zbuf, nil)
	if cap(c.zbuf) > keepBufferBytes {
		c.zbuf = nil // a huge block's buffer is not kept at its peak
	}
	return err
}

// insertURLFor is the URL of one insert attempt. queryID and token are
// built from quoteID'd ids and digits only, so they need no escaping; they
// are escaped anyway.
func (c *chClient) insertURLFor(queryID, token string) string {
	u := c.insertURL + "&query_id=" + url.QueryEscape(queryID)
	if c.dedupToken.Load() && token != "" {
		u += "&insert_deduplication_token=" + url.QueryEscape(token)
	}
	return u
}

// running reports whether a query with queryID is still executing on the
// server: an insert whose client gave up (timeout) may still be applied.
func (c *chClient) running(ctx context.Context, queryID string) (bool, error) {
	s, err := c.query(ctx, "SELECT count() FROM system.processes WHERE query_id = '"+queryID+"'")
	if err != nil {
		return false, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return false, fmt.Errorf("count answer %q: %w", s, err)
	}
	return n > 0, nil
}

// query runs a statement and returns the answer's body.
func (c *chClient) query(ctx context.Context, sql string) (string, error) {
	var out bytes.Buffer
	err := c.do(ctx, c.base+"/", []byte(sql), &out)
	return out.String(), err
}

func (c *chClient) do(ctx context.Context, u string, body []byte, out *bytes.Buffer) error {
	return c.doType(ctx, u, "", body, out)
}

// doType posts body (of content type ctype when set) to u. It writes the
// answer into out, or discards it when out is nil.
func (c *chClient) doType(ctx context.Context, u, ctype string, body []byte, out *bytes.Buffer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.user != "" {
		req.Header.Set("X-ClickHouse-User", c.user)
	}
	if c.key != "" {
		req.Header.Set("X-ClickHouse-Key", c.key)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return err // never reached the server: certainly not applied
		}
		return fmt.Errorf("%w: %w", errUnknownOutcome, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		e := newException(resp.StatusCode, resp.Header.Get("X-ClickHouse-Exception-Code"), msg)
		if e.Code == 0 && e.Status >= 500 || e.Code == codeUnknownStatusOfInsert {
			// A proxy's answer (ClickHouse's own names a code), such as a
			// 504 after it forwarded the request, or the server saying
			// itself it does not know: the insert may have been applied.
			return fmt.Errorf("%w: %w", errUnknownOutcome, e)
		}
		return e
	}
	if out != nil {
		if _, err := out.ReadFrom(resp.Body); err != nil {
			return fmt.Errorf("%w: read answer: %w", errUnknownOutcome, err)
		}
		return nil
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		// The server said 200 but the answer broke off: for an insert
		// that is applied or not, nobody knows.
		return fmt.Errorf("%w: read answer: %w", errUnknownOutcome, err)
	}
	return nil
}

func newException(status int, codeHeader string, msg []byte) *Exception {
	e := &Exception{Status: status, Message: strings.TrimSpace(string(msg))}
	e.Code, _ = strconv.Atoi(codeHeader)
	if e.Code == 0 && strings.HasPrefix(e.Message, "Code: ") {
		s := e.Message[len("Code: "):]
		if i := strings.IndexAny(s, ",."); i > 0 {
			e.Code, _ = strconv.Atoi(s[:i])
		}
	}
	return e
}

// AsException returns the ClickHouse exception inside err, if any.
func AsException(err error) (*Exception, bool) {
	var e *Exception
	ok := errors.As(err, &e)
	return e, ok
}

// quoteID keeps only ASCII letters and digits (request ids are hex), so an
// id can never break a query, a URL or a file name.
func quoteID(id []byte) string {
	b := make([]byte, 0, len(id))
	for _, c := range id {
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			b = append(b, c)
		}
	}
	return string(b)
}
