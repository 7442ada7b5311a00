package chlog

import (
	"strings"
	"testing"
	"time"
)

// TestDroppedColumnAddedBack: a column the relay writes, dropped while it
// runs, is noticed by the replayer's look at the table, added back, and
// the rows after that have it whole. ClickHouse 18.16 took the blocks
// without the column and dropped its values, rows counted as written,
// until the next start.
func TestDroppedColumnAddedBack(t *testing.T) {
	defer func(d time.Duration) { columnWatchEvery = d }(columnWatchEvery)
	columnWatchEvery = 100 * time.Millisecond
	chURL, db := testDB(t)
	w := newWriter(t, Options{URL: chURL, Database: db, FlushInterval: 50 * time.Millisecond})
	defer closeWriter(t, w)
	writeFrom(t, w, 0, 2)
	waitFor(t, "the first rows in", 30*time.Second, func() bool { return tableRows(chURL, db) == 2 })
	if _, err := chQuery(chURL, db, "ALTER TABLE stream_logs DROP COLUMN user_agent"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the dropped column added back", 30*time.Second, func() bool {
		s, err := chQuery(chURL, db, "SELECT count() FROM system.columns WHERE database = '"+db+"' AND table = 'stream_logs' AND name = 'user_agent'")
		return err == nil && strings.TrimSpace(s) == "1"
	})
	writeFrom(t, w, 2, 2)
	waitFor(t, "the later rows in", 30*time.Second, func() bool { return tableRows(chURL, db) == 4 })
	got, err := chQuery(chURL, db, "SELECT countIf(user_agent = 'curl/8.5') FROM stream_logs")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(got) != "2" {
		t.Errorf("%s rows with their user_agent, want the 2 written after the column came back", strings.TrimSpace(got))
	}
}
