package upstream

import (
	"bytes"
	"errors"
	"io"
	"net/http/httputil"
	"strconv"
	"strings"
	"testing"
)

// slowReader hands out at most step bytes per Read, like a socket.
type slowReader struct {
	data []byte
	step int
}

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.step)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// readBody decodes wire arriving step bytes per read into a read buffer
// with room for bufSize bytes between its head and tail room.
func readBody(t testing.TB, mode bodyMode, length int64, wire []byte, step, bufSize int) ([]byte, error) {
	rb := &readBuf{size: headroom + bufSize + tailroom}
	rb.reset(&slowReader{data: wire, step: step}, nil, nil)
	var b bodyReader
	b.reset(rb, mode, length)
	var out []byte
	for i := 0; i < 1_000_000; i++ {
		v, err := b.next()
		if v.end > v.start && (v.start < headroom || v.end > len(rb.buf)-tailroom) {
			t.Fatalf("view %d:%d outside the room of a %d-byte buffer", v.start, v.end, len(rb.buf))
		}
		out = append(out, rb.buf[v.start:v.end]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
	t.Fatal("bodyReader never ended")
	return nil, nil
}

func chunked(parts ...string) []byte {
	var b []byte
	for _, p := range parts {
		b = strconv.AppendInt(b, int64(len(p)), 16)
		b = append(b, "\r\n"+p+"\r\n"...)
	}
	return append(b, "0\r\n\r\n"...)
}

func TestBodyReader(t *testing.T) {
	tests := []struct {
		name    string
		mode    bodyMode
		length  int64
		wire    string
		want    string
		wantErr error
	}{
		{"chunked", bodyChunked, 0, string(chunked("data: a\n\n", "data: b\n\n")), "data: a\n\ndata: b\n\n", nil},
		{"chunk extension and trailer", bodyChunked, 0, "3;name=v\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n", "abc", nil},
		{"upper-case hex", bodyChunked, 0, "A\r\n0123456789\r\n0\r\n\r\n", "0123456789", nil},
		{"bad size", bodyChunked, 0, "zz\r\nabc\r\n0\r\n\r\n", "", errChunkSize},
		{"missing CRLF after data", bodyChunked, 0, "3\r\nabcX\r\n0\r\n\r\n", "abc", errChunkCRLF},
		{"cut mid-chunk", bodyChunked, 0, "10\r\nabc", "abc", io.ErrUnexpectedEOF},
		{"cut before last chunk", bodyChunked, 0, "3\r\nabc\r\n", "abc", io.ErrUnexpectedEOF},
		{"fixed", bodyFixed, 5, "hello", "hello", nil},
		{"fixed short", bodyFixed, 10, "hello", "hello", io.ErrUnexpectedEOF},
		{"until close", bodyClose, 0, "raw bytes", "raw bytes", nil},
		{"none", bodyNone, 0, "ignored", "", nil},
	}
	for _, tt := range tests {
		for _, step := range []int{1, 3, 1000} {
			t.Run(tt.name+"/step "+strconv.Itoa(step), func(t *testing.T) {
				got, err := readBody(t, tt.mode, tt.length, []byte(tt.wire), step, 24)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				if string(got) != tt.want {
					t.Errorf("body %q, want %q", got, tt.want)
				}
			})
		}
	}
}

// TestBodyReaderCoalesces: everything already buffered comes back in one
// Read, across chunk boundaries, and a Read never waits once it has data.
func TestBodyReaderCoalesces(t *testing.T) {
	wire := chunked("data: 1\n\n", "data: 2\n\n", "data: 3\n\n")
	var rb readBuf
	rb.reset(bytes.NewReader(wire), nil, nil)
	defer rb.release()
	var b bodyReader
	b.reset(&rb, bodyChunked, 0)
	v, err := b.next()
	if got := rb.buf[v.start:v.end]; err != nil || string(got) != "data: 1\n\ndata: 2\n\ndata: 3\n\n" {
		t.Fatalf("first view %q, %v", got, err)
	}
	if !v.tailFree {
		t.Error("the framing consumed after the view leaves its tail free")
	}
	if v, err := b.next(); v.end != v.start || err != io.EOF {
		t.Fatalf("second view %d bytes, %v", v.end-v.start, err)
	}
}

func FuzzBodyReader(f *testing.F) {
	f.Add([]byte("data: hello\n\n"), 5, 3, 7)
	f.Add([]byte{}, 1, 1, 1)
	f.Fuzz(func(t *testing.T, body []byte, chunk, step, bufSize int) {
		chunk, step, bufSize = 1+abs(chunk)%64, 1+abs(step)%64, 16+abs(bufSize)%64
		var parts []string
		for i := 0; i < len(body); i += chunk {
			parts = append(parts, string(body[i:min(i+chunk, len(body))]))
		}
		wire := chunked(parts...)
		got, err := readBody(t, bodyChunked, 0, wire, step, bufSize)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("decoded %q (%v), want %q", got, err, body)
		}
		// Arbitrary bytes: never panic, and agree with net/http's decoder
		// on what a well-formed prefix holds.
		got, err = readBody(t, bodyChunked, 0, body, step, bufSize)
		ref, refErr := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(body)))
		if err == nil && refErr == nil && !bytes.Equal(got, ref) && !strings.Contains(string(body), ";") {
			t.Fatalf("decoded %q, net/http decoded %q", got, ref)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func TestParseChunkSize(t *testing.T) {
	for _, c := range []struct {
		line string
		n    int64
		ok   bool
	}{
		{"1a\r\n", 26, true},
		{"1A\n", 26, true},
		{"0\r\n", 0, true},
		{"1a;name=value\r\n", 26, true},
		{"1a \t;ext\r\n", 26, true},
		{"fffffffffffffff\r\n", 0xfffffffffffffff, true},
		{"ffffffffffffffff\r\n", 0, false},      // 16 digits: could overflow
		{"0000000000000000030\r\n", 0x30, true}, // leading zeros are no digits of the size
		{"00000000000000000\r\n", 0, true},
		{"01000000000000000\r\n", 0, false}, // 16 significant digits
		{"\r\n", 0, false},
		{";ext\r\n", 0, false},
		{" 1a\r\n", 0, false},
		{"1g\r\n", 0, false},
		{"-1\r\n", 0, false},
		{"1a\r\r\n", 26, true},
		{strings.Repeat("0", maxChunkSizeLine+1), 0, false},
	} {
		n, err := parseChunkSize([]byte(c.line))
		if (err == nil) != c.ok || n != c.n {
			t.Errorf("parseChunkSize(%q) = %d, %v; want %d, ok %v", c.line, n, err, c.n, c.ok)
		}
	}
}
