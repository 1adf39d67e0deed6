package sip

import "strings"

// Character classes of RFC 3261 §25.1, as lookup tables built once at init.
// They are read-only after init, so sharing them between goroutines is safe.
const (
	cToken    = 1 << iota // token
	cAlphanum             // ALPHA / DIGIT
	cUnres                // unreserved: alphanum / mark
	cUser                 // user chars besides unreserved and escaped
	cPassword             // password chars besides unreserved and escaped
	cParam                // paramchar besides unreserved and escaped (param-unreserved)
	cHost                 // hostname chars: alphanum, "-", "." (and "_" liberally)
	cScheme               // scheme chars after the first ALPHA
	cHeader               // hnv-unreserved besides unreserved and escaped
)

var charClass = func() (t [256]uint16) {
	set := func(chars string, class uint16) {
		for i := 0; i < len(chars); i++ {
			t[chars[i]] |= class
		}
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] |= cToken | cAlphanum | cUnres | cHost | cScheme
		t[c-'a'+'A'] |= cToken | cAlphanum | cUnres | cHost | cScheme
	}
	for c := '0'; c <= '9'; c++ {
		t[c] |= cToken | cAlphanum | cUnres | cHost | cScheme
	}
	set("-.!%*_+`'~", cToken)
	set("-_.!~*'()", cUnres)
	set("&=+$,;?/", cUser)
	set("&=+$,", cPassword)
	set("[]/:&+$", cParam)
	set("-._", cHost)
	set("+-.", cScheme)
	set("[]/?:+$", cHeader)
	return t
}()

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if charClass[s[i]]&cToken == 0 {
			return false
		}
	}
	return true
}

func isWS(c byte) bool { return c == ' ' || c == '\t' }

// isLWS reports whether c is white space that may appear inside a header
// value after unfolding (SP, HTAB, and the CR/LF of a fold).
func isLWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func trimLWS(s string) string {
	i, j := 0, len(s)
	for i < j && isLWS(s[i]) {
		i++
	}
	for j > i && isLWS(s[j-1]) {
		j--
	}
	return s[i:j]
}

func hasLWS(s string) bool {
	for i := 0; i < len(s); i++ {
		if isLWS(s[i]) {
			return true
		}
	}
	return false
}

// unfold replaces each line fold (CRLF or LF followed by white space) with
// the white space alone, per RFC 3261 §7.3.1. It allocates only when s
// actually contains a fold.
func unfold(s string) string {
	if strings.IndexByte(s, '\n') < 0 && strings.IndexByte(s, '\r') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\r' || s[i] == '\n' {
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// validEscapes reports whether every "%" in s starts a "%" HEXDIG HEXDIG
// escape.
func validEscapes(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// Unescape decodes %HH escapes (RFC 3261 §19.1.2, §25.1). Invalid escapes
// are kept as they are. It returns s itself when there is nothing to decode.
func Unescape(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}

// allOf reports whether every byte of s is in one of the classes, or is a
// valid escape when escapes are allowed.
func allOf(s string, classes uint16, escapes bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if charClass[c]&classes != 0 {
			continue
		}
		if c == '%' && escapes {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			i += 2
			continue
		}
		return false
	}
	return true
}

// parseUint parses a run of decimal digits that must fit below limit.
// Leading zeros are allowed ("0068" is 68, RFC 4475 §3.1.1.1).
func parseUint(s string, limit uint64) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
		if n > limit {
			return 0, false
		}
	}
	return n, true
}

// quotedEnd returns the index just past the closing DQUOTE of the
// quoted-string starting at s[0] == '"', honouring quoted-pairs, or -1.
func quotedEnd(s string) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// splitComma calls fn for each comma-separated element of a header value,
// ignoring commas inside quoted strings and angle brackets (RFC 3261 §7.3.1).
// Elements are trimmed of LWS. It stops and returns false if fn does, or if
// the value has an unterminated quote.
func splitComma(s string, fn func(elem string) bool) bool {
	if strings.IndexByte(s, ',') < 0 && strings.IndexByte(s, '"') < 0 {
		return fn(trimLWS(s))
	}
	start, depth := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			e := quotedEnd(s[i:])
			if e < 0 {
				return false
			}
			i += e - 1
		case '<':
			depth++
		case '>':
			if depth > 0 {
				depth--
			}
		case ',':
			if depth == 0 {
				if !fn(trimLWS(s[start:i])) {
					return false
				}
				start = i + 1
			}
		}
	}
	return fn(trimLWS(s[start:]))
}
