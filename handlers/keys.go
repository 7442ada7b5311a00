package handlers

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/url"

	"github.com/stream-relay/stream-relay/upstream"
	"github.com/valyala/fasthttp"
)

// KeyOptions is one configured relay key: the key itself or its SHA-256.
type KeyOptions struct {
	Key       string   // plain key; hashed at start-up and not kept
	KeySHA256 string   // or its SHA-256, 64 hex characters
	Tenant    string   // tenant the key belongs to
	Tenants   []string // other tenants it may name in X-Tenant-ID
}

// Key is a relay key as kept in memory: only its hash.
type Key struct {
	hash    [32]byte
	ID      string // short hash for rows and logs: first 12 hex characters of the SHA-256
	Tenant  string
	tenants map[string]string // allowed X-Tenant-ID values, each mapped to itself
}

// Keys looks relay keys up by the SHA-256 of the presented key. Only hashes
// are kept, the map lookup reveals nothing usable about a key, and the final
// comparison is constant-time.
type Keys struct {
	byHash map[[32]byte]*Key
	ids    []string // key ids in configuration order
}

// NewKeys hashes and indexes the configured keys.
func NewKeys(opts []KeyOptions) (*Keys, error) {
	ks := &Keys{byHash: make(map[[32]byte]*Key, len(opts))}
	for i, o := range opts {
		var h [32]byte
		switch {
		case o.Key != "":
			h = sha256.Sum256([]byte(o.Key))
		case len(o.KeySHA256) == 64:
			if _, err := hex.Decode(h[:], []byte(o.KeySHA256)); err != nil {
				return nil, fmt.Errorf("handlers: keys[%d].key_sha256: not hex", i)
			}
		default:
			return nil, fmt.Errorf("handlers: keys[%d]: key or key_sha256 required", i)
		}
		if o.Tenant == "" {
			return nil, fmt.Errorf("handlers: keys[%d].tenant: required", i)
		}
		if _, dup := ks.byHash[h]; dup {
			// One entry would replace the other: the key would act as
			// the later tenant's.
			return nil, fmt.Errorf("handlers: keys[%d]: duplicate key (the same key, or its key_sha256, is listed before)", i)
		}
		k := &Key{hash: h, ID: hex.EncodeToString(h[:6]), Tenant: o.Tenant, tenants: map[string]string{o.Tenant: o.Tenant}}
		for _, t := range o.Tenants {
			k.tenants[t] = t
		}
		ks.byHash[h] = k
		ks.ids = append(ks.ids, k.ID)
	}
	return ks, nil
}

// IDAt returns the key id of the i-th configured key.
func (ks *Keys) IDAt(i int) string { return ks.ids[i] }

// Len returns the number of keys.
func (ks *Keys) Len() int { return len(ks.byHash) }

// Lookup returns the key matching the presented secret, or nil.
func (ks *Keys) Lookup(secret []byte) *Key {
	if len(secret) == 0 {
		return nil
	}
	h := sha256.Sum256(secret)
	k := ks.byHash[h]
	if k == nil || subtle.ConstantTimeCompare(h[:], k.hash[:]) != 1 {
		return nil
	}
	return k
}

// Allows reports whether the key may act for tenant (X-Tenant-ID).
func (k *Key) Allows(tenant []byte) bool {
	_, ok := k.tenants[string(tenant)]
	return ok
}

// tenant returns the configured string equal to t, so that a record holds
// no copy of request memory.
func (k *Key) tenant(t []byte) string { return k.tenants[string(t)] }

var bearer = []byte("bearer ")

// credential returns the relay key a client sent: from "Authorization:
// Bearer <key>", failing that from "x-api-key" (Anthropic's clients), from
// "x-goog-api-key" (Gemini's), and failing those from the query parameter
// "key" (Google's REST form, which the relay never forwards:
// upstream.RelayKeyParam).
func credential(authorization, apiKey, googKey, query []byte) []byte {
	if len(authorization) > len(bearer) && bytes.EqualFold(authorization[:len(bearer)], bearer) {
		return bytes.TrimSpace(authorization[len(bearer):])
	}
	if k := bytes.TrimSpace(apiKey); len(k) > 0 {
		return k
	}
	if k := bytes.TrimSpace(googKey); len(k) > 0 {
		return k
	}
	return queryValue(query, upstream.RelayKeyParam)
}

// requestCredential returns the relay key the request with header hdr and
// raw query string query carries: credential's, and failing all of those,
// as a WebSocket subprotocol entry (subprotocolKey), the one place a
// browser can put a key on a WebSocket handshake. Requests with a key
// elsewhere, and those with no Sec-WebSocket-Protocol, cost no allocation.
func requestCredential(hdr *fasthttp.RequestHeader, query []byte) []byte {
	if k := credential(hdr.Peek(fasthttp.HeaderAuthorization), hdr.PeekBytes(hdrAPIKey), hdr.PeekBytes(hdrGoogAPIKey), query); len(k) > 0 {
		return k
	}
	for k, v := range hdr.All() {
		if bytes.EqualFold(k, hdrWSProto) {
			if key := subprotocolKey(v); len(key) > 0 {
				return key
			}
		}
	}
	return nil
}

// subprotocolKey returns the key of the first "openai-insecure-api-key.<key>"
// entry (upstream.KeySubprotocol) of the comma-separated subprotocol list
// protocols, or nil. upstream.Route.DialWS never forwards such an entry.
func subprotocolKey(protocols []byte) []byte {
	for len(protocols) > 0 {
		p := protocols
		if i := bytes.IndexByte(protocols, ','); i >= 0 {
			p, protocols = protocols[:i], protocols[i+1:]
		} else {
			protocols = nil
		}
		p = bytes.TrimSpace(p)
		if upstream.IsKeySubprotocol(p) {
			return p[len(upstream.KeySubprotocol):]
		}
	}
	return nil
}

// queryValue returns the value of the first parameter called name in the
// raw query string q, unescaped (nil when there is none).
func queryValue(q []byte, name string) []byte {
	for len(q) > 0 {
		pair := q
		if i := bytes.IndexByte(q, '&'); i >= 0 {
			pair, q = q[:i], q[i+1:]
		} else {
			q = nil
		}
		k, v, _ := bytes.Cut(pair, []byte{'='})
		if string(k) != name {
			continue
		}
		if bytes.IndexByte(v, '%') < 0 && bytes.IndexByte(v, '+') < 0 {
			return v
		}
		u, err := url.QueryUnescape(string(v))
		if err != nil {
			return nil
		}
		return []byte(u)
	}
	return nil
}
