package chlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"
)

// spoolTestBlock encodes n fresh rows (ids numbered from base) as one raw
// Native block; extra columns, when given, are appended to the block.
func spoolTestBlock(t testing.TB, seq uint64, base, n int, extra ...proto.InputColumn) (blockMeta, []byte) {
	t.Helper()
	b := newBlock()
	for i := range n {
		b.add(sseRecord(base+i, 3))
	}
	b.input = append(b.input, extra...)
	var buf proto.Buffer
	if err := b.encode(&buf); err != nil {
		t.Fatal(err)
	}
	return blockMeta{seq: seq, rows: b.rows, first: b.first, last: b.last}, append([]byte(nil), buf.Buf...)
}

// refusedTestBlock is spoolTestBlock with an extra Bool column: ch-go
// encodes it, ClickHouse 18.16 refuses the block ("Unknown data type
// family: Bool"). Tests that need the refusal call skipUnlessBoolUnknown.
func refusedTestBlock(t testing.TB, seq uint64, base, n int) (blockMeta, []byte) {
	t.Helper()
	flag := new(proto.ColBool)
	for range n {
		flag.Append(true)
	}
	return spoolTestBlock(t, seq, base, n, proto.InputColumn{Name: "flag", Data: flag})
}

// skipUnlessBoolUnknown skips t on a server that knows the Bool type (after
// 18.16), where refusedTestBlock is inserted like any other.
func skipUnlessBoolUnknown(t testing.TB, chURL string) {
	t.Helper()
	if v := mustQuery(t, chURL, "", "SELECT version()"); !strings.HasPrefix(v, "18.") {
		t.Skipf("server %s knows the Bool type", v)
	}
}

