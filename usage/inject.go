package usage

var includeUsage = []byte(`"stream_options":{"include_usage":true}`)

// InjectIncludeUsage appends body to dst with
// "stream_options":{"include_usage":true} inserted just after the opening
// brace, when body is a JSON object whose top-level "stream" is true and which
// has no top-level "stream_options". Otherwise (not streaming, options already
// present even without include_usage, malformed) it returns dst unchanged and
// false. The whole top level is walked first: a body whose members,
// commas, closing brace or anything but white space after that brace are
// malformed is never rewritten. Nested values are skipped by bracket depth
// and scalars taken as they are, not validated: a body malformed only
// inside a value may be rewritten, as malformed as it was.
func InjectIncludeUsage(dst, body []byte) ([]byte, bool) {
	o, ok := openObj(body)
	if !ok {
		return dst, false
	}
	stream := false
	for {
		k, v, more := o.next()
		if !more {
			break
		}
		switch string(k) {
		case "stream":
			stream = string(v) == "true"
		case "stream_options":
			return dst, false
		}
	}
	if o.err || !stream || skipSpace(body, o.i) != len(body) {
		return dst, false // malformed, not streaming, or bytes after the object
	}
	open := skipSpace(body, 0) + 1
	dst = append(dst, body[:open]...)
	dst = append(dst, includeUsage...)
	dst = append(dst, ',') // stream is a member, so the object is non-empty
	return append(dst, body[open:]...), true
}
