package usage

import "bytes"

// obj walks the members of one JSON object without decoding it: each call to
// next returns the raw key (without quotes) and the raw value bytes. It never
// allocates and stops at the first malformed byte (err is then set).
type obj struct {
	b   []byte
	i   int
	n   int // members seen
	err bool
	end bool
}

// openObj positions an iterator just inside the object that starts at the
// first non-space byte of b.
func openObj(b []byte) (obj, bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return obj{}, false
	}
	return obj{b: b, i: i + 1}, true
}

// next returns the next member, or ok=false at the end of the object or on
// malformed input (o.err tells which).
func (o *obj) next() (key, val []byte, ok bool) {
	if o.err || o.end {
		return nil, nil, false
	}
	b := o.b
	i := skipSpace(b, o.i)
	if i >= len(b) {
		o.err = true
		return nil, nil, false
	}
	if o.n > 0 {
		if b[i] == '}' {
			o.end, o.i = true, i+1
			return nil, nil, false
		}
		if b[i] != ',' {
			o.err = true
			return nil, nil, false
		}
		i = skipSpace(b, i+1)
	} else if b[i] == '}' {
		o.end, o.i = true, i+1
		return nil, nil, false
	}
	ks := i
	i = skipString(b, i)
	if i < 0 {
		o.err = true
		return nil, nil, false
	}
	key = b[ks+1 : i-1]
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		o.err = true
		return nil, nil, false
	}
	i = skipSpace(b, i+1)
	vs := i
	i = skipValue(b, i)
	if i < 0 {
		o.err = true
		return nil, nil, false
	}
	o.i, o.n = i, o.n+1
	return key, b[vs:i], true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index just past the string that starts at b[i]
// (which must be '"'), or -1.
func skipString(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	// From quote to quote (IndexByte: a megabyte of base64 image in one
	// step); a quote after an odd run of backslashes is escaped.
	for i++; ; {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return -1
		}
		q := i + j
		n := 0
		for k := q - 1; k >= i && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return q + 1
		}
		i = q + 1
	}
}

// skipValue returns the index just past the value that starts at b[i], or
// -1. Nested objects and arrays are skipped by depth counting with string
// awareness, so keys inside them are never mistaken for top-level ones.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				if i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	default:
		s := i
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if i == s {
					return -1
				}
				return i
			}
			i++
		}
		if i == s {
			return -1
		}
		return i
	}
}

// parseUint reads a non-negative decimal integer that makes up all of v.
func parseUint(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
