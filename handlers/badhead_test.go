package handlers

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// scanHead is the head CheckRequestStart keeps from a connection's first
// read b.
func scanHead(b string) *BadHead {
	_, _, bh := CheckRequestStart([]byte(b), true)
	return bh
}

// TestCheckRequestStartKeepsBadHead: the head of a request with a control
// character in a header field is kept, the field's value left out.
func TestCheckRequestStartKeepsBadHead(t *testing.T) {
	const line = "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: relay\r\n"
	tests := []struct {
		name  string
		give  string
		field string // "-": nothing kept
		clean string // the kept head's fields after the request line and Host
	}{
		{"clean", line + "X-A: 1\r\nContent-Length: 2\r\n\r\n{}", "-", ""},
		{"tab in a value is allowed", line + "X-A: a\tb\r\n\r\n", "-", ""},
		{"obs-text is allowed", line + "X-A: caf\xc3\xa9\r\n\r\n", "-", ""},
		{"control byte in a value", line + "X-Bad: a\x01s3cr3t\r\nX-B: 2\r\n\r\n", "X-Bad", "X-Bad: [control character]\r\nX-B: 2\r\n"},
		{"DEL in a value", line + "Authorization: Bearer s3cr3t\x7f\r\n\r\n", "Authorization", "Authorization: [control character]\r\n"},
		{"control byte in a long value", line + "X-Long: " + strings.Repeat("s3cr3t", 20) + "\x1b\r\n\r\n", "X-Long", "X-Long: [control character]\r\n"},
		{"stray CR in a value", line + "X-Cr: a\rs3cr3t\r\n\r\n", "X-Cr", "X-Cr: [control character]\r\n"},
		{"NUL", line + "X-Nul: \x00s3cr3t\r\n\r\n", "X-Nul", "X-Nul: [control character]\r\n"},
		{"control byte in a name", line + "X-B\x01s3cr3t: v\r\nX-B: 2\r\n\r\n", "", "X-B: 2\r\n"},
		{"line without a colon", line + "s3cr3t\x01\r\n\r\n", "", ""},
		{"in a continuation line", line + "X-Fold: a\r\n s3cr3t\x02\r\nX-B: 2\r\n\r\n", "X-Fold", "X-Fold: [control character]\r\nX-B: 2\r\n"},
		{"framing field left out", line + "Content-Length: 2\x01\r\n\r\n{}", "Content-Length", ""},
		{"two offending fields: the first named", line + "X-One: \x01\r\nX-Two: \x02\r\n\r\n", "X-One", "X-One: [control character]\r\nX-Two: [control character]\r\n"},
		{"head past the read", line + "X-Bad: a\x01b\r\nX-More: 1", "-", ""},
		{"second pipelined request", "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + line + "X-Bad: \x01\r\n\r\n", "-", ""},
		{"no request line", "X-Bad: \x01\r\n\r\n", "-", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bh := scanHead(tt.give)
			if tt.field == "-" {
				if bh != nil {
					t.Fatalf("kept %q", bh.clean)
				}
				return
			}
			if bh == nil {
				t.Fatal("nothing kept")
			}
			if bh.field != tt.field {
				t.Errorf("field %q, want %q", bh.field, tt.field)
			}
			if want := line + tt.clean + "\r\n"; string(bh.clean) != want {
				t.Errorf("kept %q, want %q", bh.clean, want)
			}
			if strings.Contains(string(bh.clean), "s3cr3t") || strings.Contains(bh.message(), "s3cr3t") {
				t.Errorf("the offending bytes were kept: %q / %q", bh.clean, bh.message())
			}
		})
	}
}

func TestBadHeadLongName(t *testing.T) {
	name := "X-" + strings.Repeat("n", 100)
	bh := scanHead("GET / HTTP/1.1\r\nHost: a\r\n" + name + ": \x01\r\n\r\n")
	if bh == nil || bh.field != name[:maxFieldName] {
		t.Fatalf("got %+v", bh)
	}
}

// TestBadHeadRestore: the kept head reads back as the request, the
// offending field with its placeholder; a Host gets a placeholder the URI
// is parsed with.
func TestBadHeadRestore(t *testing.T) {
	var req fasthttp.Request
	bh := scanHead("POST /v1/chat/completions?key=k1 HTTP/1.1\r\nHost: re\x01lay\r\nX-Api-Key: k2\r\nX-Bad: \x7f\r\nContent-Length: 2\r\n\r\n{}")
	if bh == nil || !bh.restore(&req) {
		t.Fatalf("not restored: %+v", bh)
	}
	if string(req.Header.Method()) != "POST" || string(req.URI().Path()) != "/v1/chat/completions" ||
		string(req.URI().QueryString()) != "key=k1" || req.Header.ContentLength() != 2 {
		t.Errorf("restored %s %s ? %s, length %d", req.Header.Method(), req.URI().Path(), req.URI().QueryString(), req.Header.ContentLength())
	}
	if string(req.Header.Peek("X-Bad")) != badValue || string(req.Header.Host()) != badHost || string(req.Header.Peek("X-Api-Key")) != "k2" {
		t.Errorf("headers: X-Bad %q, Host %q, X-Api-Key %q", req.Header.Peek("X-Bad"), req.Header.Host(), req.Header.Peek("X-Api-Key"))
	}
	if bh.message() != "control character in header Host" {
		t.Errorf("message %q", bh.message())
	}

	// What fasthttp refuses besides the field stays refused: nothing to restore.
	req.Reset()
	bh = scanHead("GET / HTTP/1.1\r\nX-Bad: \x01\r\n\r\n") // no Host
	if bh == nil || bh.restore(&req) || len(req.Header.RawHeaders()) != 0 {
		t.Errorf("restored a head without Host: %+v", bh)
	}
}

// TestHasControl: every byte value, at every place of lines up to 24
// bytes, against the byte-by-byte rule.
func TestHasControl(t *testing.T) {
	for n := 1; n <= 24; n++ {
		for at := range n {
			for c := range 256 {
				line := []byte(strings.Repeat("a", n))
				line[at] = byte(c)
				want := (c < 0x20 && c != '\t') || c == 0x7f
				if got := hasControl(line); got != want {
					t.Fatalf("hasControl(%q) = %v", line, got)
				}
			}
		}
	}
}
