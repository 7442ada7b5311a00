package handlers

import (
	"bytes"
	"time"

	"github.com/valyala/fasthttp"
)

// UnkeyedBodyLimit is the largest body the server reads of a request that
// carries no valid relay key (HeaderReceived): such a request is refused
// (401) once read, and its body is no one's to send upstream.
const UnkeyedBodyLimit = 64 << 10

// HeaderReceived is the server's hook between a request's header block and
// its body (fasthttp.Server.HeaderReceived). fasthttp allocates a body's
// whole declared Content-Length before it reads a byte of it: 30
// connections that each sent a head declaring 32 MiB and one byte of body,
// without a key, held a gigabyte until read_timeout. A request declaring
// more than UnkeyedBodyLimit without a valid relay key is read only up to
// that (the server's 413 is answered as the gate's 401: ServerError); with
// one it keeps the server's limit. Small bodies are not looked at: the key
// is checked once, by the gate.
//
// A request CheckFraming refuses (Transfer-Encoding with Content-Length,
// or not chunked) is given no time to send a body: fasthttp read it by its
// chunked framing first, and a body framed by the length ("abc" read as a
// chunk size) kept the client waiting read_timeout for a 408 (the row: a
// 400 lasting as long as the client waited). Its read times out at once
// unless the body is already there, and ServerError answers the timeout
// as CheckFraming's 400.
func (h *Relay) HeaderReceived(hdr *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if hdr.ContentLength() == -1 && framingRefusal(hdr.RawHeaders()) != "" {
		return fasthttp.RequestConfig{ReadTimeout: time.Nanosecond}
	}
	if hdr.ContentLength() <= UnkeyedBodyLimit {
		return fasthttp.RequestConfig{}
	}
	// The URI is not parsed yet: the query (a Gemini ?key=) is cut from it.
	var query []byte
	if _, q, ok := bytes.Cut(hdr.RequestURI(), []byte("?")); ok {
		query, _, _ = bytes.Cut(q, []byte("#"))
	}
	if h.cur.Load().Keys.Lookup(requestCredential(hdr, query)) != nil {
		return fasthttp.RequestConfig{}
	}
	return fasthttp.RequestConfig{MaxRequestBodySize: UnkeyedBodyLimit}
}
