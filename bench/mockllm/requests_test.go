package mockllm_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/stream-relay/stream-relay/bench/mockllm"
)

func TestRequests(t *testing.T) {
	srv, base, c := start(t, mockllm.Options{})
	post(t, c, base+"/v1/chat/completions?a=1", `{"model":"m"}`, "X-Trace", "t1")
	post(t, c, base+"/v1/messages", `{}`, mockllm.HeaderStatus, "503")
	if resp, err := c.Get(base + "/healthz"); err == nil {
		_ = resp.Body.Close()
	}

	got := srv.Requests()
	if len(got) != 2 || srv.Count() != 2 {
		t.Fatalf("Requests() has %d, Count() = %d, want 2 (healthz not recorded)", len(got), srv.Count())
	}
	r := got[0]
	if r.Seq != 1 || r.Method != http.MethodPost || r.Path != "/v1/chat/completions?a=1" ||
		r.Header.Get("X-Trace") != "t1" || string(r.Body) != `{"model":"m"}` {
		t.Errorf("request 1 = %+v body %q", r, r.Body)
	}
	if got[1].Seq != 2 || got[1].Path != "/v1/messages" {
		t.Errorf("request 2 = %+v", got[1])
	}

	// Copies: changing them leaves the server's record alone.
	r.Body[0] = 'X'
	r.Header.Set("X-Trace", "changed")
	again := srv.Requests()[0]
	if again.Body[0] != '{' || again.Header.Get("X-Trace") != "t1" {
		t.Errorf("Requests() returned shared memory")
	}

	resp, err := c.Get(base + "/mock/requests")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var view struct {
		Count    int64 `json:"count"`
		Requests []struct {
			Seq  int64  `json:"seq"`
			Path string `json:"path"`
			Body string `json:"body"`
		} `json:"requests"`
	}
	if err := json.Unmarshal(raw, &view); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	if view.Count != 2 || len(view.Requests) != 2 || view.Requests[0].Body != `{"model":"m"}` {
		t.Errorf("/mock/requests = %s", raw)
	}
}

func TestRequestsRing(t *testing.T) {
	srv, base, c := start(t, mockllm.Options{})
	const n = mockllm.RingSize + 6
	for i := 1; i <= n; i++ {
		post(t, c, base+"/nowhere/"+strconv.Itoa(i), ``)
	}
	got := srv.Requests()
	if len(got) != mockllm.RingSize || srv.Count() != n {
		t.Fatalf("kept %d, Count() = %d", len(got), srv.Count())
	}
	for i, r := range got {
		seq := int64(n - mockllm.RingSize + 1 + i)
		if r.Seq != seq || r.Path != "/nowhere/"+strconv.FormatInt(seq, 10) {
			t.Fatalf("entry %d = seq %d path %s, want seq %d", i, r.Seq, r.Path, seq)
		}
	}
}

func TestNotFound(t *testing.T) {
	_, base, c := start(t, mockllm.Options{RequireKey: "k"})
	tests := []struct{ method, path string }{
		{http.MethodGet, "/v1/chat/completions"},
		{http.MethodPost, "/v1/completions"},
		{http.MethodPost, "/"},
		{http.MethodPut, "/mock/requests"},
	}
	for _, tt := range tests {
		t.Run(tt.method+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, base+tt.path, nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if e := readError(t, resp, http.StatusNotFound); e.Error.Type != "not_found" {
				t.Errorf("error type = %q", e.Error.Type)
			}
		})
	}
}
