package chlog

import (
	"context"
	"net/url"
	"testing"
	"time"
)

// TestDedupTokenURL: where the server has insert_deduplication_token, each
// insert URL carries the block's token; elsewhere (18.16) it never does, as
// 18.16 refuses unknown settings. The newer path is tested on the URL it
// builds only: the test server is 18.16.
func TestDedupTokenURL(t *testing.T) {
	c := newClient(&Options{URL: "http://127.0.0.1:8123/", Database: "relay", Table: "stream_logs"})
	m := blockMeta{seq: 42, first: newID(1)}
	for _, on := range []bool{false, true} {
		c.dedupToken.Store(on)
		u, err := url.Parse(c.insertURLFor(queryID(m), queryID(m)))
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		if got := q.Get("query"); got != "INSERT INTO relay.stream_logs FORMAT Native" {
			t.Errorf("query %q", got)
		}
		if got := q.Get("query_id"); got != queryID(m) {
			t.Errorf("query_id %q; want %q", got, queryID(m))
		}
		got, has := q.Get("insert_deduplication_token"), q.Has("insert_deduplication_token")
		if has != on || on && got != queryID(m) {
			t.Errorf("token on=%v: insert_deduplication_token %q (present %v)", on, got, has)
		}
	}
}

// TestServerDedupVersions: the version gate, and on the real server (18.16)
// that the relay leaves the token off and inserts still work.
func TestServerDedupVersions(t *testing.T) {
	tests := []struct {
		give string
		want bool
	}{
		{"18.16.1", false},
		{"21.8.15.7", false},
		{"22.1.3.7", false},
		{"22.2.2.1", true},
		{"24.8.1", true},
	}
	for _, tt := range tests {
		if got := parseVersion(tt.give).atLeast(dedupSince.major, dedupSince.minor); got != tt.want {
			t.Errorf("%s: token %v; want %v", tt.give, got, tt.want)
		}
	}

	chURL, db := testDB(t)
	w := newWriter(t, Options{URL: chURL, Database: db, FlushInterval: time.Hour})
	defer closeWriter(t, w)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	vs, err := w.ch.query(ctx, "SELECT version()")
	if err != nil {
		t.Fatal(err)
	}
	v := parseVersion(vs)
	w.enableServerDedup(ctx, v)
	if v.atLeast(dedupSince.major, dedupSince.minor) {
		t.Skipf("server %s has insert_deduplication_token; this test is for older servers", v)
	}
	if w.ch.dedupToken.Load() {
		t.Fatalf("token on for server %s", v)
	}
	native, m := encodeGroups(t, 7, roundTripRecords())
	if unknown, err := w.deliver(ctx, m, native, false, 0); err != nil || unknown {
		t.Fatalf("deliver on %s: unknown %v, err %v", v, unknown, err)
	}
	if n := mustQuery(t, chURL, db, "SELECT count() FROM stream_logs"); n != "4" {
		t.Fatalf("%s rows; want 4", n)
	}
}
