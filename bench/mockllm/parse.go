package mockllm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// parseRequest reads the fields of apiRequest from the top level of the
// JSON object body and steps over every other value without decoding it.
// encoding/json spent 7.3 ms of CPU on a 1 MiB body (the benchmark's large
// bodies are one long message): the mock, on the cores the proxies share,
// then took nine tenths of the machine and the proxies' own cost hardly
// showed. Skipping a long string is a search for its closing quote. The
// fields the mock reads are decoded by encoding/json, so their type errors
// are its errors; a value stepped over is only checked to be closed.
func parseRequest(body []byte, req *apiRequest) error {
	i := skipSpace(body, 0)
	if i == len(body) || body[i] != '{' {
		return errors.New("not a JSON object")
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return trailing(body, i+1)
	}
	for {
		if i == len(body) || body[i] != '"' {
			return fmt.Errorf("offset %d: want a member name", i)
		}
		end, err := stringEnd(body, i)
		if err != nil {
			return err
		}
		var name string
		if err := json.Unmarshal(body[i:end], &name); err != nil {
			return err
		}
		i = skipSpace(body, end)
		if i == len(body) || body[i] != ':' {
			return fmt.Errorf("offset %d: want ':'", i)
		}
		start := skipSpace(body, i+1)
		if end, err = valueEnd(body, start); err != nil {
			return err
		}
		if field := req.field(name); field != nil {
			if err := json.Unmarshal(body[start:end], field); err != nil {
				return err
			}
		}
		i = skipSpace(body, end)
		switch {
		case i < len(body) && body[i] == ',':
			i = skipSpace(body, i+1)
		case i < len(body) && body[i] == '}':
			return trailing(body, i+1)
		default:
			return fmt.Errorf("offset %d: want ',' or '}'", i)
		}
	}
}

// field returns where the value of the top-level member name goes, nil
// for a member the mock does not read. Names match as encoding/json
// matches them (case-insensitively).
func (r *apiRequest) field(name string) any {
	switch {
	case equalFold(name, "model"):
		return &r.Model
	case equalFold(name, "stream"):
		return &r.Stream
	case equalFold(name, "stream_options"):
		return &r.StreamOptions
	case equalFold(name, "response_format"):
		return &r.ResponseFormat
	}
	return nil
}

func equalFold(a, b string) bool { return len(a) == len(b) && bytes.EqualFold([]byte(a), []byte(b)) }

// trailing checks that only white space follows the object ending at i.
func trailing(body []byte, i int) error {
	if i = skipSpace(body, i); i != len(body) {
		return fmt.Errorf("offset %d: data after the object", i)
	}
	return nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the offset after the string that starts with the quote
// at b[i].
func stringEnd(b []byte, i int) (int, error) {
	for j := i + 1; ; {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return 0, fmt.Errorf("offset %d: string not closed", i)
		}
		j += k
		escapes := 0
		for e := j - 1; e > i && b[e] == '\\'; e-- {
			escapes++
		}
		j++
		if escapes%2 == 0 {
			return j, nil
		}
	}
}

// valueEnd returns the offset after the JSON value that starts at b[i]:
// a string, an object or array (its nesting closed, strings inside
// stepped over), or a number or literal (up to the next delimiter).
func valueEnd(b []byte, i int) (int, error) {
	if i == len(b) {
		return 0, errors.New("unexpected end of JSON input")
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := stringEnd(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, fmt.Errorf("offset %d: value not closed", i)
	case ',', '}', ']', ':':
		return 0, fmt.Errorf("offset %d: want a value", i)
	}
	j := i
	for j < len(b) && bytes.IndexByte([]byte(",}] \t\r\n"), b[j]) < 0 {
		j++
	}
	return j, nil
}
