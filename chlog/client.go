package chlog

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

// errUnknownOutcome marks an insert (or another statement: the start-up's
// schema check) that may or may not have been applied: the request was
// sent but no whole answer came (a timeout, a connection cut
// before or while the answer was read, a 200 whose body broke off), a 5xx
// without a ClickHouse exception code (a proxy's) came, or the server said
// UNKNOWN_STATUS_OF_INSERT. Only a request that never reached the server
// (dial error) or another exception the server answered is a plain failure.
var errUnknownOutcome = errors.New("chlog: no whole answer from ClickHouse (to an insert: its outcome unknown)")

// codeUnknownStatusOfInsert is ClickHouse's UNKNOWN_STATUS_OF_INSERT (a
// replicated insert whose quorum write lost touch): an unknown outcome.
const codeUnknownStatusOfInsert = 319

// chClient talks to ClickHouse's HTTP interface with one reused net/http
// client. It knows one or several nodes (Options.URLs) and sends to one of
// them, the current one, until it fails (nodeFault): the next request then
// goes to the next node.
type chClient struct {
	nodes   []*chNode
	cur     atomic.Int32 // index into nodes of the node tried first
	cluster string       // Options.Cluster: the inserts go to a Distributed table
	// ddlTimeout is distributed_ddl_task_timeout (seconds) of ON CLUSTER
	// statements (ddlTimeoutFor).
	ddlTimeout int
	// ddlHostDown: an ON CLUSTER statement of this schema check found a
	// host that does not answer; the next ones wait ddlTimeoutHostDown.
	ddlHostDown atomic.Bool
	log         *slog.Logger
	user, key   string
	hc          *http.Client
	lz4         *compress.Writer // used by the insert in flight's body only

	// dedupToken: the server knows insert_deduplication_token (ClickHouse
	// 22.2 and later); every insert then carries one (see enableServerDedup).
	dedupToken atomic.Bool
}

// chNode is one ClickHouse node of Options.URLs.
type chNode struct {
	base      string // URL without trailing slash
	insertURL string
	label     string       // host:port, for logs and metrics (never credentials)
	compress  bool         // inserts go as LZ4 frames (Options.Compression)
	errors    atomic.Int64 // requests that failed with a fault of the node (nodeFault)
}

// compressChunk is the raw size of one LZ4 frame in the request body; the
// server's limit is far larger, smaller frames keep the scratch buffer small.
const compressChunk = 1 << 20

func newClient(o *Options) *chClient {
	urls := o.URLs
	if len(urls) == 0 && o.URL != "" {
		urls = []string{o.URL}
	}
	q := url.Values{}
	q.Set("query", "INSERT INTO "+o.Database+"."+o.Table+" FORMAT Native")
	if o.Cluster != "" {
		// The Distributed table answers only once every shard has its
		// part (or one failed): see cluster.go.
		q.Set("insert_distributed_sync", "1")
	}
	c := &chClient{
		cluster:    o.Cluster,
		ddlTimeout: ddlTimeoutFor(o.InsertTimeout),
		log:        o.Logger,
		user:       o.User,
		key:        o.Password,
		hc: &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: 5 * time.Second, // https: a server that never finishes it is one not reached
			MaxIdleConnsPerHost: 4,
			// Below ClickHouse's keep_alive_timeout (3 s on 18.16, 10 s on
			// current servers): a request sent on a connection the server
			// is closing fails ("connection reset by peer"), and a cut
			// insert is an unknown outcome to settle.
			IdleConnTimeout: 2 * time.Second,
		}},
		lz4: compress.NewWriter(compress.LevelZero, compress.LZ4),
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	for _, u := range urls {
		base := strings.TrimRight(u, "/")
		n := &chNode{base: base, label: nodeLabel(base), compress: compressTo(o.Compression, base)}
		n.insertURL = base + "/?" + q.Encode()
		if n.compress {
			// The body is ClickHouse's own LZ4 block format, which 18.16
			// and current servers read; cheaper to produce than gzip.
			n.insertURL += "&decompress=1"
		}
		c.nodes = append(c.nodes, n)
	}
	return c
}

// compressTo reports whether inserts to the node at base go compressed:
// with CompressionAuto, unless the node is on loopback.
func compressTo(mode, base string) bool {
	switch mode {
	case CompressionNone:
		return false
	case CompressionLZ4:
		return true
	}
	u, err := url.Parse(base)
	if err != nil {
		return true
	}
	host := u.Hostname()
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// nodeLabel is the host:port of a node's URL: what logs and metrics name.
func nodeLabel(base string) string {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return "unparseable-url"
	}
	if u.Port() == "" {
		if u.Scheme == "https" {
			return u.Host + ":443"
		}
		return u.Host + ":80"
	}
	return u.Host
}

