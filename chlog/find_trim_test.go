package chlog

import (
	"errors"
	"strings"
	"testing"
)

// TestFindErrorTrimmed: a failed Distributed read's exception (code 279,
// one line per connection try) is reported as its first line, without
// ClickHouse's "Code: N, e.displayText() = " and ", e.what() = ..."
// wrapping; the whole exception stays reachable with AsException.
func TestFindErrorTrimmed(t *testing.T) {
	msg := "Code: 279, e.displayText() = DB::NetException: All connection tries failed. Log: \n\n" +
		strings.Repeat("Code: 210, e.displayText() = DB::NetException: Connection refused (127.0.0.1:9002), e.what() = DB::NetException\n", 20) +
		"\n, e.what() = DB::NetException"
	var err error = &findError{newException(500, "279", []byte(msg))}
	if got, want := err.Error(), "clickhouse: http 500: code 279: DB::NetException: All connection tries failed."; got != want {
		t.Errorf("error %q, want %q", got, want)
	}
	if e, ok := AsException(err); !ok || e.Code != 279 || !strings.Contains(e.Message, "(127.0.0.1:9002)") {
		t.Errorf("AsException: %+v, %v", e, ok)
	}
	one := &findError{newException(404, "", []byte("Code: 60, e.displayText() = DB::Exception: Table db.t doesn't exist., e.what() = DB::Exception\n"))}
	if got, want := one.Error(), "clickhouse: http 404: code 60: DB::Exception: Table db.t doesn't exist."; got != want {
		t.Errorf("error %q, want %q", got, want)
	}
	long := &findError{newException(500, "1", []byte(strings.Repeat("x", 5000)))}
	if n := len(long.Error()); n > 400 {
		t.Errorf("%d bytes: %s", n, long.Error())
	}
	nf := &NotFoundError{ID: "x", Unanswered: []string{"shard 2 (h:1, h:2)"}}
	if !errors.Is(nf, ErrIncomplete) || errors.Is(nf, ErrNotFound) || !strings.Contains(nf.Error(), "x not found on the shards that answered; shard 2 (h:1, h:2) did not answer") {
		t.Errorf("incomplete: %v", nf)
	}
	if nf := (&NotFoundError{ID: "x"}); !errors.Is(nf, ErrNotFound) || errors.Is(nf, ErrIncomplete) || nf.UnansweredText() != "" {
		t.Errorf("clean miss: %v", nf)
	}
}
