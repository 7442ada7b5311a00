package usage

import (
	"bytes"
	"mime/multipart"
	"testing"
)

func TestFormModel(t *testing.T) {
	form := func(fields ...[2]string) []byte {
		var b bytes.Buffer
		w := multipart.NewWriter(&b)
		fw, _ := w.CreateFormFile("file", "a.wav")
		// A file whose bytes spell a model field: never read as one.
		_, _ = fw.Write([]byte("\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nfake\r\n"))
		for _, f := range fields {
			_ = w.WriteField(f[0], f[1])
		}
		_ = w.Close()
		return b.Bytes()
	}
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"model after the file", form([2]string{"language", "en"}, [2]string{"model", "whisper-1"}), "whisper-1"},
		{"no model field", form([2]string{"language", "en"}), ""},
		{"JSON", []byte(`{"model":"gpt-x"}`), ""},
		{"cut before the model's end", form([2]string{"model", "whisper-1"})[:200], ""},
		{"not multipart", []byte("--\r\nx"), ""},
	} {
		if got := FormModel(tc.body); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := RequestModel("/v1/audio/transcriptions", form([2]string{"model", "gpt-4o-transcribe"})); got != "gpt-4o-transcribe" {
		t.Errorf("RequestModel of an upload: %q", got)
	}
}