// TestClassifyServerErrors provokes each failure against the real server
// and checks the class the replayer gives it; the codes in classify.go's
// list marked "seen" are these.
func TestClassifyServerErrors(t *testing.T) {
	chURL, db := testDB(t)
	w := newWriter(t, Options{URL: chURL, Database: db, FlushInterval: time.Hour, Retries: -1})
	defer closeWriter(t, w)
	m, good := spoolTestBlock(t, 1, 0, 5)
	send := func(body []byte) error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		m.seq++ // a fresh query_id per attempt
		_, err := w.deliver(ctx, m, body, false, 0)
		return err
	}
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	_, withBool := refusedTestBlock(t, 1, 100, 5)
	serverVersion := mustQuery(t, chURL, "", "SELECT version()")

	tests := []struct {
		name  string
		setup string // SQL run first
		body  []byte
		want  failClass
		code  int // 0: any (the code may differ on other server versions)
	}{
		{name: "random bytes", body: []byte("\x8f\x12 random bytes, no Native block at all \xff\xfe\x00\x01"), want: failReject, code: 33},
		{name: "cut in half", body: good[:len(good)/2], want: failReject, code: 33},
		{name: "cut in the header", body: good[:3], want: failReject, code: 33},
		{name: "column count too large", body: mutate(func(b []byte) []byte { b[0] = 40; return b }), want: failReject, code: 32},
		// 33, or 62 when the bytes read as the next column's header happen
		// to parse as a bad type name: it depends on the block's data.
		{name: "row count too large", body: mutate(func(b []byte) []byte { b[1] = 100; return b }), want: failReject},
		{name: "unknown type name", body: mutate(func(b []byte) []byte {
			i := bytes.Index(b, []byte("\x06String"))
			copy(b[i+1:], "Strong")
			return b
		}), want: failReject, code: 50},
		{name: "column type unknown to the server", body: withBool, want: failReject},
		{name: "column type changed under the relay", setup: "ALTER TABLE stream_logs MODIFY COLUMN instance UInt32", body: good, want: failSchema},
		{name: "nullable column made plain", setup: "ALTER TABLE stream_logs MODIFY COLUMN instance String; ALTER TABLE stream_logs MODIFY COLUMN ttfb_ms UInt32",
			body: good, want: failSchema},
		{name: "table missing", setup: "DROP TABLE stream_logs", body: good, want: failTransient, code: 60},
		{name: "database missing", setup: "DROP DATABASE " + db, body: good, want: failTransient, code: 81},
	}
	for _, tt := range tests {
		for _, sql := range strings.Split(tt.setup, "; ") {
			if sql != "" {
				mustQuery(t, chURL, db, sql)
			}
		}
		err := send(tt.body)
		if err == nil {
			if strings.HasPrefix(serverVersion, "18.") || tt.name != "column type unknown to the server" {
				t.Errorf("%s: inserted; want an error", tt.name)
			}
			continue
		}
		e, _ := AsException(err)
		if got := classify(err); got != tt.want || (tt.code != 0 && strings.HasPrefix(serverVersion, "18.") && (e == nil || e.Code != tt.code)) {
			t.Errorf("%s: class %v, err %v; want %v (code %d)", tt.name, got, err, tt.want, tt.code)
		}
		t.Logf("%-36s %-9v %v", tt.name, classify(err), err)
	}

	// The server takes an empty body as an insert of nothing: only the
	// replayer's own check (verifySpool) keeps an empty spool file from
	// being "inserted" and deleted.
	mustQuery(t, chURL, "", "CREATE DATABASE "+db)
	w2 := newWriter(t, Options{URL: chURL, Database: db, FlushInterval: time.Hour, Retries: -1})
	defer closeWriter(t, w2)
	if _, err := w2.deliver(context.Background(), m, nil, false, 0); err != nil {
		t.Logf("empty body: %v", err)
	}
	if _, _, err := verifySpool(nil, spoolFile{rows: 5}); err == nil {
		t.Error("verifySpool accepts an empty file")
	}

	// Nobody listening: transient.
	w3 := newWriter(t, Options{URL: closedPortURL(t), Database: db, FlushInterval: time.Hour, Retries: -1})
	defer closeWriter(t, w3)
	if _, err := w3.deliver(context.Background(), m, good, false, 0); err == nil || classify(err) != failTransient {
		t.Errorf("closed port: %v, class %v; want a transient error", err, classify(err))
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		give error
		want failClass
	}{
		{"unknown outcome", fmt.Errorf("%w: read answer: EOF", errUnknownOutcome), failTransient},
		{"deadline", context.DeadlineExceeded, failTransient},
		{"local", errors.New("compress: short buffer"), failTransient},
		{"proxy 502 without code", &Exception{Status: 502, Message: "Bad Gateway"}, failTransient},
		{"proxy 404 without code", &Exception{Status: 404, Message: "not found"}, failTransient},
		{"too many parts", &Exception{Status: 500, Code: 252}, failTransient},
		{"memory limit", &Exception{Status: 500, Code: 241}, failTransient},
		{"memory limit, a query's allocations", &Exception{Status: 500, Code: 241, Message: "Code: 241, e.displayText() = DB::Exception: Memory limit (for query) exceeded: would use 9.32 GiB (attempt to allocate chunk of 4194304 bytes), maximum: 9.31 GiB, e.what() = DB::Exception"}, failTransient},
		{"memory limit, one allocation beyond it (18.16)", &Exception{Status: 500, Code: 241, Message: "Code: 241, e.displayText() = DB::Exception: Memory limit (for query) exceeded: would use 512.00 TiB (attempt to allocate chunk of 562949953421312 bytes), maximum: 9.31 GiB, e.what() = DB::Exception"}, failReject},
		{"memory limit, one allocation beyond it (current servers)", &Exception{Status: 500, Code: 241, Message: "Memory limit (for query) exceeded: would use 16.00 GiB (attempt to allocate chunk of 17179869184 bytes), maximum: 9.31 GiB.: While executing Native. (MEMORY_LIMIT_EXCEEDED)"}, failReject},
		{"memory limit, a large allocation within it", &Exception{Status: 500, Code: 241, Message: "Memory limit (total) exceeded: would use 9.40 GiB (attempt to allocate chunk of 1073741824 bytes), maximum: 9.31 GiB"}, failTransient},
		{"timeout exceeded", &Exception{Status: 500, Code: 159}, failTransient},
		{"read after eof, the block's own bytes", &Exception{Status: 500, Code: 32, Message: "Code: 32, e.displayText() = DB::Exception: Attempt to read after eof, e.what() = DB::Exception"}, failReject},
		// A shard's replica that died during a Distributed insert: the
		// block is fine, and other shards may have stored theirs.
		{"read after eof from another server", &Exception{Status: 500, Code: 32, Message: "Code: 32, e.displayText() = DB::Exception: Attempt to read after eof: while receiving packet from ch-2:9000, 127.0.0.1, e.what() = DB::Exception"}, failTransient},
		{"cannot read all data from another server", &Exception{Status: 500, Code: 33, Message: "Cannot read all data. Bytes read: 3. Bytes expected: 8.: while receiving packet from ch-3:9000. (CANNOT_READ_ALL_DATA)"}, failTransient},
		{"too many simultaneous queries", &Exception{Status: 500, Code: 202}, failTransient},
		{"readonly", &Exception{Status: 500, Code: 164}, failTransient},
		{"wrong password", &Exception{Status: 401, Code: 193}, failTransient},
		{"unknown table", &Exception{Status: 404, Code: 60}, failTransient},
		{"cannot read all data", &Exception{Status: 500, Code: 33}, failReject},
		{"checksum", &Exception{Status: 500, Code: 40}, failReject},
		{"cannot decompress", &Exception{Status: 500, Code: 271}, failReject},
		{"wrong magic", &Exception{Status: 500, Code: 89}, failReject},
		{"incorrect data", &Exception{Status: 500, Code: 117}, failReject},
		{"no such column", &Exception{Status: 500, Code: 16}, failSchema},
		{"type mismatch", &Exception{Status: 500, Code: 53}, failSchema},
		{"bad cast (18.16)", &Exception{Status: 500, Code: 368}, failSchema},
		{"a code in no list", &Exception{Status: 500, Code: 99999}, failSchema},
		{"wrapped", fmt.Errorf("chlog: insert: %w", &Exception{Status: 500, Code: 33}), failReject},
	}
	for _, tt := range tests {
		if got := classify(tt.give); got != tt.want {
			t.Errorf("%s: %v; want %v", tt.name, got, tt.want)
		}
	}
	for code := range rejectCodes {
		if schemaCodes[code] || transientCodes[code] {
			t.Errorf("code %d is in two lists", code)
		}
	}
	for code := range schemaCodes {
		if transientCodes[code] {
			t.Errorf("code %d is in two lists", code)
		}
	}
}

