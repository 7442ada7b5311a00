package handlers

import (
	"bytes"
	"hash/maphash"
	"strings"
	"sync"

	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/usage"
)

// A read (GET, HEAD) generates nothing: the usage its answer carries is
// that of a generation that ran before, charged then (a stored chat
// completion fetched again, a batch's results, a finished response
// polled). Charging it again charged one generation once per read: three
// polls of a response spent three times its tokens. Such a read's row
// counts 0 tokens, and it charges nothing.
//
// One kind of read is the only place a generation's usage shows: an OpenAI
// Responses response run in the background (background: true), whose POST
// answers at once, queued, and whose output and usage come to a GET by
// its id (polled as JSON, or streamed with stream=true). Its usage is
// charged at the first read that carries it, per tenant and response id;
// later reads of the same response count 0. A response whose own POST
// carried its usage (it did not run in the background; or its cancel) is
// noted then, and no read charges it again: nor the estimate of a resumed
// stream of it that was cut before its usage came. The notes are kept in this process only: with
// several relay instances, each may charge a background response once.

// maxRetrievals bounds the response ids noted in one generation of
// retrievals: two generations are kept, so an id is remembered for
// maxRetrievals to 2*maxRetrievals later generations (16 bytes each).
const maxRetrievals = 1 << 15

// retrievals are the (tenant, response id) pairs whose usage was charged.
type retrievals struct {
	mu        sync.Mutex
	seed      maphash.Seed
	cur, prev map[uint64]struct{}
}

func newRetrievals() *retrievals {
	return &retrievals{seed: maphash.MakeSeed(), cur: map[uint64]struct{}{}}
}

// key is the pair's key in the notes.
func (r *retrievals) key(tenant string, id []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(r.seed)
	h.WriteString(tenant)
	h.WriteByte(0)
	h.Write(id)
	return h.Sum64()
}

// note marks id's usage charged for tenant and reports whether it was
// not before.
func (r *retrievals) note(tenant string, id []byte) bool {
	k := r.key(tenant, id)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.has(k) {
		return false
	}
	if len(r.cur) >= maxRetrievals {
		r.prev, r.cur = r.cur, make(map[uint64]struct{}, maxRetrievals)
	}
	r.cur[k] = struct{}{}
	return true
}

// seen reports whether id's usage was charged for tenant.
func (r *retrievals) seen(tenant string, id []byte) bool {
	k := r.key(tenant, id)
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.has(k)
}

func (r *retrievals) has(k uint64) bool {
	_, cur := r.cur[k]
	_, prev := r.prev[k]
	return cur || prev
}

// zeroUsage reports whether rec's usage is to count 0 tokens (its row
// and its charge): found says usage was found in its answer. A read
// counts 0 when it carries usage, but the first read of a Responses
// response by its id that carries it; and a read of a response already
// charged counts 0 without usage too (a resumed stream cut again would be
// charged an estimate). A request that is no read carrying usage has its
// Responses id noted (a POST creating, or cancelling, a response).
func (r *retrievals) zeroUsage(rec *record.Record, found bool) bool {
	if usage.StoredObject(rec.Path) {
		return found
	}
	read := usage.IsRead(rec.Method)
	if !read {
		if found && strings.Contains(rec.Path, "/responses") {
			if id := responseID(answerHead(rec)); id != nil {
				r.note(rec.Tenant, id)
			}
		}
		return false
	}
	if usage.APIForPath(rec.Path) != usage.Responses || rec.Status < 200 || rec.Status >= 300 {
		return found
	}
	id := []byte(rec.Path[strings.LastIndexByte(rec.Path, '/')+1:])
	if found {
		return !r.note(rec.Tenant, id)
	}
	return r.seen(rec.Tenant, id)
}

// responseIDKey is the member that holds a Responses response object's
// id, as the first event of its stream (response.created) and its JSON body
// begin; responseIDPrefix begins the id's value.
var (
	responseIDKey    = []byte(`"id"`)
	responseIDPrefix = []byte(`"resp_`)
)

// responseIDScan bounds the bytes searched for the id: it comes within
// the first hundred.
const responseIDScan = 1024

// responseID returns the response id ("resp_...") in head, or nil. The
// member may be written compact or pretty-printed (OpenAI indents a
// non-streamed body: "id": "resp_...").
func responseID(head []byte) []byte {
	head = head[:min(len(head), responseIDScan)]
	for from := 0; ; {
		i := bytes.Index(head[from:], responseIDKey)
		if i < 0 {
			return nil
		}
		from += i + len(responseIDKey)
		v := skipJSONSpace(head, from)
		if v == len(head) || head[v] != ':' {
			continue
		}
		v = skipJSONSpace(head, v+1)
		if !bytes.HasPrefix(head[v:], responseIDPrefix) {
			continue
		}
		id := head[v+1:]
		j := bytes.IndexByte(id, '"')
		if j < 0 {
			return nil
		}
		return id[:j]
	}
}

// skipJSONSpace returns the index of the first byte of b at or after i that
// is not JSON whitespace.
func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// answerHead returns the first bytes of rec's answer that were kept: the
// captured chunks, or the head the record's window kept.
func answerHead(rec *record.Record) []byte {
	if rec.Window == nil || len(rec.Chunks.Data) >= responseIDScan {
		return rec.Chunks.Data
	}
	head, _, _ := rec.Window.Parts()
	if len(head) > len(rec.Chunks.Data) {
		return head
	}
	return rec.Chunks.Data
}
