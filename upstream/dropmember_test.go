package upstream

import (
	"testing"

	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// TestDropMemberAttempts: an upstream's own "x-relay-attempts" member
// leaves a captured-headers object wherever it stands, and nothing else
// does (a value that merely mentions the name, escaped, stays).
func TestDropMemberAttempts(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`{}`, `{}`},
		{`{"x-relay-attempts":"a=200"}`, `{}`},
		{`{"x-relay-attempts":"a=200","b":"2"}`, `{"b":"2"}`},
		{`{"a":"1","x-relay-attempts":"a=200","b":"2"}`, `{"a":"1","b":"2"}`},
		{`{"a":"1","x-relay-attempts":"q \"x\" \\"}`, `{"a":"1"}`},
		{`{"a":"\"x-relay-attempts\":\"y\"","b":"2"}`, `{"a":"\"x-relay-attempts\":\"y\"","b":"2"}`},
		{`{"x-relay-attempts-2":"1"}`, `{"x-relay-attempts-2":"1"}`},
	} {
		if got := string(dropMember([]byte(tt.in), attemptsMember)); got != tt.want {
			t.Errorf("dropMember(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// TestCommitStoresRelayAttemptsOnce: commit leaves an upstream's own
// X-Relay-Attempts out of the row's headers, and appendAttempts then adds
// the relay's, once. It allocates nothing.
func TestCommitStoresRelayAttemptsOnce(t *testing.T) {
	var s Stream
	s.hdr.SetStatusCode(200)
	s.hdr.Set("X-Relay-Attempts", "forged=200")
	s.hdr.Set("X-Other", "1")
	var resp fasthttp.Response
	rec := &record.Record{}
	r := &Route{}
	tries := []attempt{{label: "a", errType: "upstream_connect"}, {label: "b", status: 200}}
	r.commit(&s, rec, &resp, 0)
	rec.ResponseHeaders = appendAttempts(rec.ResponseHeaders, tries, false)
	const want = `{"content-type":"text/plain; charset=utf-8","x-other":"1","x-relay-attempts":"a=upstream_connect b=200"}`
	if got := string(rec.ResponseHeaders); got != want {
		t.Fatalf("headers %s, want %s", got, want)
	}
	if n := testing.AllocsPerRun(100, func() {
		resp.Reset()
		r.commit(&s, rec, &resp, 0)
	}); n != 0 {
		t.Errorf("commit allocates %v times with an upstream X-Relay-Attempts", n)
	}
}

// TestCutAttempts: the record of attempts survives the relay's own answer
// to a last target cut before its body, its last status replaced, whatever
// the target names hold (a quote is escaped in the JSON).
func TestCutAttempts(t *testing.T) {
	tries := []attempt{{label: "dead", errType: "upstream_connect"}, {label: `cut "eu"=1`, status: 200}}
	hdr := appendAttempts([]byte(`{"content-type":"text/event-stream"}`), tries, false)
	m := cutAttempts(hdr, "upstream_reset")
	got := string(appendMember([]byte(`{"x-request-id":"1"}`), m))
	want := `{"x-request-id":"1","x-relay-attempts":"dead=upstream_connect cut \"eu\"=1=upstream_reset"}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if m := cutAttempts([]byte(`{"a":"b"}`), "upstream_reset"); m != nil {
		t.Fatalf("one attempt: %s, want none", m)
	}
}
