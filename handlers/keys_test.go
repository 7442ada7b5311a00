package handlers

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

func TestKeysLookup(t *testing.T) {
	sum := sha256.Sum256([]byte("sk-hashed"))
	ks, err := NewKeys([]KeyOptions{
		{Key: "sk-plain", Tenant: "a", Tenants: []string{"b"}},
		{KeySHA256: strings.ToUpper(hex.EncodeToString(sum[:])), Tenant: "c"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		secret, tenant string
	}{
		{"sk-plain", "a"}, {"sk-hashed", "c"}, {"sk-nope", ""}, {"", ""}, {"sk-plai", ""},
	}
	for _, tt := range tests {
		k := ks.Lookup([]byte(tt.secret))
		got := ""
		if k != nil {
			got = k.Tenant
		}
		if got != tt.tenant {
			t.Errorf("Lookup(%q) tenant %q, want %q", tt.secret, got, tt.tenant)
		}
	}
	k := ks.Lookup([]byte("sk-plain"))
	if !k.Allows([]byte("a")) || !k.Allows([]byte("b")) || k.Allows([]byte("c")) || k.tenant([]byte("b")) != "b" {
		t.Error("tenant list not honoured")
	}
	if len(k.ID) != 12 || strings.Contains(k.ID, "plain") || ks.IDAt(0) != k.ID {
		t.Errorf("key id %q", k.ID)
	}
}

func TestNewKeysErrors(t *testing.T) {
	for _, o := range []KeyOptions{{Tenant: "a"}, {Key: "k"}, {KeySHA256: strings.Repeat("z", 64), Tenant: "a"}} {
		if _, err := NewKeys([]KeyOptions{o}); err == nil {
			t.Errorf("NewKeys(%+v): no error", o)
		}
	}
}

func TestCredential(t *testing.T) {
	tests := []struct{ auth, apiKey, googKey, query, want string }{
		{"Bearer sk-1", "", "", "", "sk-1"},
		{"bearer  sk-2 ", "", "", "", "sk-2"},
		{"", "sk-3", "", "", "sk-3"},
		{"Basic abc", "sk-4", "", "", "sk-4"},
		{"Bearer sk-5", "sk-6", "", "", "sk-5"},
		{"", "", "", "", ""},
		{"", "", "sk-7", "key=other", "sk-7"},
		{"", "sk-8", "sk-9", "", "sk-8"},
		{"", "", "", "alt=sse&key=sk-10", "sk-10"},
		{"", "", "", "key=sk%2D11&alt=sse", "sk-11"},
		{"", "", "", "keys=sk-12&akey=x", ""},
		{"", "", "", "key=%zz", ""},
		{"Bearer sk-13", "", "", "key=sk-14", "sk-13"},
	}
	for _, tt := range tests {
		got := string(credential([]byte(tt.auth), []byte(tt.apiKey), []byte(tt.googKey), []byte(tt.query)))
		if got != tt.want {
			t.Errorf("credential(%q, %q, %q, %q) = %q, want %q", tt.auth, tt.apiKey, tt.googKey, tt.query, got, tt.want)
		}
	}
}

// TestSubprotocolKey: a relay key is taken from the first
// "openai-insecure-api-key.<key>" entry of a Sec-WebSocket-Protocol list.
func TestSubprotocolKey(t *testing.T) {
	tests := []struct{ give, want string }{
		{"realtime, openai-insecure-api-key.sk-1", "sk-1"},
		{"openai-insecure-api-key.sk-2,realtime", "sk-2"},
		{"realtime , OpenAI-Insecure-Api-Key.sk-3 , openai-beta.realtime-v1", "sk-3"},
		{"realtime, openai-insecure-api-key.sk-4, openai-insecure-api-key.sk-5", "sk-4"},
		{"realtime", ""},
		{"openai-insecure-api-key", ""},
		{"openai-insecure-api-key.", ""},
		{"x-openai-insecure-api-key.sk-6", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := string(subprotocolKey([]byte(tt.give))); got != tt.want {
			t.Errorf("subprotocolKey(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

// TestRequestCredential: the subprotocol entry is the last resort, after
// every other place a key may come in.
func TestRequestCredential(t *testing.T) {
	tests := []struct{ name, header, query, want string }{
		{"bearer first", "Authorization: Bearer sk-1\r\nSec-WebSocket-Protocol: realtime, openai-insecure-api-key.sk-2\r\n", "", "sk-1"},
		{"x-api-key first", "X-Api-Key: sk-3\r\nSec-WebSocket-Protocol: openai-insecure-api-key.sk-2\r\n", "", "sk-3"},
		{"x-goog-api-key first", "X-Goog-Api-Key: sk-4\r\nSec-WebSocket-Protocol: openai-insecure-api-key.sk-2\r\n", "", "sk-4"},
		{"query first", "Sec-WebSocket-Protocol: openai-insecure-api-key.sk-2\r\n", "key=sk-5", "sk-5"},
		{"subprotocol", "Sec-WebSocket-Protocol: realtime, openai-insecure-api-key.sk-2\r\n", "model=m", "sk-2"},
		{"second protocol line", "Sec-WebSocket-Protocol: realtime\r\nSec-WebSocket-Protocol: openai-insecure-api-key.sk-6\r\n", "", "sk-6"},
		{"basic, no key entry", "Authorization: Basic abc\r\nSec-WebSocket-Protocol: realtime\r\n", "", ""},
		{"nothing", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := requestHeader(t, tt.header)
			if got := string(requestCredential(h, []byte(tt.query))); got != tt.want {
				t.Errorf("requestCredential = %q, want %q", got, tt.want)
			}
		})
	}
}

// requestHeader parses a GET's header fields (each line ending in CRLF).
func requestHeader(t testing.TB, fields string) *fasthttp.RequestHeader {
	t.Helper()
	var h fasthttp.RequestHeader
	if err := h.Read(bufio.NewReader(strings.NewReader("GET /v1/realtime HTTP/1.1\r\nHost: a\r\n" + fields + "\r\n"))); err != nil {
		t.Fatal(err)
	}
	return &h
}

func TestRequestIDsSortByTimeAndDiffer(t *testing.T) {
	var a, b [record.IDLen]byte
	now := time.Now()
	newRequestID(&a, now)
	newRequestID(&b, now.Add(time.Millisecond))
	if string(a[:]) >= string(b[:]) {
		t.Errorf("ids do not sort by time: %s %s", a, b)
	}
	seen := map[string]bool{}
	for i := 0; i < 10000; i++ {
		newRequestID(&a, now)
		if seen[string(a[:])] {
			t.Fatal("duplicate request id")
		}
		seen[string(a[:])] = true
		if _, err := hex.DecodeString(string(a[:])); err != nil {
			t.Fatalf("id %s is not hex", a)
		}
	}
}
