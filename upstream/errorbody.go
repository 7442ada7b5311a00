package upstream

import (
	"strconv"

	"github.com/valyala/fasthttp"
)

// AppendErrorBody appends the relay's JSON error body,
// {"error":{"type":...,"message":...}} and a newline, to dst.
func AppendErrorBody(dst []byte, errType, message string) []byte {
	dst = append(dst, `{"error":{"type":`...)
	dst = AppendJSONString(dst, errType)
	dst = append(dst, `,"message":`...)
	dst = AppendJSONString(dst, message)
	return append(dst, "}}\n"...)
}

// AppendErrorResponse appends a whole HTTP/1.1 response carrying the
// relay's JSON error (AppendErrorBody) and closing the connection, for
// answers written on the connection itself rather than through the server:
// with the request's id when requestID is set, and header lines extra
// ("Name: value\r\n" each) when given.
func AppendErrorResponse(dst []byte, status int, errType, message string, requestID, extra []byte) []byte {
	body := AppendErrorBody(nil, errType, message)
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, fasthttp.StatusMessage(status)...)
	dst = append(dst, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(body)), 10)
	if len(requestID) > 0 {
		dst = append(dst, "\r\nX-Request-Id: "...)
		dst = append(dst, requestID...)
	}
	dst = append(dst, "\r\n"...)
	dst = append(dst, extra...)
	dst = append(dst, "Connection: close\r\n\r\n"...)
	return append(dst, body...)
}

// RateLimit is a request's rate-limit decision as its answer's
// X-RateLimit-* headers give it (handlers set them), kept by its stream
// (Request.Rate) for the relay's own answer to a stream cut before its
// body (answerCut): the request took its token all the same. Limit 0: no
// decision, no headers.
type RateLimit struct {
	Limit, Remaining int64
	Reset            int64 // seconds until the bucket is full again, rounded up
}

// appendLines appends the headers as header lines, none without a limit.
func (r RateLimit) appendLines(dst []byte) []byte {
	if r.Limit <= 0 {
		return dst
	}
	dst = strconv.AppendInt(append(dst, "X-RateLimit-Limit: "...), r.Limit, 10)
	dst = strconv.AppendInt(append(dst, "\r\nX-RateLimit-Remaining: "...), r.Remaining, 10)
	dst = strconv.AppendInt(append(dst, "\r\nX-RateLimit-Reset: "...), r.Reset, 10)
	return append(dst, "\r\n"...)
}
