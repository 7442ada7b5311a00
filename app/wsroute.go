package app

import (
	"errors"
	"strings"
)

// wsAsHTTP returns the upstream URL of a route as the http(s) URL its
// checks apply to: a ws route may name its upstream ws:// or wss://.
func wsAsHTTP(kind, upstream string) string {
	if kind != "ws" {
		return upstream
	}
	if rest, ok := strings.CutPrefix(upstream, "ws://"); ok {
		return "http://" + rest
	}
	if rest, ok := strings.CutPrefix(upstream, "wss://"); ok {
		return "https://" + rest
	}
	return upstream
}

// checkAuthQuery validates routes[].auth_query: only ws routes take it, and
// it must be a plain query parameter name.
func checkAuthQuery(kind, name string) error {
	if name == "" {
		return nil
	}
	if kind != "ws" {
		return errors.New("only kind ws routes send the provider key in the query")
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return errors.New("must be a query parameter name of letters, digits, '_', '-' or '.'")
		}
	}
	return nil
}
