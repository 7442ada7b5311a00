//go:build !race

package handlers

import "testing"

// requestCredential runs on every request: finding the key, wherever it
// came, and finding none must not allocate.
func TestRequestCredentialAllocations(t *testing.T) {
	for _, fields := range []string{
		"Authorization: Bearer sk-1\r\nContent-Type: application/json\r\n",
		"X-Api-Key: sk-1\r\nSec-WebSocket-Protocol: realtime, openai-insecure-api-key.sk-2\r\n",
		"Content-Type: application/json\r\nUser-Agent: x\r\n",
		"Sec-WebSocket-Protocol: realtime, openai-insecure-api-key.sk-2\r\n",
	} {
		h := requestHeader(t, fields)
		if n := testing.AllocsPerRun(100, func() { _ = requestCredential(h, nil) }); n != 0 {
			t.Errorf("requestCredential with %q: %v allocations", fields, n)
		}
	}
}
