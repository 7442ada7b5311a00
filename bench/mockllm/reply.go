package mockllm

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Error types used in JSON error bodies.
const (
	errTypeNotFound = "not_found"
	errTypeInvalid  = "invalid_request_error"
	errTypeAuth     = "authentication_error"
	errTypeTooLarge = "request_too_large"
	errTypeMock     = "mock_error"
)

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// writeError answers with status and {"error":{"type":...,"message":...}}.
func writeError(w http.ResponseWriter, status int, typ, msg string) {
	writeJSON(w, status, errorBody{Error: errorDetail{Type: typ, Message: msg}})
}

func writeMockStatus(w http.ResponseWriter, status int) {
	writeError(w, status, errTypeMock, "mock status "+strconv.Itoa(status))
}

// writeJSON answers with status and v marshalled, with a Content-Length.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic("BUG: mockllm: marshal reply: " + err.Error())
	}
	writeJSONBytes(w, status, b)
}

func writeJSONBytes(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
