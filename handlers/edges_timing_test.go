package handlers

import "testing"

func BenchmarkCheckRequestStart(b *testing.B) {
	req := []byte("POST /v1/chat/completions HTTP/1.1\r\nHost: relay.example\r\nAuthorization: Bearer sk-x\r\n" +
		"Content-Type: application/json\r\nUser-Agent: OpenAI/Python 1.54.0\r\nContent-Length: 2\r\n\r\n{}")
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for b.Loop() {
		_, _, _ = CheckRequestStart(req, true)
	}
}
