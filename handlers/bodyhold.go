package handlers

import (
	"bytes"

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
func (h *Relay) HeaderReceived(hdr *fasthttp.RequestHeader) fasthttp.RequestConfig {
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
