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
// carried its usage (it did not run in the background) is noted then, and
// no read charges it again. The notes are kept in this process only: with
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

// note marks id's usage charged for tenant and reports whether it was
// not before.
func (r *retrievals) note(tenant string, id []byte) bool {
	var h maphash.Hash
	h.SetSeed(r.seed)
	h.WriteString(tenant)
	h.WriteByte(0)
	h.Write(id)
	k := h.Sum64()
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.cur[k]; ok {
		return false
	}
	if _, ok := r.prev[k]; ok {
		return false
	}
	if len(r.cur) >= maxRetrievals {
		r.prev, r.cur = r.cur, make(map[uint64]struct{}, maxRetrievals)
	}
	r.cur[k] = struct{}{}
	return true
}

// chargesUsage reports whether the usage found in rec's answer is charged
// to its tenant (and counted in its row): always for a request that is no
// read; for a read only the first of a Responses response by its id. It
// notes the id of a Responses generation that carried its usage.
func (r *retrievals) chargesUsage(rec *record.Record) bool {
	read := rec.Method == "GET" || rec.Method == "HEAD"
	if usage.APIForPath(rec.Path) != usage.Responses || rec.Status < 200 || rec.Status >= 300 {
		return !read
	}
	var id []byte
	if read {
		id = []byte(rec.Path[strings.LastIndexByte(rec.Path, '/')+1:])
	} else if id = responseID(answerHead(rec)); id == nil {
		return true
	}
	return r.note(rec.Tenant, id) || !read
}

// responseIDKey opens the id of a Responses response object, as the first
// event of its stream (response.created) and its JSON body begin.
var responseIDKey = []byte(`"id":"resp_`)

// responseIDScan bounds the bytes searched for the id: it comes within
// the first hundred.
const responseIDScan = 1024

// responseID returns the response id ("resp_...") in head, or nil.
func responseID(head []byte) []byte {
	head = head[:min(len(head), responseIDScan)]
	i := bytes.Index(head, responseIDKey)
	if i < 0 {
		return nil
	}
	id := head[i+len(`"id":"`):]
	j := bytes.IndexByte(id, '"')
	if j < 0 {
		return nil
	}
	return id[:j]
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
