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
// with the request's id when requestID is set.
func AppendErrorResponse(dst []byte, status int, errType, message string, requestID []byte) []byte {
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
	dst = append(dst, "\r\nConnection: close\r\n\r\n"...)
	return append(dst, body...)
}
