package handlers

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// TestWSModel: a session's model is its ?model= (OpenAI Realtime) or
// ?model_id= (ElevenLabs).
func TestWSModel(t *testing.T) {
	for q, want := range map[string]string{
		"model=gpt-realtime&x=1": "gpt-realtime",
		"model_id=eleven_flash":  "eleven_flash",
		"voice=a":                "",
	} {
		var a fasthttp.Args
		a.Parse(q)
		if got := wsModel(&a); got != want {
			t.Errorf("%s: %q, want %q", q, got, want)
		}
	}
}

// TestWSSessionsShut: once closeAll ran (Drain), no session is taken.
func TestWSSessionsShut(t *testing.T) {
	var s wsSessions
	s.closeAll()
	if s.add(nil) {
		t.Fatal("a session was taken after closeAll")
	}
}