func TestColumnInMessage(t *testing.T) {
	tests := []struct{ give, want string }{
		{"Code: 16. DB::Exception: No such column instance in table relay.stream_logs", "instance"},
		{"Code: 8. DB::Exception: There's no column 'user_agent' in table 'stream_logs'", "user_agent"},
		{"Code: 53. DB::Exception: Type mismatch for column ttfb_ms. Column has type Nullable(UInt32)", "ttfb_ms"},
		{"Code: 10. DB::Exception: Not found column `status` in block", "status"},
		{"Code: 368, e.displayText() = DB::Exception: Bad cast from type DB::ColumnString to DB::ColumnVector<unsigned int>", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := columnInMessage(tt.give); got != tt.want {
			t.Errorf("columnInMessage(%q) = %q; want %q", tt.give, got, tt.want)
		}
	}
}

// TestRefusalReasonOfMemoryLimit: a block refused for one allocation beyond
// the memory limit is rejected with a reason that tells the operator how
// to send it again when the limit, not the bytes, was the cause (it said
// the block could never be inserted); other refusals keep the server's
// text alone.
func TestRefusalReasonOfMemoryLimit(t *testing.T) {
	mem := &Exception{Status: 500, Code: 241, Message: "Memory limit (for user) exceeded: would use 10.50 MiB (attempt to allocate chunk of 8388576 bytes), maximum: 3.81 MiB"}
	if got := refusalReason(mem); !strings.Contains(got, "max_memory_usage") || !strings.Contains(got, "relay spool replay -rejected") || !strings.Contains(got, "8388576") {
		t.Errorf("reason %q: want the remedy and the server's text", got)
	}
	broken := &Exception{Status: 500, Code: 33, Message: "Cannot read all data"}
	if got := refusalReason(broken); got != "ClickHouse refused the block: "+broken.Error() {
		t.Errorf("reason %q", got)
	}
}