// current returns the node requests go to now.
func (c *chClient) current() (int, *chNode) {
	i := int(c.cur.Load()) % len(c.nodes)
	return i, c.nodes[i]
}

// nodeFault reports whether err says something about the node rather than
// the request: it was not reached, cut the connection, did not answer in
// time, or a 5xx without a ClickHouse code came (a proxy's). Another node
// may do better.
func nodeFault(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if e, ok := AsException(err); ok {
		return e.Code == 0 && e.Status >= 500
	}
	return true
}

// failed notes that node i failed with err: when that was the node's fault
// it is counted, and the next request goes to the next node.
func (c *chClient) failed(i int, err error) {
	if !nodeFault(err) {
		return
	}
	n := c.nodes[i]
	n.errors.Add(1)
	if len(c.nodes) == 1 {
		return
	}
	next := (i + 1) % len(c.nodes)
	if c.cur.CompareAndSwap(int32(i), int32(next)) {
		c.log.Warn("chlog: ClickHouse node failed; moving to the next node", "node", n.label, "next", c.nodes[next].label, "err", err)
	}
}

// NodeError is an error of one ClickHouse node; errors.As finds it in the
// errors of inserts and queries.
type NodeError struct {
	Node string // host:port of the node's URL
	Err  error
}

func (e *NodeError) Error() string { return "node " + e.Node + ": " + e.Err.Error() }

// Unwrap returns the node's error.
func (e *NodeError) Unwrap() error { return e.Err }

// failedNode returns the node an error names, or "".
func failedNode(err error) string {
	var ne *NodeError
	if errors.As(err, &ne) {
		return ne.Node
	}
	return ""
}

// insert sends one raw Native body under queryID, with token as its
// insert_deduplication_token where the server knows that setting, to the
// current node. Not safe for concurrent use (the writer holds its insert
// slot).
func (c *chClient) insert(ctx context.Context, native []byte, queryID, token string) error {
	return c.insertMore(ctx, native, nil, queryID, token)
}

// insertMore is insert whose body, once native is sent, goes on with what
// more returns (see zbody).
func (c *chClient) insertMore(ctx context.Context, native []byte, more func() []byte, queryID, token string) error {
	// A new body each time: a late Read of an earlier one must find it
	// ended, not this insert's bytes.
	i, n := c.current()
	body := &zbody{src: native, more: more}
	if n.compress {
		body.lz4 = c.lz4
	}
	err := c.doBody(ctx, c.insertURLOn(n, queryID, token), "", body, nil)
	body.end()
	if err == nil {
		return nil
	}
	c.failed(i, err)
	if c.cluster != "" && !errors.Is(err, errUnknownOutcome) && classify(err) == failTransient && !dialFailed(err) {
		// A Distributed insert that failed on the way (a shard down, a
		// replica read-only, ZooKeeper gone) may have stored the parts
		// of the other shards: see cluster.go.
		err = fmt.Errorf("%w: %w", errUnknownOutcome, err)
	}
	return &NodeError{Node: n.label, Err: err}
}

// insertURLFor is the URL of one insert attempt on the current node.
func (c *chClient) insertURLFor(queryID, token string) string {
	_, n := c.current()
	return c.insertURLOn(n, queryID, token)
}

// insertURLOn is the URL of one insert attempt on node n. queryID and
// token are built from quoteID'd ids and digits only, so they need no
// escaping; they are escaped anyway.
func (c *chClient) insertURLOn(n *chNode, queryID, token string) string {
	u := n.insertURL + "&query_id=" + url.QueryEscape(queryID)
	if c.dedupToken.Load() && token != "" {
		u += "&insert_deduplication_token=" + url.QueryEscape(token)
	}
	return u
}

