package handlers

import (
	"github.com/stream-relay/stream-relay/internal/mono"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestChunkedHeadsKeepOnlyWhatIsBeingRead: a chunked request's header is
// kept from its arrival until it is read whole, answered by the error
// handler (its body too large, malformed or too slow), or the next request
// is read into the same context; nothing else is kept.
func TestChunkedHeadsKeepOnlyWhatIsBeingRead(t *testing.T) {
	var h Relay
	var ctx fasthttp.RequestCtx
	hdr := &ctx.Request.Header
	chunked := func() {
		hdr.Reset()
		hdr.SetMethod("POST")
		hdr.SetRequestURI("/v1/chat/completions?x=1")
		hdr.SetContentLength(-1)
		h.HeaderReceived(hdr)
	}
	live := func() int64 { return keptHeads.live.Load() }
	base := live()

	chunked()
	chunked() // the same context again: one entry
	if live() != base+1 {
		t.Fatalf("entries %d, want %d", live(), base+1)
	}
	keptHeads.forget(hdr) // read whole (CheckRequest)
	if live() != base {
		t.Fatalf("entries %d after the request was read", live())
	}

	chunked()
	hdr.SetContentLength(10)
	h.HeaderReceived(hdr) // the next request, framed by its length
	if live() != base {
		t.Fatalf("entries %d after a request framed by its length", live())
	}

	chunked()
	ctx.Request.Reset() // what fasthttp does when the body outgrows the limit
	if !restoreChunkedHead(&ctx) {
		t.Fatal("header not restored")
	}
	if string(ctx.Path()) != "/v1/chat/completions" || string(ctx.Method()) != "POST" || live() != base {
		t.Errorf("restored %s %s, entries %d", ctx.Method(), ctx.Path(), live())
	}
}

// TestChunkedHeadsSweepStale: an entry whose connection broke inside the
// body (neither handler ran) goes once it is stale: it kept its request
// context alive for good once the server's pool had dropped it.
func TestChunkedHeadsSweepStale(t *testing.T) {
	var h Relay
	base := keptHeads.live.Load()
	var broken fasthttp.RequestCtx
	broken.Request.Header.SetMethod("POST")
	broken.Request.Header.SetContentLength(-1)
	h.HeaderReceived(&broken.Request.Header)
	if keptHeads.live.Load() != base+1 {
		t.Fatalf("entries %d, want %d", keptHeads.live.Load(), base+1)
	}
	keptHeads.sweep(mono.Now() - int64(staleHead)) // fresh: kept
	if keptHeads.live.Load() != base+1 {
		t.Fatal("a fresh entry was swept")
	}
	keptHeads.sweep(mono.Now() + int64(time.Second)) // as if staleHead had passed
	if _, ok := keptHeads.m.Load(&broken.Request.Header); ok || keptHeads.live.Load() != base {
		t.Fatalf("stale entry kept (entries %d)", keptHeads.live.Load())
	}
}
