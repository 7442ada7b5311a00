//go:build !race

package handlers

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// The per-request checks run on every request and every connection's
// first read: they must not allocate.
func TestEdgesAllocations(t *testing.T) {
	req := []byte("POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
	if n := testing.AllocsPerRun(100, func() { _, _, _ = CheckRequestStart(req, true) }); n != 0 {
		t.Errorf("CheckRequestStart: %v allocations", n)
	}
	var h fasthttp.RequestHeader
	if err := h.Read(bufioReader(string(req))); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = requestEdge(&h) }); n != 0 {
		t.Errorf("requestEdge: %v allocations", n)
	}
}
