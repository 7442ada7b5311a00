package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
)

// TestRoundTripMock reads real streams from the mock upstream, twice on
// one keep-alive connection.
func TestRoundTripMock(t *testing.T) {
	srv, base, err := mockllm.Listen("127.0.0.1:0", mockllm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	tests := []struct {
		name       string
		path       string
		chunks     int
		chunkBytes int
		headers    []string
		wantStatus int
		wantEvents int
		wantBytes  int64 // 0: not checked
	}{
		// role frame, the chunks, the finish frame, [DONE]
		{name: "chat", path: "/v1/chat/completions", chunks: 5, wantStatus: 200, wantEvents: 5 + 3},
		// message_start, content_block_start, ping, chunks, block stop, message_delta, message_stop
		{name: "messages", path: "/v1/messages", chunks: 3, wantStatus: 200, wantEvents: 3 + 6},
		{name: "audio", path: "/v1/audio/speech", chunks: 4, chunkBytes: 1000, wantStatus: 200, wantBytes: 4000},
		{name: "error status", path: "/v1/chat/completions", chunks: 5, headers: []string{"X-Mock-Status: 503"}, wantStatus: 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &Options{URL: base + tt.path, Chunks: tt.chunks, ChunkBytes: tt.chunkBytes, Headers: tt.headers,
				Conns: 1, Duration: time.Second, Timeout: 5 * time.Second, BufBytes: 4096, Sample: time.Second}
			if err := o.validate(); err != nil {
				t.Fatal(err)
			}
			req := buildRequest(o)
			nc, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			c := newConn(nc, o.BufBytes, o.Mode == "sse")
			defer nc.Close()
			for i := range 2 {
				tm, err := c.roundTrip(req, mono(), o.Timeout)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if tm.status != tt.wantStatus || !c.keepOpen {
					t.Fatalf("request %d: status %d, keep-alive %v", i, tm.status, c.keepOpen)
				}
				if tt.wantEvents > 0 && (tm.events != tt.wantEvents || len(c.gaps) != tt.wantEvents-1) {
					t.Errorf("request %d: %d events, %d gaps; want %d events", i, tm.events, len(c.gaps), tt.wantEvents)
				}
				if tt.wantBytes > 0 && tm.bytes != tt.wantBytes {
					t.Errorf("request %d: %d bytes, want %d", i, tm.bytes, tt.wantBytes)
				}
				if tm.ttfb < 0 || tm.total < tm.ttfb || (tt.wantStatus == 200 && tm.firstEvent < tm.ttfb) {
					t.Errorf("request %d: ttfb %d, first event %d, total %d", i, tm.ttfb, tm.firstEvent, tm.total)
				}
			}
		})
	}
}

// TestRoundTripSplit feeds responses one byte per read, so every boundary
// (status line, headers, chunk sizes, an event's blank line) falls between
// reads.
func TestRoundTripSplit(t *testing.T) {
	tests := []struct {
		name       string
		sse        bool
		resp       string
		wantEvents int // sse only; raw counts one event per read
		wantBytes  int64
		wantKeep   bool
	}{
		{
			name: "chunked sse, event split across chunks",
			sse:  true,
			resp: "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"8\r\ndata: a\n\r\n" + "1;ext=1\r\n\n\r\n" + "11\r\ndata: b\n\ndata: c\n\r\n" + "1\r\n\n\r\n" +
				"0\r\nX-Trailer: 1\r\n\r\n",
			wantEvents: 3, wantBytes: 8 + 1 + 17 + 1, wantKeep: true,
		},
		{
			name:       "content length",
			sse:        true,
			resp:       "HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\ndata: {}\n\nxx",
			wantEvents: 1, wantBytes: 12, wantKeep: true,
		},
		{
			name:      "connection close",
			resp:      "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc",
			wantBytes: 3, wantKeep: false,
		},
		{
			name:      "until EOF",
			resp:      "HTTP/1.1 200 OK\r\n\r\nabcdef",
			wantBytes: 6, wantKeep: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl, sv := net.Pipe()
			defer cl.Close()
			go func() {
				defer sv.Close()
				req, err := http.ReadRequest(bufio.NewReader(sv))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				for i := 0; i < len(tt.resp); i++ {
					if _, err := sv.Write([]byte{tt.resp[i]}); err != nil {
						return
					}
				}
			}()
			c := newConn(cl, 512, tt.sse)
			req := []byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
			tm, err := c.roundTrip(req, mono(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.sse {
				tt.wantEvents = tm.events
			}
			if tm.status != 200 || tm.events != tt.wantEvents || tm.bytes != tt.wantBytes || c.keepOpen != tt.wantKeep {
				t.Errorf("status %d, %d events, %d bytes, keep-alive %v; want 200, %d, %d, %v",
					tm.status, tm.events, tm.bytes, c.keepOpen, tt.wantEvents, tt.wantBytes, tt.wantKeep)
			}
		})
	}
}

func TestRoundTripTruncated(t *testing.T) {
	cl, sv := net.Pipe()
	defer cl.Close()
	go func() {
		defer sv.Close()
		_, _ = http.ReadRequest(bufio.NewReader(sv))
		_, _ = io.WriteString(sv, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
	}()
	c := newConn(cl, 512, true)
	_, err := c.roundTrip([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), mono(), 5*time.Second)
	if errKind(err) != "truncated" {
		t.Errorf("err = %v (%s), want truncated", err, errKind(err))
	}
}

func TestRequestBody(t *testing.T) {
	for _, size := range []int{0, 100, 1 << 20} {
		for _, mode := range []string{"sse", "raw"} {
			b := requestBody(mode, size)
			if size > 100 && len(b) != size {
				t.Errorf("requestBody(%s, %d) has %d bytes", mode, size, len(b))
			}
			if !strings.HasSuffix(string(b), `"}]}`) && !strings.HasSuffix(string(b), `"}`) {
				t.Errorf("requestBody(%s, %d) does not end a JSON object: %q", mode, size, b[len(b)-10:])
			}
		}
	}
}
