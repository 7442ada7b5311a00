package main

import (
	"net/url"
	"strconv"
	"strings"
)

// buildRequest returns the one request every connection sends, whole.
func buildRequest(o *Options) []byte {
	u, _ := url.Parse(o.URL) // validated
	path := u.RequestURI()
	body := requestBody(o.Mode, o.BodyBytes)

	var b strings.Builder
	b.WriteString("POST " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\n")
	b.WriteString("Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n")
	if o.Auth != "" {
		b.WriteString("Authorization: " + o.Auth + "\r\n")
	}
	if o.Chunks >= 0 {
		b.WriteString("X-Mock-Chunks: " + strconv.Itoa(o.Chunks) + "\r\n")
	}
	if o.DelayMs > 0 {
		b.WriteString("X-Mock-Delay-Ms: " + strconv.FormatFloat(o.DelayMs, 'f', -1, 64) + "\r\n")
	}
	if o.ChunkBytes > 0 {
		b.WriteString("X-Mock-Chunk-Bytes: " + strconv.Itoa(o.ChunkBytes) + "\r\n")
	}
	for _, h := range o.Headers {
		b.WriteString(strings.TrimSpace(h) + "\r\n")
	}
	b.WriteString("\r\n")
	return append([]byte(b.String()), body...)
}

// requestBody is a chat completion request (sse) or a speech request (raw),
// its text padded so the body is size bytes when size is larger than the
// smallest body.
func requestBody(mode string, size int) []byte {
	head, tail := `{"model":"bench","stream":true,"messages":[{"role":"user","content":"`, `"}]}`
	if mode == "raw" {
		head, tail = `{"model":"tts-1","voice":"alloy","input":"`, `"}`
	}
	pad := max(size-len(head)-len(tail), 2)
	b := make([]byte, 0, len(head)+pad+len(tail))
	b = append(b, head...)
	for i := range pad {
		// words, so a byte scanner in the relay sees ordinary text
		if i%6 == 5 {
			b = append(b, ' ')
		} else {
			b = append(b, 'a'+byte(i%26))
		}
	}
	return append(b, tail...)
}
