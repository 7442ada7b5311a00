package usage

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"strings"
	"testing"
)

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write([]byte(s))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func zlibbed(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zlib.NewWriter(&b)
	_, _ = zw.Write([]byte(s))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestCodedModel: the model of a gzip or deflate request body is read from
// its decoded bytes, within the bound; other codings and broken bodies
// give "".
func TestCodedModel(t *testing.T) {
	body := `{"messages":[{"role":"user","content":"hi"}],"model":"gpt-4o"}`
	late := `{"messages":[{"role":"user","content":"` + strings.Repeat("a", maxCodedModelBytes) + `"}],"model":"gpt-4o"}`
	for _, tt := range []struct {
		name, coding string
		body         []byte
		want         string
	}{
		{"gzip", "gzip", gzipped(t, body), "gpt-4o"},
		{"x-gzip, case and space", " X-GZIP ", gzipped(t, body), "gpt-4o"},
		{"deflate", "deflate", zlibbed(t, body), "gpt-4o"},
		{"br", "br", []byte(body), ""},
		{"not gzip", "gzip", []byte(body), ""},
		{"cut gzip", "gzip", gzipped(t, body)[:30], ""},
		{"past the bound", "gzip", gzipped(t, late), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := CodedModel([]byte(tt.coding), tt.body); got != tt.want {
				t.Errorf("CodedModel = %q; want %q", got, tt.want)
			}
		})
	}
}

// TestCodedModelBounded: a small gzip body that inflates to far more than
// the bound (a bomb) is scanned up to the bound: its model, past it, is not
// found, and the next body is read as usual.
func TestCodedModelBounded(t *testing.T) {
	bomb := gzipped(t, `{"messages":[{"role":"user","content":"`+strings.Repeat("0", 64<<20)+`"}],"model":"m"}`)
	if got := CodedModel([]byte("gzip"), bomb); got != "" {
		t.Errorf("model %q past the bound; want none", got)
	}
	if m := CodedModel([]byte("gzip"), gzipped(t, `{"model":"gpt-4o"}`)); m != "gpt-4o" {
		t.Errorf("model %q after the bomb; want gpt-4o", m)
	}
}
