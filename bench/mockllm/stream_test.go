package mockllm_test

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
)

func TestDelayPacesChunks(t *testing.T) {
	_, base, c := start(t, mockllm.Options{})
	const delay = 150 * time.Millisecond
	resp := post(t, c, base+"/v1/chat/completions", `{"stream":true}`,
		mockllm.HeaderChunks, "3", mockllm.HeaderDelayMs, "150")
	f := feed(t, resp.Body)
	var at []time.Time
	for i := 0; i < 1+3; i++ { // role frame and three chunks
		ev, ok := f.next(5 * time.Second)
		if !ok {
			t.Fatalf("event %d did not arrive", i)
		}
		at = append(at, ev.at)
	}
	// Each chunk arrives on its own, a delay after the previous one: the
	// server flushed it before sleeping.
	for i := 2; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap < delay/2 {
			t.Errorf("chunk %d arrived %v after chunk %d, want about %v", i-1, gap, i-2, delay)
		}
	}
}

func TestStall(t *testing.T) {
	tests := []struct {
		name       string
		path, body string
		after      string
		wantEvents int
	}{
		{name: "chat after 2", path: "/v1/chat/completions", body: `{"stream":true}`, after: "2", wantEvents: 1 + 2},
		{name: "chat after 0", path: "/v1/chat/completions", body: `{"stream":true}`, after: "0", wantEvents: 0},
		{name: "messages after 1", path: "/v1/messages", body: `{"stream":true}`, after: "1", wantEvents: 3 + 1},
		{name: "chat after last", path: "/v1/chat/completions", body: `{"stream":true}`, after: "4", wantEvents: 1 + 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, base, c := start(t, mockllm.Options{})
			resp := post(t, c, base+tt.path, tt.body, mockllm.HeaderChunks, "4", mockllm.HeaderStallAfter, tt.after)
			f := feed(t, resp.Body)
			for i := 0; i < tt.wantEvents; i++ {
				if _, ok := f.next(5 * time.Second); !ok {
					t.Fatalf("event %d did not arrive", i)
				}
			}
			if ev, ok := f.next(200 * time.Millisecond); ok {
				t.Fatalf("got event %q after the stall point", ev.name+ev.data)
			}
			if srv.Open() != 1 || srv.Closed() != 0 {
				t.Errorf("during stall Open() = %d, Closed() = %d; want 1, 0", srv.Open(), srv.Closed())
			}
			_ = resp.Body.Close()
			eventually(t, "Closed() == 1", func() bool { return srv.Closed() == 1 })
			eventually(t, "Open() == 0", func() bool { return srv.Open() == 0 })
		})
	}
}

func TestStallTimeoutBreaksStream(t *testing.T) {
	srv, base, c := start(t, mockllm.Options{StallTimeout: 100 * time.Millisecond})
	resp := post(t, c, base+"/v1/audio/speech", `{}`, mockllm.HeaderChunks, "4", mockllm.HeaderStallAfter, "2")
	got, err := io.ReadAll(resp.Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("read error = %v, want unexpected EOF: the stream must not end cleanly", err)
	}
	if want := mockllm.AudioBytes(2, mockllm.DefaultChunkBytes); !bytes.Equal(got, want) {
		t.Errorf("got %d bytes, want the first 2 chunks (%d bytes)", len(got), len(want))
	}
	if srv.Closed() != 0 {
		t.Errorf("Closed() = %d, want 0: the server gave up, not the client", srv.Closed())
	}
}

func TestReset(t *testing.T) {
	tests := []struct {
		name, path, body string
		after            string
		want             func(got []byte) bool // nil: no response at all
	}{
		{
			name: "chat", path: "/v1/chat/completions", body: `{"stream":true}`, after: "3",
			want: func(got []byte) bool {
				return bytes.Contains(got, []byte(`"tok2 "`)) && !bytes.Contains(got, []byte(`"tok3 "`))
			},
		},
		{
			name: "audio", path: "/v1/audio/speech", body: `{}`, after: "2",
			want: func(got []byte) bool { return bytes.Equal(got, mockllm.AudioBytes(2, 100)) },
		},
		{name: "whole", path: "/v1/messages", body: `{}`, after: "5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, base, c := start(t, mockllm.Options{})
			resp, err := tryPost(c, base+tt.path, tt.body,
				mockllm.HeaderResetAfter, tt.after, mockllm.HeaderChunks, "6", mockllm.HeaderChunkBytes, "100")
			if tt.want == nil {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("got a response, want the connection reset")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err == nil {
				t.Fatalf("read %d bytes and a clean end, want a reset", len(got))
			}
			if !tt.want(got) {
				t.Errorf("got %d bytes before the reset (%v): %.200q", len(got), err, got)
			}
			if srv.Closed() != 0 {
				t.Errorf("Closed() = %d, want 0", srv.Closed())
			}
		})
	}
}

func TestClientLeavesMidStream(t *testing.T) {
	srv, base, c := start(t, mockllm.Options{})
	resp := post(t, c, base+"/v1/messages", `{"stream":true}`,
		mockllm.HeaderChunks, "1000", mockllm.HeaderDelayMs, "20")
	f := feed(t, resp.Body)
	for i := 0; i < 5; i++ {
		if _, ok := f.next(5 * time.Second); !ok {
			t.Fatalf("event %d did not arrive", i)
		}
	}
	_ = resp.Body.Close()
	eventually(t, "Closed() == 1", func() bool { return srv.Closed() == 1 })
	eventually(t, "Open() == 0", func() bool { return srv.Open() == 0 })
}
