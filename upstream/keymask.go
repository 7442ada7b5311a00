package upstream

import (
	"bytes"
	"net/http"
	"net/url"
)

// redactedKey replaces the provider key where an upstream's answer repeats
// it.
var redactedKey = []byte("[redacted]")

// minMaskedKey is the shortest provider key masked: a local server's
// placeholder ("EMPTY", "ollama", "none") is no secret, and masking it
// would garble the answer's words.
const minMaskedKey = 8

// minMaskedPrefix is the shortest end of an answer cut inside the key
// (WebSocket refusals are kept to 1 KiB) that is masked as the key's
// beginning.
const minMaskedPrefix = 4

// maskKey returns b with every occurrence of the route's provider key, as
// it is and as it goes in a query (auth_query), replaced by "[redacted]".
// An answer without the key comes back as it was.
func (r *Route) maskKey(b []byte) []byte {
	key := r.ProviderKey
	if len(key) < minMaskedKey {
		return b
	}
	b = replaceAll(b, key)
	if q := url.QueryEscape(key); q != key {
		b = replaceAll(b, q)
	}
	return b
}

// maskKeyCut is maskKey for an answer cut short: an end of b that begins
// the key is masked too.
func (r *Route) maskKeyCut(b []byte) []byte {
	if len(r.ProviderKey) < minMaskedKey {
		return b
	}
	return maskCutKey(r.maskKey(b), r.ProviderKey)
}

// replaceAll replaces every occurrence of key in b by redactedKey.
func replaceAll(b []byte, key string) []byte {
	if !bytes.Contains(b, []byte(key)) {
		return b
	}
	return bytes.ReplaceAll(b, []byte(key), redactedKey)
}

// maskCutKey masks an end of b that is the beginning of key (at least
// minMaskedPrefix bytes of it).
func maskCutKey(b []byte, key string) []byte {
	for n := min(len(key)-1, len(b)); n >= minMaskedPrefix; n-- {
		if string(b[len(b)-n:]) == key[:n] {
			return append(b[:len(b)-n], redactedKey...)
		}
	}
	return b
}

// maskKeyInHeader masks the provider key in every value of h (maskKey).
func (r *Route) maskKeyInHeader(h http.Header) {
	if len(r.ProviderKey) < minMaskedKey {
		return
	}
	for _, vs := range h {
		for i, v := range vs {
			if m := r.maskKey([]byte(v)); string(m) != v {
				vs[i] = string(m)
			}
		}
	}
}
