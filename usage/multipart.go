package usage

import "bytes"

// maxFormModel bounds a multipart "model" field's value: longer is no model
// name.
const maxFormModel = 256

// FormModel returns the value of the "model" field of a multipart/form-data
// body (an upload to /v1/audio/transcriptions or /v1/images/edits), or ""
// when body is not one or has no such field. The boundary is taken from
// the body's first line ("--BOUNDARY"), so the request's Content-Type is not
// needed; parts are found by their delimiters, so bytes inside a file part
// are never read as a field. It does not allocate but for the result.
func FormModel(body []byte) string {
	if !bytes.HasPrefix(body, []byte("--")) {
		return ""
	}
	eol := bytes.Index(body, []byte("\r\n"))
	if eol < 3 || eol > 72 { // RFC 2046: a boundary is 1 to 70 characters
		return ""
	}
	var delim [76]byte
	d := append(append(delim[:0], "\r\n"...), body[:eol]...)
	for part := body[eol+2:]; ; {
		end := bytes.Index(part, d)
		if end < 0 {
			return ""
		}
		head, value, ok := bytes.Cut(part[:end], []byte("\r\n\r\n"))
		if ok && formFieldNamed(head, "model") && len(value) <= maxFormModel {
			return string(value)
		}
		part = part[end+len(d):]
		if bytes.HasPrefix(part, []byte("--")) { // the close delimiter
			return ""
		}
		if nl := bytes.Index(part, []byte("\r\n")); nl >= 0 {
			part = part[nl+2:]
		} else {
			return ""
		}
	}
}

// formFieldNamed reports whether a part's header block has a
// Content-Disposition naming the field name (and no file name).
func formFieldNamed(head []byte, name string) bool {
	for line := range bytes.SplitSeq(head, []byte("\r\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || !bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Disposition")) {
			continue
		}
		if bytes.Contains(v, []byte("filename=")) {
			return false
		}
		return bytes.Contains(v, []byte(`name="`+name+`"`))
	}
	return false
}
