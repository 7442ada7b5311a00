package app

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
)

// TestStreamErrorPerAPI: an error the provider sends inside a 200 stream
// (Anthropic's event: error, an OpenAI-style data: {"error":...}, Gemini's
// SSE and JSON-array forms, OpenAI Responses' error event), written by a
// real upstream socket with the marker cut between two writes, gives the
// row error_type upstream_stream_error and status 200, on a fully
// captured route, a capture: meta one and one whose capture stops before
// the error; a stream whose content merely says "error" gives none.
func TestStreamErrorPerAPI(t *testing.T) {
	tests := []struct {
		name, path, stream string
		cut                int // where the error write is cut in two, from the marker's start
		wantErr            bool
	}{
		{"anthropic", "/v1/messages",
			"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n" +
				"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n" +
				"|event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n", 9, true},
		{"openai-chat", "/v1/chat/completions",
			"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n" +
				"|data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\"}}\n\n", 11, true},
		{"gemini-sse", "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
			"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hi\"}],\"role\": \"model\"}}]}\r\n\r\n" +
				"|data: {\"error\": {\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}}\r\n\r\n", 7, true},
		{"gemini-array", "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
			"[{\n  \"candidates\": [\n    {\n      \"content\": {\n        \"parts\": [\n          {\n            \"text\": \"Hi\"\n          }\n        ]\n      }\n    }\n  ]\n}\n" +
				"|,\r\n{\n  \"error\": {\n    \"code\": 500,\n    \"message\": \"Internal error\",\n    \"status\": \"INTERNAL\"\n  }\n}\n]", 8, true},
		{"responses", "/v1/responses",
			"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\",\"error\":null}}\n\n" +
				"|event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"x\",\"sequence_number\":2}\n\n", 3, true},
		// The error key after other keys (OpenRouter), over two data
		// lines, in a compact array: the marker cut anywhere.
		{"openrouter", "/v1/chat/completions",
			"data: {\"id\":\"gen-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"x\",\"provider\":\"p\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n" +
				"|data: {\"id\":\"gen-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"x\",\"provider\":\"p\",\"error\":{\"code\":502,\"message\":\"Provider disconnected\"},\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"error\"}]}\n\n", 95, true},
		{"multiline", "/v1/chat/completions",
			"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n" +
				"|data: {\"id\":\"c\",\ndata: \"error\":{\"message\":\"x\",\"type\":\"server_error\"}}\n\n", 26, true},
		{"gemini-array-compact", "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
			"[{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}],\"role\":\"model\"}}]}" +
				"|,{\"error\":{\"code\":500,\"message\":\"Internal error\",\"status\":\"INTERNAL\"}}]", 6, true},
		{"content-says-error", "/v1/messages",
			"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"error\"}}\n\n" +
				"|event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"\\nevent: error\\ndata: {\\\"error\\\":1}\"}}\n\n" +
				"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", 40, false},
	}
	srv := &replayServer{streams: map[string]replayed{}, sent: map[string][]time.Duration{}}
	for _, tt := range tests {
		before, errPart, _ := strings.Cut(tt.stream, "|")
		// Three writes: the content, then the error event cut inside its
		// marker (the relay reads each write apart).
		srv.streams[tt.name] = replayed{
			chunks: [][]byte{[]byte(before), []byte(errPart[:tt.cut]), []byte(errPart[tt.cut:])},
			atMS:   []int{0, 40, 80},
		}
	}
	r, url, db := replayRelay(t, srv, 64)

	all := sendReplayRoutes(t, len(tests), func(i int, prefix, replayID string) string {
		tt := tests[i]
		resp := r.post(t, prefix+tt.path, `{"model":"m","stream":true}`, map[string]string{"X-Replay": tt.name, "X-Replay-Id": replayID})
		body := readAll(t, resp)
		if resp.StatusCode != 200 || body != strings.Replace(tt.stream, "|", "", 1) {
			t.Errorf("%s%s: status %d, body %q", prefix, tt.path, resp.StatusCode, body)
		}
		return resp.Header.Get("X-Request-Id")
	})
	for _, s := range all {
		tt := tests[s.test]
		row := r.rows.wait(t, s.id)
		want := ""
		if tt.wantErr {
			want = record.ErrUpstreamStreamError
		}
		if row.ErrorType != want || row.Status != 200 {
			t.Errorf("%s %s: record status %d error_type %q, want 200 %q", s.route, tt.name, row.Status, row.ErrorType, want)
		}
	}

	// The stored rows, and the README's errors query.
	r.stop(t)
	got := servicetest.Query(t, url, db, "SELECT request_id, status, error_type FROM stream_logs")
	byID := map[string]map[string]any{}
	for _, row := range got {
		byID[row["request_id"].(string)] = row
	}
	wantErrors := 0
	for _, s := range all {
		tt := tests[s.test]
		row := byID[s.id]
		if row == nil {
			t.Errorf("%s %s: no stored row", s.route, tt.name)
			continue
		}
		want := ""
		if tt.wantErr {
			want = record.ErrUpstreamStreamError
			wantErrors++
		}
		if fmt.Sprint(row["status"]) != "200" || fmt.Sprint(row["error_type"]) != want {
			t.Errorf("%s %s: stored status %v error_type %q, want 200 %q", s.route, tt.name, row["status"], row["error_type"], want)
		}
	}
	n := servicetest.Query(t, url, db, "SELECT count() AS n FROM stream_logs WHERE error_type = 'upstream_stream_error'")
	if len(n) != 1 || fmt.Sprint(n[0]["n"]) != fmt.Sprint(wantErrors) {
		t.Errorf("rows with error_type upstream_stream_error: %v, want %d", n, wantErrors)
	}
}

// streamErrorTarget is an upstream that answers 200 with an SSE stream
// whose second event is Anthropic's overloaded_error, each event its own
// chunk, and ends the stream well.
func streamErrorTarget(t *testing.T) (string, *bodies) {
	t.Helper()
	got := &bodies{}
	url := rawTarget(t, func(c net.Conn, body []byte) {
		got.add(body)
		var b strings.Builder
		b.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		for _, e := range streamErrorEvents {
			fmt.Fprintf(&b, "%x\r\n%s\r\n", len(e), e)
		}
		b.WriteString("0\r\n\r\n")
		_, _ = io.WriteString(c, b.String())
	})
	return url, got
}

var streamErrorEvents = []string{
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n",
	"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
}

// TestStreamErrorCountsForHealth: a target whose 200 streams carry an
// error event counts one failure a stream for its passive health, however
// the success of its first body byte was counted: with max_fails 2 the
// first such stream leaves it in, the second ejects it
// (relay_upstream_ejections_total, relay_upstream_healthy), and the next
// request goes to the other target. The client gets each stream whole, and
// each row is typed upstream_stream_error with status 200. On the server's
// goroutine and detached alike.
func TestStreamErrorCountsForHealth(t *testing.T) {
	// max_attempts 1: the stream counts its target at the body's first
	// byte; 2: Open does, having waited for that byte (a failover could
	// follow), and the stream's end still has the last word.
	for _, tc := range []struct{ detach, attempts string }{{"0", "1"}, {"100000", "1"}, {"0", "2"}} {
		t.Run("detach_above "+tc.detach+" max_attempts "+tc.attempts, func(t *testing.T) {
			bad, badGot := streamErrorTarget(t)
			live, liveGot := liveTarget(t)
			p := cutPool(t, bad, live, "    failover: {max_attempts: "+tc.attempts+"}\n    health: {max_fails: 2, cooldown: 1m}", tc.detach)
			ejections := `relay_upstream_ejections_total{route="pool",target="cut"}`
			healthy := `relay_upstream_healthy{route="pool",target="cut"}`
			for i := 1; i <= 2; i++ {
				a := postClose(t, p.base, cutBody(100))
				if a.status != 200 || a.body != strings.Join(streamErrorEvents, "") {
					t.Fatalf("stream %d: status %d body %q", i, a.status, a.body)
				}
				rows := waitPoolRows(t, p, i)
				if r := rows[i-1]; r.Status != 200 || r.ErrorType != record.ErrUpstreamStreamError || !strings.HasSuffix(r.Upstream, "#cut") {
					t.Fatalf("stream %d: row %+v, want status 200, upstream_stream_error from cut", i, r)
				}
				ejected, up := " 0", " 1"
				if i == 2 {
					ejected, up = " 1", " 0"
				}
				// The row is written after the stream's health is settled.
				if m := p.metric(ejections); !strings.HasSuffix(m, ejected) {
					t.Fatalf("after %d error streams (max_fails 2): %q, want%s", i, m, ejected)
				}
				if m := p.metric(healthy); !strings.HasSuffix(m, up) {
					t.Fatalf("after %d error streams (max_fails 2): %q, want%s", i, m, up)
				}
			}
			a := postClose(t, p.base, cutBody(100))
			if a.status != 200 || a.body != liveStream() {
				t.Fatalf("after the ejection: status %d body %q: want the live target's stream", a.status, a.body)
			}
			if len(liveGot.all()) != 1 || len(badGot.all()) != 2 {
				t.Errorf("live got %d, the erring target %d requests: want 1 and 2", len(liveGot.all()), len(badGot.all()))
			}
		})
	}
}
