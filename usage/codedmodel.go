package usage

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"io"
	"strings"
	"sync"
)

// maxCodedModelBytes bounds how much of a compressed request body
// CodedModel decodes: a few kilobytes may inflate to gigabytes, and the
// decoding runs before the request goes upstream.
const maxCodedModelBytes = 1 << 20

var (
	gzipReaders sync.Pool // *gzip.Reader, reset for each body
	zlibReaders sync.Pool // zlib's io.ReadCloser, a zlib.Resetter
	codedBufs   = sync.Pool{New: func() any { b := make([]byte, maxCodedModelBytes); return &b }}
)

// CodedModel returns the top-level "model" (Model) of a request body sent
// with the Content-Encoding coding: gzip (or x-gzip) and deflate (zlib, RFC
// 9110 8.4.1.2) are decoded, their first maxCodedModelBytes scanned, with
// pooled decoders and buffers. "" for another coding (br, zstd), a body
// that does not decode, or one that names no model within the bound. The
// body itself is stored and sent as it came; this is only for the row's
// model column.
func CodedModel(coding, body []byte) string {
	src := bytes.NewReader(body)
	var r io.Reader
	switch strings.ToLower(strings.TrimSpace(string(coding))) {
	case "gzip", "x-gzip":
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(src)
		} else {
			err = zr.Reset(src)
		}
		if err != nil {
			return ""
		}
		defer gzipReaders.Put(zr)
		r = zr
	case "deflate":
		zr, _ := zlibReaders.Get().(io.ReadCloser)
		var err error
		if zr == nil {
			zr, err = zlib.NewReader(src)
		} else {
			err = zr.(zlib.Resetter).Reset(src, nil)
		}
		if err != nil {
			return ""
		}
		defer zlibReaders.Put(zr)
		r = zr
	default:
		return ""
	}
	bp := codedBufs.Get().(*[]byte)
	defer codedBufs.Put(bp)
	n, _ := io.ReadFull(r, *bp) // a cut or short body: what came
	return Model((*bp)[:n])
}
