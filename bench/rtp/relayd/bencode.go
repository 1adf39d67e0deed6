package main

import (
	"errors"
	"slices"
	"strconv"
)

// A minimal bencode (BEP 3) codec for the NG commands this harness
// serves. media/rtpengine has the product's (unexported) codec; this one
// is the harness's own so that the product exports nothing for a
// benchmark. Decoded: string, int64, []any, map[string]any.

const maxDepth = 16

var errSyntax = errors.New("bencode: malformed")

// decode decodes exactly one value spanning all of b.
func decode(b []byte) (any, error) {
	v, n, err := value(b, 0)
	if err != nil {
		return nil, err
	}
	if n != len(b) {
		return nil, errSyntax
	}
	return v, nil
}

// value decodes the value at the start of b and returns how many bytes
// it took.
func value(b []byte, depth int) (any, int, error) {
	if len(b) == 0 || depth > maxDepth {
		return nil, 0, errSyntax
	}
	switch c := b[0]; {
	case c == 'i':
		end := 1
		for end < len(b) && b[end] != 'e' {
			end++
		}
		if end == len(b) {
			return nil, 0, errSyntax
		}
		n, err := strconv.ParseInt(string(b[1:end]), 10, 64)
		if err != nil {
			return nil, 0, errSyntax
		}
		return n, end + 1, nil
	case c >= '0' && c <= '9':
		colon := 0
		for colon < len(b) && b[colon] != ':' {
			colon++
		}
		if colon == len(b) || colon > 10 {
			return nil, 0, errSyntax
		}
		n, err := strconv.Atoi(string(b[:colon]))
		if err != nil || n < 0 || n > len(b)-colon-1 {
			return nil, 0, errSyntax
		}
		return string(b[colon+1 : colon+1+n]), colon + 1 + n, nil
	case c == 'l':
		var l []any
		off := 1
		for {
			if off >= len(b) {
				return nil, 0, errSyntax
			}
			if b[off] == 'e' {
				return l, off + 1, nil
			}
			v, n, err := value(b[off:], depth+1)
			if err != nil {
				return nil, 0, err
			}
			l = append(l, v)
			off += n
		}
	case c == 'd':
		d := map[string]any{}
		off := 1
		for {
			if off >= len(b) {
				return nil, 0, errSyntax
			}
			if b[off] == 'e' {
				return d, off + 1, nil
			}
			k, n, err := value(b[off:], depth+1)
			if err != nil {
				return nil, 0, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, 0, errSyntax
			}
			off += n
			v, n, err := value(b[off:], depth+1)
			if err != nil {
				return nil, 0, err
			}
			d[ks] = v
			off += n
		}
	default:
		return nil, 0, errSyntax
	}
}

// encode appends the encoding of v (string, []byte, int, int64, []any,
// map[string]any) to b; other types encode as empty strings.
func encode(b []byte, v any) []byte {
	switch v := v.(type) {
	case string:
		b = strconv.AppendInt(b, int64(len(v)), 10)
		return append(append(b, ':'), v...)
	case []byte:
		b = strconv.AppendInt(b, int64(len(v)), 10)
		return append(append(b, ':'), v...)
	case int:
		return append(strconv.AppendInt(append(b, 'i'), int64(v), 10), 'e')
	case int64:
		return append(strconv.AppendInt(append(b, 'i'), v, 10), 'e')
	case []any:
		b = append(b, 'l')
		for _, e := range v {
			b = encode(b, e)
		}
		return append(b, 'e')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, 'd')
		for _, k := range keys {
			b = encode(encode(b, k), v[k])
		}
		return append(b, 'e')
	default:
		return append(b, "0:"...)
	}
}
