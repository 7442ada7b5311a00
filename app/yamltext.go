package app

import (
	"strconv"

	"go.yaml.in/yaml/v3"
)

// yamlText is the configuration file's YAML parser: yaml.v3's, except that
// a plain scalar YAML would read as a number, a bool or a date that does
// not give its own text back is kept as the text written. YAML reads an
// unquoted 0123456789 as the number 123456789, 012345 as the octal 5349,
// 9.10 as 9.1, 0x1F as 31, true as a bool and 2023-06-01 as a time, and the
// decoder turned those back into other text without a word: a relay key
// that never matched, a password that failed to log in, a header value
// refused. A setting that is text now gets the value as written; one that
// is a number, a bool or a duration reads the text (a whole number's 0123
// is octal and 0x1F hex, as YAML reads them, 60.0 is 60: wholeNumberHook;
// a duration's 010 is 10 s, as from the environment: durationHook). A
// scalar with an explicit tag (!!int 0123) is left to it.
type yamlText struct{}

// Unmarshal parses b as koanf's YAML parser does, with written kept.
func (yamlText) Unmarshal(b []byte) (map[string]any, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	keepWritten(&doc)
	var out map[string]any
	if err := doc.Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}

// Marshal writes o as YAML (koanf.Parser; the relay never calls it).
func (yamlText) Marshal(o map[string]any) ([]byte, error) {
	return yaml.Marshal(o)
}

// keepWritten tags as text every plain scalar under n whose value, read
// back as text, is not what was written. Aliases share their anchor's
// node, so they follow it.
func keepWritten(n *yaml.Node) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode, yaml.MappingNode:
		for _, c := range n.Content {
			keepWritten(c)
		}
	case yaml.ScalarNode:
		if n.Style == 0 && !readsBackSame(n) {
			n.Tag = "!!str"
		}
	}
}

// readsBackSame reports whether the plain scalar n, decoded as YAML reads
// it and written as text the way the decoder does (strconv, 'f' for
// floats), is its own text. Strings and nulls are.
func readsBackSame(n *yaml.Node) bool {
	switch n.ShortTag() {
	case "!!int":
		var i int64
		if n.Decode(&i) == nil {
			return strconv.FormatInt(i, 10) == n.Value
		}
		var u uint64
		if n.Decode(&u) == nil {
			return strconv.FormatUint(u, 10) == n.Value
		}
		return false
	case "!!float":
		var f float64
		if n.Decode(&f) == nil {
			return strconv.FormatFloat(f, 'f', -1, 64) == n.Value
		}
		return false
	case "!!bool":
		// The decoder writes a bool as "1" or "0" into a text setting
		// (headers: {x-flag: true} went upstream as X-Flag: 1); a bool
		// setting reads the text "true" as it reads "True".
		return false
	case "!!timestamp":
		return false
	}
	return true
}
