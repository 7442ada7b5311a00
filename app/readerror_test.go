package app

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestStoredReadsNoStreamError: a read of stored objects that tell of
// errors of their own (a Batch's error file, a fine-tuning job's "error")
// is no error inside a stream: its row keeps no error type, and its
// target's health no failure. Each such GET was typed
// upstream_stream_error and counted against the target (6 of them
// ejected a pool's two targets for a minute). A POST answered with an
// error object is still one; and "error":{} is no error.
func TestStoredReadsNoStreamError(t *testing.T) {
	const errLine = `{"id":"batch_req_9","custom_id":"r9","response":null,"error":{"code":"batch_expired","message":"expired"}}` + "\n"
	r := relayTo(t, "files", "/files-api", "", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch {
		case strings.HasSuffix(r.URL.Path, "/content"):
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write([]byte(errLine))
		case strings.HasSuffix(r.URL.Path, "/results"):
			w.Header().Set("Content-Type", "application/x-jsonl")
			_, _ = w.Write([]byte(`{"custom_id":"r1","result":{"type":"succeeded","message":{"content":[{"type":"text","text":"Hi"}],"usage":{"input_tokens":5,"output_tokens":2}}}}` + "\n"))
		case strings.Contains(r.URL.Path, "/fine_tuning/"):
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"object":"fine_tuning.job","id":"ftjob-abc","status":"succeeded","error":{}}`))
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"error":{"message":"overloaded","type":"server_error"}}`))
		}
	}, nil)
	do := func(method, path string) row {
		t.Helper()
		body := ""
		if method == "POST" {
			body = `{"model":"m"}`
		}
		return r.servedRow(t, method, path, body)
	}
	for range 4 {
		got := do("GET", "/files-api/v1/files/file-err/content")
		if got.ErrorType != "" {
			t.Fatalf("GET of a batch error file: error_type %q, want none", got.ErrorType)
		}
		// Nothing was generated: no first token (its "message" key made
		// one, a route's TTFT of 1 ms).
		if got.TTFT >= 0 {
			t.Fatalf("GET of a batch error file: TTFT %v, want none", got.TTFT)
		}
	}
	if got := do("GET", "/files-api/v1/messages/batches/msgbatch_1/results"); got.TTFT >= 0 {
		t.Fatalf("GET of a message batch's results: TTFT %v, want none (nothing was generated)", got.TTFT)
	}
	if got := do("GET", "/files-api/v1/fine_tuning/jobs/ftjob-abc"); got.ErrorType != "" {
		t.Fatalf("GET of a job with \"error\":{}: error_type %q, want none", got.ErrorType)
	}
	if got := do("POST", "/files-api/v1/chat/completions"); got.ErrorType != "upstream_stream_error" {
		t.Fatalf("POST answered 200 with an error object: error_type %q, want upstream_stream_error", got.ErrorType)
	}
}
