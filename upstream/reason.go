package upstream

import "github.com/valyala/fasthttp"

// maxReasonLen bounds the reason phrase an upstream's status line can
// pass to the client (reasonPhrase); a longer one is cut.
const maxReasonLen = 64

// unknownPhrase is fasthttp's reason phrase for a status code it has no
// phrase for ("Unknown Status Code"): 0 is never a known code.
var unknownPhrase = fasthttp.StatusMessage(0)

// knownStatus reports whether fasthttp has a standard reason phrase for
// code.
func knownStatus(code int) bool {
	return fasthttp.StatusMessage(code) != unknownPhrase
}

// setStatus sets the client's response resp to the upstream's status code.
// A code fasthttp knows goes with its standard reason phrase; for one it
// does not (Anthropic's 529 "Overloaded") the upstream's own phrase from
// its status line goes along, made safe by reasonPhrase, instead of
// fasthttp's "Unknown Status Code". It does not allocate once resp's
// buffers have grown. The route's provider key in the phrase (an upstream
// repeating the request in its status line) is masked as in its headers,
// a key cut by the phrase's bound too.
func (r *Route) setStatus(resp *fasthttp.Response, code int, upstreamPhrase []byte) {
	resp.SetStatusCode(code)
	if knownStatus(code) {
		return
	}
	masked := r != nil && len(r.secret) >= minMaskedKey
	if masked {
		upstreamPhrase = r.maskKey(upstreamPhrase) // a copy only when it holds the key
	}
	var buf [maxReasonLen]byte
	if p := reasonPhrase(buf[:0], upstreamPhrase); len(p) > 0 {
		if masked {
			// The bound may have cut a key (as it is, as a query or as
			// JSON writes it): its beginning is masked too, and the
			// phrase cut to the bound again.
			for _, k := range [...]string{r.secret, r.keyQuery, r.keyJSON} {
				if k != "" {
					p = maskCutKey(p, k)
				}
			}
			p = p[:min(len(p), maxReasonLen)]
		}
		resp.Header.SetStatusMessage(p)
	}
}

// reasonPhrase appends to dst (of capacity maxReasonLen at least) the
// upstream's reason phrase p made safe to write in a status line: only
// visible ASCII and spaces (any other byte, CR and LF among them, becomes
// a space), runs of spaces folded into one, no leading or trailing space,
// and at most maxReasonLen bytes. It returns dst unchanged for a phrase
// with nothing visible left.
func reasonPhrase(dst, p []byte) []byte {
	start := len(dst)
	space := false
	for _, c := range p {
		if c <= ' ' || c > '~' {
			space = len(dst) > start
			continue
		}
		if space {
			if len(dst)-start+1 >= maxReasonLen {
				break
			}
			dst = append(dst, ' ')
			space = false
		}
		if len(dst)-start >= maxReasonLen {
			break
		}
		dst = append(dst, c)
	}
	return dst
}
