package handlers

import (
	"strconv"
	"testing"
)

// TestRetrievalsNoteOnce: a (tenant, id) pair is noted once, per tenant;
// it is remembered for at least maxRetrievals later notes, and the memory
// is bounded: past two generations it is forgotten.
func TestRetrievalsNoteOnce(t *testing.T) {
	r := newRetrievals()
	if !r.note("a", []byte("resp_1")) || r.note("a", []byte("resp_1")) {
		t.Fatal("resp_1 for tenant a: noted twice, or not the first time")
	}
	if !r.note("b", []byte("resp_1")) {
		t.Fatal("resp_1 for tenant b was taken for tenant a's")
	}
	if !r.note("a", []byte("resp_10")) || !r.note("a1", []byte("0")) {
		t.Fatal("tenant and id run together")
	}
	for i := range maxRetrievals {
		r.note("c", []byte(strconv.Itoa(i)))
	}
	if r.note("a", []byte("resp_1")) {
		t.Fatal("resp_1 forgotten after maxRetrievals notes")
	}
	for i := range 2 * maxRetrievals {
		r.note("d", []byte(strconv.Itoa(i)))
	}
	if !r.note("a", []byte("resp_1")) {
		t.Fatal("resp_1 remembered past two generations")
	}
	if n := len(r.cur) + len(r.prev); n > 2*maxRetrievals {
		t.Fatalf("%d ids held, bound %d", n, 2*maxRetrievals)
	}
}

// TestResponseID: the id of a Responses answer, as its stream's first
// event or its JSON body begins.
func TestResponseID(t *testing.T) {
	for give, want := range map[string]string{
		`event: response.created` + "\n" + `data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_68c1","object":"response"}}`: "resp_68c1",
		`{"id":"resp_abc","object":"response","status":"queued"}`:                                                                                    "resp_abc",
		"{\n  \"id\": \"resp_pretty\",\n  \"object\": \"response\"\n}":                                                                               "resp_pretty",
		`{"id" :	"resp_tab"}`:                        "resp_tab",
		`{"item":{"id":"msg_1"},"id":"resp_second"}`: "resp_second",
		`{"id":"chatcmpl-1"}`:                        "",
		`{"id":"resp_cut`:                            "",
	} {
		if got := string(responseID([]byte(give))); got != want {
			t.Errorf("responseID(%.40q) = %q, want %q", give, got, want)
		}
	}
}