// dialFailed reports whether err is a request that never reached the
// server.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// running reports whether a query with queryID (or a query it started on
// another node, initial_query_id) still executes on any node: an insert
// whose client gave up (timeout) may still be applied. A node that refuses
// connections runs nothing; when no node answers at all, nothing can be
// told and the error is returned.
func (c *chClient) running(ctx context.Context, queryID string) (bool, error) {
	sql := "SELECT count() FROM system.processes WHERE query_id = '" + queryID + "' OR initial_query_id = '" + queryID + "'"
	var firstErr error
	answered := 0
	for _, n := range c.nodes {
		var out bytes.Buffer
		err := c.do(ctx, n.base+"/", []byte(sql), &out)
		if err != nil {
			if firstErr == nil {
				firstErr = &NodeError{Node: n.label, Err: err}
			}
			if dialFailed(err) {
				continue
			}
			return false, firstErr
		}
		answered++
		k, err := strconv.Atoi(strings.TrimSpace(out.String()))
		if err != nil {
			return false, fmt.Errorf("node %s: count answer %q: %w", n.label, out.String(), err)
		}
		if k > 0 {
			return true, nil
		}
	}
	if answered == 0 {
		return false, firstErr
	}
	return false, nil
}

// query runs a statement and returns the answer's body.
func (c *chClient) query(ctx context.Context, sql string) (string, error) {
	var out bytes.Buffer
	err := c.post(ctx, "/", "", []byte(sql), &out)
	return out.String(), err
}

// post sends body to path (with its query string) on the current node and,
// while a node fails by its own fault, on the next ones, each node once.
// For statements that may run twice: reads and idempotent DDL, never an
// insert.
func (c *chClient) post(ctx context.Context, path, ctype string, body []byte, out *bytes.Buffer) error {
	var err error
	for range c.nodes {
		i, n := c.current()
		if out != nil {
			out.Reset()
		}
		err = c.doType(ctx, n.base+path, ctype, body, out)
		if err == nil {
			return nil
		}
		c.failed(i, err)
		err = &NodeError{Node: n.label, Err: err}
		if !nodeFault(err) || ctx.Err() != nil {
			break
		}
	}
	return err
}

// handshakeFailed reports whether err is a TLS handshake (https) that
// failed or timed out: nothing of the request was sent on that connection.
// It was taken for an insert whose outcome is unknown, to be checked in the
// table before it went again.
func handshakeFailed(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var rh tls.RecordHeaderError
	var ae tls.AlertError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) ||
		errors.As(err, &rh) || errors.As(err, &ae) || strings.Contains(err.Error(), "TLS handshake timeout")
}

func (c *chClient) do(ctx context.Context, u string, body []byte, out *bytes.Buffer) error {
	return c.doType(ctx, u, "", body, out)
}

// doType posts body (of content type ctype when set) to u. It writes the
// answer into out, or discards it when out is nil.
func (c *chClient) doType(ctx context.Context, u, ctype string, body []byte, out *bytes.Buffer) error {
	return c.doBody(ctx, u, ctype, bytes.NewReader(body), out)
}

// doBody is doType with a body of unknown length (sent chunked).
func (c *chClient) doBody(ctx context.Context, u, ctype string, body io.Reader, out *bytes.Buffer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
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
		if errors.As(err, &op) && op.Op == "dial" || handshakeFailed(err) {
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
		if e := exceptionAtEnd(out.Bytes()); e != nil {
			return e // the query failed after its answer began: not its result
		}
		return nil
	}
	// An insert answers 200 with nothing; a body is an exception the
	// server sent after its status (a profile with
	// send_progress_in_http_headers): applied in part, perhaps.
	var answer bytes.Buffer
	_, err = answer.ReadFrom(io.LimitReader(resp.Body, 4096))
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	if err != nil {
		// The server said 200 but the answer broke off: for an insert
		// that is applied or not, nobody knows.
		return fmt.Errorf("%w: read answer: %w", errUnknownOutcome, err)
	}
	if e := exceptionAtEnd(answer.Bytes()); e != nil {
		return fmt.Errorf("%w: %w", errUnknownOutcome, e)
	}
	return nil
}

// exceptionAtEnd returns the exception a 200 answer ends with, nil when it
// ends without one: ClickHouse writes "Code: N, e.displayText() =
// DB::Exception: ..." (18.16; "Code: N. DB::Exception: ..." on current
// servers) as the answer's last line when the query fails after its status
// was sent. Only the last line is looked at: a stored body that quotes such
// a text is inside the answer, not its end.
func exceptionAtEnd(b []byte) *Exception {
	b = bytes.TrimRight(b, "\r\n ")
	line := b[bytes.LastIndexByte(b, '\n')+1:]
	if !bytes.HasPrefix(line, []byte("Code: ")) || !bytes.Contains(line, []byte("DB::Exception")) {
		return nil
	}
	e := newException(http.StatusOK, "", line)
	if e.Code == 0 {
		return nil
	}
	return e
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
