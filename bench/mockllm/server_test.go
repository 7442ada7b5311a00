package mockllm_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    mockllm.Options
		want string
	}{
		{name: "stall timeout", o: mockllm.Options{StallTimeout: -time.Second}, want: "stall_timeout=-1s"},
		{name: "max body", o: mockllm.Options{MaxBodyBytes: -1}, want: "max_body_bytes=-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := mockllm.Listen("", tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Listen error = %v, want one naming %q", err, tt.want)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			if err := mockllm.New(tt.o).Serve(ln); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Serve error = %v, want one naming %q", err, tt.want)
			}
		})
	}
}

func TestMaxBodyBytes(t *testing.T) {
	_, base, c := start(t, mockllm.Options{MaxBodyBytes: 16})
	resp := post(t, c, base+"/v1/chat/completions", `{"model":"a-long-model-name"}`)
	readError(t, resp, http.StatusRequestEntityTooLarge)
}

func TestCloseEndsStall(t *testing.T) {
	srv, base, err := mockllm.Listen("", mockllm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := tryPost(c, base+"/v1/chat/completions", `{"stream":true}`, mockllm.HeaderStallAfter, "1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	eventually(t, "Open() == 1", func() bool { return srv.Open() == 1 })

	t0 := time.Now()
	if err := srv.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("Close took %v with a stalled stream", d)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Errorf("stream ended cleanly, want it broken")
	}
	if srv.Open() != 0 || srv.Closed() != 0 {
		t.Errorf("after Close: Open() = %d, Closed() = %d; want 0, 0", srv.Open(), srv.Closed())
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(ln); !errors.Is(err, mockllm.ErrClosed) {
		t.Errorf("Serve after Close = %v, want ErrClosed", err)
	}
}
