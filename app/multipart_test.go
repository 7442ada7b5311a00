package app

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"sync"
	"testing"
)

// audioRelay starts an upstream that keeps the last request body it got
// (last) and answers a transcription, and a relay with an audio route to
// it; routeExtra is more YAML for the route (indented four spaces).
func audioRelay(t *testing.T, routeExtra string) (r *relay, last func() []byte) {
	t.Helper()
	var mu sync.Mutex
	var got []byte
	r = relayTo(t, "audio", "/v1/audio", routeExtra, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = b
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"text":"hello"}`))
	}, nil)
	return r, func() []byte {
		mu.Lock()
		defer mu.Unlock()
		return got
	}
}

// upload posts a multipart transcription request, as the SDKs send it (the
// file first, then the model field), with the file's bytes audio; it
// returns the body sent and the row stored for it.
func upload(t *testing.T, r *relay, audio []byte) (sent []byte, row row) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("file", "a.wav")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fw.Write(audio)
	_ = mw.WriteField("model", "whisper-1")
	_ = mw.WriteField("language", "en")
	_ = mw.Close()
	sent = body.Bytes()
	req, err := http.NewRequest("POST", r.base+"/v1/audio/transcriptions", bytes.NewReader(sent))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+relayKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return sent, r.rows.wait(t, resp.Header.Get("X-Request-Id"))
}

// TestMultipartPassedThrough: a multipart upload (an audio file for
// /v1/audio/transcriptions, as the SDKs send it: the file first, then the
// fields) reaches the upstream byte for byte and is stored whole, its
// model field the row's model. Parsed on arrival, it went upstream
// rebuilt (the fields first, the file last, another boundary layout) and
// its row's request_body was empty.
func TestMultipartPassedThrough(t *testing.T) {
	r, last := audioRelay(t, "")
	audio := make([]byte, 20_000)
	for i := range audio {
		audio[i] = byte(i * 7)
	}
	sent, row := upload(t, r, audio)
	if up := last(); !bytes.Equal(up, sent) {
		t.Errorf("upstream got %d bytes, %d sent (first difference at %d)", len(up), len(sent), firstDiff(string(up), string(sent)))
	}
	if !bytes.Equal([]byte(row.ReqBody), sent) || row.Truncated {
		t.Errorf("row's request body %d bytes (truncated %v), %d sent", len(row.ReqBody), row.Truncated, len(sent))
	}
	if row.Model != "whisper-1" {
		t.Errorf("row's model %q; want the form's whisper-1", row.Model)
	}
}

// TestMultipartModelPastCapture: an upload larger than the route's capture
// limit keeps a prefix of its body, without the model field the SDKs send
// after the file: the model is read from the whole body all the same.
func TestMultipartModelPastCapture(t *testing.T) {
	r, _ := audioRelay(t, "    max_capture_bytes: 10000\n")
	_, row := upload(t, r, bytes.Repeat([]byte{0x52, 0x49}, 10_000))
	if !row.Truncated || len(row.ReqBody) != 10000 || row.Model != "whisper-1" {
		t.Fatalf("row: truncated %v, %d bytes, model %q; want a 10000-byte prefix and the model whisper-1", row.Truncated, len(row.ReqBody), row.Model)
	}
}
