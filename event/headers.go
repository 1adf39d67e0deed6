package event

import (
	"strconv"
	"strings"

	"github.com/hlas-voip/hlas/sip"
)

// parseEvent reads an Event header value (RFC 6665 §8.2.1): the package
// token (with its template, "presence.winfo") and the id parameter.
func parseEvent(v string) (name, id string, ok bool) {
	v = strings.TrimSpace(v)
	name, params, _ := strings.Cut(v, ";")
	name = strings.TrimSpace(name)
	if !isToken(name) {
		return "", "", false
	}
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "id") {
			id = strings.TrimSpace(v)
			if !isToken(id) {
				return "", "", false
			}
		}
	}
	return name, id, true
}

// isToken reports a non-empty RFC 3261 §25.1 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-.!%*_+`'~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// maxExpiresHeader is the largest delta-seconds kept: 2**32-1 (RFC 3261
// §20.19); larger values are clamped by MaxExpires anyway.
const maxExpiresHeader = 1<<32 - 1

// parseExpires reads an Expires header value: delta-seconds (RFC 3261
// §20.19). Values beyond 2**32-1 are taken as 2**32-1.
func parseExpires(v string) (uint64, bool) {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > 20 {
		if len(v) > 20 && allDigits(v) {
			return maxExpiresHeader, true
		}
		return 0, false
	}
	if !allDigits(v) {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n > maxExpiresHeader {
		return maxExpiresHeader, true
	}
	return n, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// negotiate picks, in the package's order of preference (offer), the types
// the watcher accepts (ranges: the Accept header's elements, RFC 3261
// §20.1, with */* and type/* and q=0 for "not this"). No Accept header
// means the package's default, its first type (RFC 6665 §7.2). The result
// shares offer's array when it is a prefix of it.
func negotiate(ranges []string, offer []string) []string {
	if len(offer) == 0 {
		return nil
	}
	if len(ranges) == 0 {
		return offer[:1:1]
	}
	n, prefix := 0, true
	for i, t := range offer {
		if accepts(ranges, t) {
			if n != i {
				prefix = false
			}
			n++
		}
	}
	if n == 0 {
		return nil
	}
	if prefix {
		return offer[:n:n]
	}
	out := make([]string, 0, n)
	for _, t := range offer {
		if accepts(ranges, t) {
			out = append(out, t)
		}
	}
	return out
}

// accepts reports whether the media ranges let type t through: the most
// specific matching range decides, and q=0 refuses (RFC 7231 §5.3.2, as
// RFC 3261 §20.1 takes it).
func accepts(ranges []string, t string) bool {
	typ, sub, _ := strings.Cut(t, "/")
	best, ok := -1, false
	for _, r := range ranges {
		mr, params, _ := strings.Cut(r, ";")
		mr = strings.TrimSpace(mr)
		rt, rs, found := strings.Cut(mr, "/")
		if !found {
			continue
		}
		spec := -1
		switch {
		case rt == "*" && rs == "*":
			spec = 0
		case strings.EqualFold(rt, typ) && rs == "*":
			spec = 1
		case strings.EqualFold(rt, typ) && strings.EqualFold(rs, sub):
			spec = 2
		}
		if spec <= best {
			continue
		}
		best, ok = spec, !zeroQ(params)
	}
	return ok
}

// zeroQ reports a q parameter of 0 ("q=0", "q=0.0", "q=0.000").
func zeroQ(params string) bool {
	if params == "" {
		return false
	}
	q, has := sip.Params(";" + params).Get("q")
	if !has {
		return false
	}
	q = strings.TrimSpace(q)
	if q == "" || q[0] != '0' {
		return false
	}
	return strings.Trim(q[1:], ".0") == ""
}
