package usage

// maxModelScan bounds the bytes Model walks: "model" is nearly always among
// the first members, and a request body can be megabytes of messages.
const maxModelScan = 1 << 20

// Model returns the top-level "model" string of the JSON request body, or ""
// when absent or when the body is not a JSON object. Nested values (messages
// and their content) are skipped whole, so a "model" key inside them is never
// returned. String escapes are left as they are. The scan stops after
// maxModelScan bytes.
func Model(body []byte) string {
	if len(body) > maxModelScan {
		body = body[:maxModelScan]
	}
	o, ok := openObj(body)
	if !ok {
		return ""
	}
	for {
		k, v, more := o.next()
		if !more {
			return ""
		}
		if string(k) == "model" && len(v) >= 2 && v[0] == '"' {
			return string(v[1 : len(v)-1])
		}
	}
}
