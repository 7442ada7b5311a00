package handlers

import "testing"

func BenchmarkRequestCredential(b *testing.B) {
	for _, bc := range []struct{ name, fields string }{
		{"bearer", "Authorization: Bearer sk-1\r\nContent-Type: application/json\r\nUser-Agent: x\r\n"},
		{"none", "Content-Type: application/json\r\nUser-Agent: x\r\nAccept: */*\r\n"},
		{"subprotocol", "Sec-WebSocket-Protocol: realtime, openai-insecure-api-key.sk-2\r\nUser-Agent: x\r\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := requestHeader(b, bc.fields)
			b.ReportAllocs()
			for b.Loop() {
				_ = requestCredential(h, nil)
			}
		})
	}
}
