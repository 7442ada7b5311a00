package handlers

import (
	"bufio"
	"bytes"
	"encoding/binary"

	"github.com/valyala/fasthttp"
)

// fasthttp refuses a header field with a control character in it (a byte
// below 0x20 but HTAB, or DEL; in its value or its name) with a 400, and
// resets the request before its error handler runs: the relay is handed no
// method, path, key or header to log. The bytes are seen earlier, though,
// by the read that begins the request (app's edgeListener):
// CheckRequestStart finds such a field there on its pass over the header
// lines, and only then keeps a copy of the head without the field's value
// (BadHead), which the error handler puts back into the request to refuse
// and log it the ordinary way (ReadError). A head the read does not hold
// whole, or that is not the first request in it, keeps nothing: its row
// has no method, path or key (see ReadError).

// BadHead is the head of a request with a control character in a header
// field, as the relay keeps it: the request line and the header fields,
// but each offending field's value replaced by badValue (badHost for a
// Host), or the field left out when its name is not a token or it frames
// the body. The raw bytes of an offending field are never kept.
type BadHead struct {
	clean []byte
	field string // the first offending field's name; "" when not a token
}

// badValue stands for an offending field's value in a BadHead, and so in
// the request headers of the request's row; badHost for a Host's, which
// the request's URI is parsed with: a name reserved to be invalid (RFC
// 6761 6.4), where badValue would leave the URI without its path.
const (
	badValue = "[control character]"
	badHost  = "invalid"
)

// maxFieldName bounds the field name an answer shows.
const maxFieldName = 64

// newBadHead builds the BadHead of a request with request line reqLine and
// header fields fields (each line with its line end, the block's empty
// line not included).
func newBadHead(reqLine, fields []byte) *BadHead {
	bh := &BadHead{}
	clean := make([]byte, 0, len(reqLine)+len(fields)+len(badValue)+2)
	clean = append(clean, reqLine...)
	first := true
	for len(fields) > 0 {
		f := fields[:fieldEnd(fields)]
		fields = fields[len(f):]
		if !fieldHasControl(f) {
			clean = append(clean, f...)
			continue
		}
		name, _, ok := bytes.Cut(f, []byte{':'})
		ok = ok && isToken(name)
		if first {
			first = false
			if ok {
				bh.field = string(name[:min(len(name), maxFieldName)])
			}
		}
		if ok && !framingField(name) {
			v := badValue
			if bytes.EqualFold(name, []byte("host")) {
				v = badHost
			}
			clean = append(append(append(append(clean, name...), ':', ' '), v...), '\r', '\n')
		}
	}
	bh.clean = append(clean, '\r', '\n')
	return bh
}

// message is the refusal's message: it names the offending field, never
// its value.
func (bh *BadHead) message() string {
	if bh.field == "" {
		return "control character in a header line"
	}
	return "control character in header " + bh.field
}

// restore parses the kept head into req's header, as if fasthttp had read
// it; false when it cannot: fasthttp refuses more in it than the fields
// with a control character (no Host, a request target it does not take).
func (bh *BadHead) restore(req *fasthttp.Request) bool { return restoreHead(req, bh.clean) }

// restoreHead parses head, a request's header block with its empty line,
// into req's header, as if fasthttp had read it; false when fasthttp
// refuses it.
func restoreHead(req *fasthttp.Request, head []byte) bool {
	hdr := &req.Header
	if err := hdr.Read(bufio.NewReaderSize(bytes.NewReader(head), len(head)+16)); err != nil {
		hdr.Reset()
		return false
	}
	req.SetRequestURIBytes(hdr.RequestURI())
	return true
}

// fieldEnd returns the length of the first header field in b: its line and
// the continuation lines (obs-fold, RFC 9112 5.2) that follow it.
func fieldEnd(b []byte) int {
	end := 0
	for {
		i := bytes.IndexByte(b[end:], '\n')
		if i < 0 {
			return len(b)
		}
		end += i + 1
		if end == len(b) || (b[end] != ' ' && b[end] != '\t') {
			return end
		}
	}
}

// fieldHasControl reports whether a header field's lines hold a control
// character (their line ends aside).
func fieldHasControl(f []byte) bool {
	for len(f) > 0 {
		line := f
		if i := bytes.IndexByte(f, '\n'); i >= 0 {
			line, f = f[:i], f[i+1:]
		} else {
			f = nil
		}
		if hasControl(trimCR(line)) {
			return true
		}
	}
	return false
}

// framingField reports whether name is a field that frames the body: left
// out of a BadHead, as a placeholder value would be refused in it.
func framingField(name []byte) bool {
	return bytes.EqualFold(name, []byte("content-length")) || bytes.EqualFold(name, []byte("transfer-encoding"))
}

// isToken reports whether b is a non-empty RFC 9110 token.
func isToken(b []byte) bool {
	for _, c := range b {
		if !tokenByte[c] {
			return false
		}
	}
	return len(b) > 0
}

// trimCR returns line without a trailing CR.
func trimCR(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		return line[:n-1]
	}
	return line
}

const (
	lanes1   = 0x0101010101010101
	lanesTop = 0x8080808080808080
)

// hasControl reports whether line holds a control character fasthttp
// refuses in a header: below 0x20 but HTAB, or DEL. Eight bytes at a
// time, up to a word with a byte below 0x20 or DEL; from there, and the
// last bytes, byte by byte. On a request's header lines it costs about as
// much again as finding them.
func hasControl(line []byte) bool {
	for len(line) >= 8 && !suspectWord(binary.LittleEndian.Uint64(line)) {
		line = line[8:]
	}
	for _, c := range line {
		if controlByte(c) {
			return true
		}
	}
	return false
}

// suspectWord reports whether one of the eight bytes of x is below 0x20 or
// is DEL (HTAB is below 0x20 too).
func suspectWord(x uint64) bool {
	y := x ^ (0x7f * lanes1)
	return ((x-0x20*lanes1)&^x|(y-lanes1)&^y)&lanesTop != 0
}

func controlByte(c byte) bool { return (c < 0x20 && c != '\t') || c == 0x7f }
