package servicetest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// Query runs sql on the ClickHouse server at baseURL (HTTP interface) in
// database db and returns the rows, decoded from JSONEachRow. sql must not
// carry a FORMAT clause.
func Query(tb testing.TB, baseURL, db, sql string) []map[string]any {
	tb.Helper()
	rows, err := TryQuery(baseURL, db, sql)
	if err != nil {
		tb.Fatalf("clickhouse: %v\nquery: %s", err, sql)
	}
	return rows
}

// TryQuery is Query returning its error.
func TryQuery(baseURL, db, sql string) ([]map[string]any, error) {
	q := url.Values{"query": {sql + " FORMAT JSONEachRow"}}
	if db != "" {
		q.Set("database", db)
	}
	c := http.Client{Transport: Transport, Timeout: 30 * time.Second}
	resp, err := c.Post(baseURL+"/?"+q.Encode(), "text/plain", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &queryError{status: resp.StatusCode, body: string(body)}
	}
	var rows []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	for sc.Scan() {
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			return nil, err
		}
		rows = append(rows, m)
	}
	return rows, sc.Err()
}

// Exec runs a statement that returns no rows (CREATE, DROP, ...).
func Exec(tb testing.TB, baseURL, sql string) {
	tb.Helper()
	c := http.Client{Transport: Transport, Timeout: 30 * time.Second}
	resp, err := c.Post(baseURL+"/?"+url.Values{"query": {sql}}.Encode(), "text/plain", nil)
	if err != nil {
		tb.Fatalf("clickhouse: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		tb.Fatalf("clickhouse: %s: %s", sql, b)
	}
}

type queryError struct {
	status int
	body   string
}

func (e *queryError) Error() string { return "status " + http.StatusText(e.status) + ": " + e.body }
