package handlers

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/stream-relay/stream-relay/internal/mono"
	"github.com/valyala/fasthttp"
)

// A request whose chunked body outgrows the server's body limit, or is
// malformed, is reset by fasthttp (Request.ReadBody) before its error
// handler runs: the 413 (400) would then have no route, no X-Request-Id
// and no row, while the same body sent with a Content-Length refused for
// its size (before it is read, the request kept) has all three. So the header of each request whose body comes
// chunked is copied when it arrives (HeaderReceived) and given back to the
// request its error handler answers (restoreChunkedHead). Requests framed
// by a Content-Length (almost all: the SDKs send one) cost a length check.

// chunkedHeads maps the header of a request being read (the server's, in
// its RequestCtx) to a copy made when it arrived. An entry lives until the
// request reaches the relay's handlers or its error handler, or the next
// request is read into the same context (a connection that broke inside a
// chunked body reaches neither).
//
// An entry whose connection broke inside the body would stay until its
// context is reused, and for good once the server's pool dropped that
// context (the entry keeps it alive): keep sweeps out, once a minute at
// most, entries older than staleHead, whose request no server still reads.
type chunkedHeads struct {
	m         sync.Map     // *fasthttp.RequestHeader -> *keptHead
	live      atomic.Int64 // entries in m, so that most requests skip it
	lastSweep atomic.Int64 // unix nanoseconds of the last sweep
}

// keptHead is a header copy and when it was made.
type keptHead struct {
	hdr fasthttp.RequestHeader
	at  int64 // mono.Now
}

// staleHead is the age past which a kept header's request is surely over:
// far beyond any read timeout a body is read within.
const staleHead = 10 * time.Minute

var keptHeads chunkedHeads

// HeaderReceived is the server's hook after a request's header block was
// read and before its body is (fasthttp.Server.HeaderReceived): it keeps a
// copy of a chunked request's header. It changes none of the server's
// limits.
func (h *Relay) HeaderReceived(hdr *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if hdr.ContentLength() == -1 {
		keptHeads.keep(hdr)
	} else {
		keptHeads.forget(hdr)
	}
	return fasthttp.RequestConfig{}
}

func (k *chunkedHeads) keep(hdr *fasthttp.RequestHeader) {
	now := mono.Now()
	c := &keptHead{at: now}
	hdr.CopyTo(&c.hdr)
	if _, loaded := k.m.Swap(hdr, c); !loaded {
		k.live.Add(1)
	}
	if last := k.lastSweep.Load(); now-last > int64(time.Minute) && k.lastSweep.CompareAndSwap(last, now) {
		k.sweep(now - int64(staleHead))
	}
}

// sweep drops the entries made before the time before (mono.Now).
func (k *chunkedHeads) sweep(before int64) {
	k.m.Range(func(key, v any) bool {
		if v.(*keptHead).at < before && k.m.CompareAndDelete(key, v) {
			k.live.Add(-1)
		}
		return true
	})
}

// forget drops hdr's entry, if any: its request was read whole, or another
// is being read.
func (k *chunkedHeads) forget(hdr *fasthttp.RequestHeader) {
	if k.live.Load() == 0 {
		return
	}
	if _, ok := k.m.LoadAndDelete(hdr); ok {
		k.live.Add(-1)
	}
}

// restoreChunkedHead gives ctx's request back the header kept when it
// arrived, when reading its chunked body failed and fasthttp reset it since
// (outgrown the limit: 413; malformed chunks: 400; ReadError decides); it
// reports whether it did. The entry is this request's: made when its
// header arrived, replaced when the next header is read into the same
// context. (A request that ended without a handler, its client gone at a
// chunk boundary, leaves its entry: a header read that fails on the next
// connection to use the context must not take it, hence ReadError's
// bodyReadFailed. A body too slow, 408, is no such error: its head comes
// from its connection instead, slowbody.go.)
func restoreChunkedHead(ctx *fasthttp.RequestCtx) bool {
	hdr := &ctx.Request.Header
	if keptHeads.live.Load() == 0 {
		return false
	}
	v, ok := keptHeads.m.LoadAndDelete(hdr)
	if !ok {
		return false
	}
	keptHeads.live.Add(-1)
	v.(*keptHead).hdr.CopyTo(hdr)
	ctx.Request.SetRequestURIBytes(hdr.RequestURI()) // parsed again from the header
	return true
}
