package usage

// ContentScanLimit bounds the bytes scanned for the first token; a stream
// with no content in its first ContentScanLimit bytes gets no TTFT.
const ContentScanLimit = 1 << 20

// overlap is how many bytes of the previous chunk are kept so that a key
// split across two reads is still found: the longest key, the colon, some
// white space, the quote and one character.
const overlap = 32

// ContentScanner finds the first generated content in a response, chunk by
// chunk as the bytes arrive, without allocating: the first-token clock.
// The relay runs it on every relayed read; `relay reparse` runs it
// (through FirstTokenChunk) on the stored chunks, which are those reads.
// The zero value scans an SSE or JSON stream with the Generic rules.
//
// A response whose first byte other than white space opens a JSON value is
// a non-streamed answer, one JSON body; anything else is an SSE stream. The
// rules of an API whose response object carries its text under other keys
// than its events do (OpenAI Responses) follow that shape.
type ContentScanner struct {
	api     API
	raw     bool // any byte is the first token (audio)
	off     bool // an error status: there is no first token
	done    bool
	shape   shape
	seam    seam // the bytes a key split between two reads began in
	scanned int
}

// Start readies s for a new response of api with the given status: a raw
// (binary) response's first byte is its first token, an error status
// (400 and up) has none.
func (s *ContentScanner) Start(api API, raw bool, status int) {
	*s = ContentScanner{api: api, raw: raw, off: status >= 400}
}

// Stop makes Scan report false from now on: a response that has no first
// token (a read of stored objects: StoredRead).
func (s *ContentScanner) Stop() { s.off = true }

// Scan reports whether b, the next bytes of the response, completes the
// first token. After it did once, Scan reports false.
func (s *ContentScanner) Scan(b []byte) bool {
	if s.done || s.off || len(b) == 0 {
		return false
	}
	if s.shape == shapeUnknown {
		s.shape = shapeOf(b)
	}
	if s.raw || s.scan(rulesFor(s.api).contentKeys(s.shape == shapeBody), b) {
		s.done = true
		return true
	}
	return false
}

func (s *ContentScanner) scan(keys []contentKey, b []byte) bool {
	if s.scanned >= ContentScanLimit {
		return false
	}
	s.scanned += len(b)
	var buf [2 * seamKeep]byte
	j, covered := s.seam.join(&buf, b)
	if j != nil && hasContent(keys, j) || covered < len(b) && hasContent(keys, b) {
		return true
	}
	s.seam.keepLast(b, overlap)
	return false
}

// HasContent reports whether b, a whole response or its start, holds
// generated content by api's rules for its shape (SSE stream or one JSON
// body).
func HasContent(api API, b []byte) bool {
	return hasContent(rulesFor(api).contentKeys(shapeOf(b) == shapeBody), b)
}

// hasContent reports whether b holds a content key followed by the value
// kind it needs. Occurrences may overlap (`"text"text":"a`, not JSON but
// possible in a broken stream): the search goes on one byte after each
// match, so that a whole scan finds every key a scan of b in pieces (Scan,
// which sees parts of b) can find.
func hasContent(keys []contentKey, b []byte) bool {
	for _, k := range keys {
		rest := b
		for {
			i := indexKey(rest, k.key)
			if i < 0 {
				break
			}
			if valueFollows(rest[i+len(k.key):], k.kind) {
				return true
			}
			rest = rest[i+1:]
		}
	}
	return false
}

// valueFollows reports whether b starts with `:` and a value of kind
// (white space allowed around the colon): a string of one character at
// least, or an object.
func valueFollows(b []byte, kind valueKind) bool {
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	if i >= len(b) || b[i] != ':' {
		return false
	}
	i++
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	if kind == objectValue {
		return i < len(b) && b[i] == '{'
	}
	return i+1 < len(b) && b[i] == '"' && b[i+1] != '"'
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// FirstTokenChunk returns the index of the chunk that completed the first
// token of a stored response, or -1: the stored chunks are the relayed
// reads, so this is the read whose arrival the relay stamped as TTFT. n is
// the number of chunks (arrival times); data and ends hold their bytes as
// in record.Chunks (chunk i is data[ends[i-1]:ends[i]]), and may be empty
// when only the times were kept: then only a raw response has an answer.
func FirstTokenChunk(api API, raw bool, status int, n int, data []byte, ends []uint32) int {
	var s ContentScanner
	s.Start(api, raw, status)
	if s.off || n == 0 {
		return -1
	}
	if raw {
		return 0 // the first read is never empty
	}
	start := uint32(0)
	for i := 0; i < n && i < len(ends); i++ {
		end := ends[i]
		if end < start || int(end) > len(data) {
			return -1
		}
		if s.Scan(data[start:end]) {
			return i
		}
		start = end
	}
	return -1
}
