package app

import (
	"bytes"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// TestMultipartPassedThrough: a multipart upload (an audio file for
// /v1/audio/transcriptions, as the SDKs send it: the file first, then the
// fields) reaches the upstream byte for byte and is stored whole. Parsed
// on arrival, it went upstream rebuilt (the fields first, the file last,
// another boundary layout) and its row's request_body was empty.
func TestMultipartPassedThrough(t *testing.T) {
	var mu sync.Mutex
	var got []byte
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = b
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"text":"hello"}`))
	})}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	r := startRelayYAML(t, func(yaml string) string {
		return strings.Replace(yaml, "routes:\n", `routes:
  - name: audio
    path: /v1/audio/*
    upstream: http://`+ln.Addr().String()+`
    auth_env: TEST_PROVIDER_KEY
`, 1)
	}, nil)

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("file", "a.wav")
	if err != nil {
		t.Fatal(err)
	}
	audio := make([]byte, 20_000)
	for i := range audio {
		audio[i] = byte(i * 7)
	}
	_, _ = fw.Write(audio)
	_ = mw.WriteField("model", "whisper-1")
	_ = mw.WriteField("language", "en")
	_ = mw.Close()
	sent := body.Bytes()

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
	mu.Lock()
	up := got
	mu.Unlock()
	if !bytes.Equal(up, sent) {
		t.Errorf("upstream got %d bytes, %d sent; equal %v (first difference at %d)", len(up), len(sent), bytes.Equal(up, sent), firstDiff(string(up), string(sent)))
	}
	row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"text":"hello"}`))
	})}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	r := startRelayYAML(t, func(yaml string) string {
		return strings.Replace(yaml, "routes:\n", `routes:
  - name: audio
    path: /v1/audio/*
    upstream: http://`+ln.Addr().String()+`
    auth_env: TEST_PROVIDER_KEY
    max_capture_bytes: 10000
`, 1)
	}, nil)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "a.wav")
	_, _ = fw.Write(bytes.Repeat([]byte{0x52, 0x49}, 10_000))
	_ = mw.WriteField("model", "whisper-1")
	_ = mw.Close()
	req, _ := http.NewRequest("POST", r.base+"/v1/audio/transcriptions", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+relayKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	if !row.Truncated || len(row.ReqBody) != 10000 || row.Model != "whisper-1" {
		t.Fatalf("row: truncated %v, %d bytes, model %q; want a 10000-byte prefix and the model whisper-1", row.Truncated, len(row.ReqBody), row.Model)
	}
}
