package upstream

// A WebSocket handshake's path goes upstream by the rule of an HTTP
// request's (Open, buildRequest): the client's path as it sent it, checked
// by clientPath (a dot segment is refused, 400 bad_request; a route path
// not spelled out literally sends the routed path instead), written by the
// same encoder (appendRawPath, or appendEscapedPath for the routed path).
// One difference: the handshake goes through a URL the WebSocket dialer
// parses, which cannot hold a '%' that begins no escape ("%zz", which an
// HTTP request line carries as it came), so such a path goes as routed.

// checkWSPath checks the path of the client's handshake in as Open checks
// an HTTP request's (clientPath) and keeps the client's path in in for
// appendWSPath (not one with a stray '%': see above); the error is
// ErrDotSegment.
func (r *Route) checkWSPath(in *Request) error {
	raw, err := r.clientPath(in)
	if err != nil {
		return err
	}
	if !wellEscaped(raw) {
		raw = nil
	}
	in.raw = raw
	return nil
}

// wellEscaped reports whether every '%' in p begins an escape of two hex
// digits.
func wellEscaped(p []byte) bool {
	for i, c := range p {
		if c != '%' {
			continue
		}
		if i+2 >= len(p) {
			return false
		}
		if _, ok := unhex2(p[i+1], p[i+2]); !ok {
			return false
		}
	}
	return true
}

// appendWSPath appends the path of in's upstream handshake to b, after the
// upstream URL's base path: the client's path as checkWSPath kept it, or
// the routed path escaped again, as buildRequest writes an HTTP request's.
func appendWSPath(b []byte, in *Request) []byte {
	if in.raw != nil {
		return appendRawPath(b, in.raw)
	}
	return appendEscapedPath(b, in.Path)
}
