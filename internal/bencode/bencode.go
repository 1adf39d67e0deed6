// Package bencode is the codec of BEP 3 bencoding, as rtpengine's NG
// control protocol uses it: byte strings "<len>:<bytes>", integers
// "i<n>e", lists "l…e" and dictionaries "d…e" with byte-string keys.
// Decoded, a string is a Go string, an integer an int64, a list a []any
// and a dictionary a map[string]any.
//
// Decode is strict where bencode is (no leading zeros, no "-0", no
// trailing bytes, no duplicate keys) but accepts dictionary keys in any
// order: rtpengine does not sort them. It bounds the nesting depth, so a
// datagram of brackets cannot exhaust the stack; the input size (one UDP
// datagram) bounds everything else. media/rtpengine (the NG client) and
// bench/rtp/relayd (an NG server for benchmarks) share it.
package bencode

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
)

const (
	// maxDepth bounds the nesting of lists and dictionaries. A query or
	// delete reply nests 8 deep (tags, tag, medias, media, streams,
	// stream, stats).
	maxDepth = 32
	// maxIntDigits bounds an integer's digits: int64 has 19.
	maxIntDigits = 19
)

// ErrInvalid is wrapped by every error of Decode (malformed input) and
// of Append (a value bencode cannot hold).
var ErrInvalid = errors.New("bencode")

func syntaxErr(off int, format string, args ...any) error {
	return fmt.Errorf("%w: offset %d: %s", ErrInvalid, off, fmt.Sprintf(format, args...))
}

// Decode decodes exactly one value spanning all of b.
func Decode(b []byte) (any, error) {
	d := decoder{b: b}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.off != len(b) {
		return nil, syntaxErr(d.off, "%d trailing bytes", len(b)-d.off)
	}
	return v, nil
}

type decoder struct {
	b   []byte
	off int
}

func (d *decoder) value(depth int) (any, error) {
	if d.off >= len(d.b) {
		return nil, syntaxErr(d.off, "unexpected end")
	}
	switch c := d.b[d.off]; {
	case c == 'i':
		return d.integer()
	case c >= '0' && c <= '9':
		return d.str()
	case c == 'l':
		if depth >= maxDepth {
			return nil, syntaxErr(d.off, "nested deeper than %d", maxDepth)
		}
		d.off++
		list := []any{}
		for {
			if d.off >= len(d.b) {
				return nil, syntaxErr(d.off, "unterminated list")
			}
			if d.b[d.off] == 'e' {
				d.off++
				return list, nil
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
	case c == 'd':
		if depth >= maxDepth {
			return nil, syntaxErr(d.off, "nested deeper than %d", maxDepth)
		}
		d.off++
		dict := map[string]any{}
		for {
			if d.off >= len(d.b) {
				return nil, syntaxErr(d.off, "unterminated dictionary")
			}
			if d.b[d.off] == 'e' {
				d.off++
				return dict, nil
			}
			if c := d.b[d.off]; c < '0' || c > '9' {
				return nil, syntaxErr(d.off, "dictionary key is not a string")
			}
			keyOff := d.off
			k, err := d.str()
			if err != nil {
				return nil, err
			}
			if _, dup := dict[k]; dup {
				return nil, syntaxErr(keyOff, "duplicate key %q", k)
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			dict[k] = v
		}
	default:
		return nil, syntaxErr(d.off, "unexpected byte %q", c)
	}
}

// str reads "<len>:<bytes>".
func (d *decoder) str() (string, error) {
	start := d.off
	n := 0
	for d.off < len(d.b) && d.b[d.off] >= '0' && d.b[d.off] <= '9' {
		if d.off-start == 0 && d.b[d.off] == '0' && d.off+1 < len(d.b) && d.b[d.off+1] != ':' {
			return "", syntaxErr(start, "string length with a leading zero")
		}
		n = n*10 + int(d.b[d.off]-'0')
		if n > len(d.b) { // also keeps n from overflowing
			return "", syntaxErr(start, "string longer than the input")
		}
		d.off++
	}
	if d.off >= len(d.b) || d.b[d.off] != ':' {
		return "", syntaxErr(d.off, "string length not followed by ':'")
	}
	d.off++
	if n > len(d.b)-d.off {
		return "", syntaxErr(start, "string of %d bytes runs past the end", n)
	}
	s := string(d.b[d.off : d.off+n])
	d.off += n
	return s, nil
}

// integer reads "i<n>e".
func (d *decoder) integer() (int64, error) {
	start := d.off
	d.off++ // 'i'
	end := d.off
	for end < len(d.b) && d.b[end] != 'e' && end-d.off <= maxIntDigits+1 {
		end++
	}
	if end >= len(d.b) || d.b[end] != 'e' {
		return 0, syntaxErr(start, "unterminated or oversized integer")
	}
	digits := d.b[d.off:end]
	neg := len(digits) > 0 && digits[0] == '-'
	body := digits
	if neg {
		body = digits[1:]
	}
	if len(body) == 0 || (body[0] == '0' && (len(body) > 1 || neg)) {
		return 0, syntaxErr(start, "malformed integer %q", digits)
	}
	for _, c := range body {
		if c < '0' || c > '9' {
			return 0, syntaxErr(start, "malformed integer %q", digits)
		}
	}
	n, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil {
		return 0, syntaxErr(start, "integer %q out of range", digits)
	}
	d.off = end + 1
	return n, nil
}

// Append appends v's encoding to b. It takes Decode's types plus the
// ones requests are built from: []byte, int, []string. Keys are written
// sorted, as BEP 3 asks, so an encoding is deterministic.
func Append(b []byte, v any) ([]byte, error) {
	return appendValue(b, v, 0)
}

func appendValue(b []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", ErrInvalid, maxDepth)
	}
	switch v := v.(type) {
	case string:
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		return append(b, v...), nil
	case []byte:
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		return append(b, v...), nil
	case int:
		b = append(b, 'i')
		b = strconv.AppendInt(b, int64(v), 10)
		return append(b, 'e'), nil
	case int64:
		b = append(b, 'i')
		b = strconv.AppendInt(b, v, 10)
		return append(b, 'e'), nil
	case []string:
		b = append(b, 'l')
		for _, s := range v {
			b, _ = appendValue(b, s, depth+1)
		}
		return append(b, 'e'), nil
	case []any:
		b = append(b, 'l')
		for _, e := range v {
			var err error
			if b, err = appendValue(b, e, depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, 'e'), nil
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, 'd')
		for _, k := range keys {
			b, _ = appendValue(b, k, depth+1)
			var err error
			if b, err = appendValue(b, v[k], depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, 'e'), nil
	default:
		return nil, fmt.Errorf("%w: cannot encode %T", ErrInvalid, v)
	}
}
