package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// loadTargets reads a vegeta targets file (http format). Relative @body
// paths are taken from root; base, when set, replaces each target's scheme
// and host, and auth its Authorization header, so one file serves every path
// under test (direct needs the provider's key, the proxies the relay's).
func loadTargets(file, root, base, auth string) ([]vegeta.Target, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, l := range strings.Split(string(src), "\n") {
		if t := strings.TrimSpace(l); strings.HasPrefix(t, "@") && !filepath.IsAbs(t[1:]) {
			l = "@" + filepath.Join(root, t[1:])
		}
		lines = append(lines, l)
	}
	tgts, err := vegeta.ReadAllTargets(vegeta.NewHTTPTargeter(strings.NewReader(strings.Join(lines, "\n")), nil, nil))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(tgts) == 0 {
		return nil, fmt.Errorf("%s: no targets", file)
	}
	var b *url.URL
	if base != "" {
		if b, err = url.Parse(base); err != nil || b.Host == "" {
			return nil, fmt.Errorf("-base %q: want scheme://host:port", base)
		}
	}
	for i := range tgts {
		t := &tgts[i]
		if b != nil {
			u, err := url.Parse(t.URL)
			if err != nil {
				return nil, err
			}
			u.Scheme, u.Host = b.Scheme, b.Host
			t.URL = u.String()
		}
		if auth != "" {
			t.Header.Del("Authorization")
			t.Header["Authorization"] = []string{auth}
		}
	}
	return tgts, nil
}

// targetName names a target for the report: its method and path, and
// "stream" when its JSON body asks for a streamed answer.
func targetName(t vegeta.Target) string {
	name := t.Method + " " + t.URL
	if u, err := url.Parse(t.URL); err == nil {
		name = t.Method + " " + u.Path
	}
	var body struct {
		Stream bool `json:"stream"`
	}
	if len(t.Body) > 0 && json.Unmarshal(bytes.TrimSpace(t.Body), &body) == nil && body.Stream {
		name += " stream"
	}
	return name
}
