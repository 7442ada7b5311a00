package usage

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"io"
	"strings"
)

// maxCodedModelBytes bounds how much of a compressed request body
// CodedModel decodes: a few kilobytes may inflate to gigabytes.
const maxCodedModelBytes = 8 << 20

// CodedModel returns the top-level "model" (Model) of a request body sent
// with the Content-Encoding coding: gzip (or x-gzip) and deflate (zlib, RFC
// 9110 8.4.1.2) are decoded, their first maxCodedModelBytes scanned. ""
// for another coding (br, zstd), a body that does not decode, or one that
// names no model within the bound. The body itself is stored and sent as
// it came; this is only for the row's model column.
func CodedModel(coding, body []byte) string {
	var r io.Reader
	var err error
	switch strings.ToLower(strings.TrimSpace(string(coding))) {
	case "gzip", "x-gzip":
		r, err = gzip.NewReader(bytes.NewReader(body))
	case "deflate":
		r, err = zlib.NewReader(bytes.NewReader(body))
	default:
		return ""
	}
	if err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(r, maxCodedModelBytes)) // a cut body: what came
	return Model(b)
}
