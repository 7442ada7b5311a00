package handlers

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/stream-relay/stream-relay/record"
)

// TestSinkErrorsFirstLogged: the first failed sink write of the process is
// logged (with the monotonic clock near 0 at start, the rate limit took it
// for one within the interval and only counted it); the next ones within
// the interval are not, and the line after it says how many it stood for.
func TestSinkErrorsFirstLogged(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	var e sinkErrors
	rec := &record.Record{}
	e.log(l, rec, errors.New("fsync failed"))
	if !strings.Contains(buf.String(), "storage did not keep") {
		t.Fatalf("first failure not logged: %q", buf.String())
	}
	buf.Reset()
	e.log(l, rec, errors.New("fsync failed"))
	if buf.Len() != 0 {
		t.Fatalf("a second line within %v: %q", sinkErrEvery, buf.String())
	}
}
