package stir

import "strings"

// maxTNDigits is the longest E.164 number (ITU-T E.164 §6).
const maxTNDigits = 15

// NormalizeTN returns the telephone number of a SIP/SIPS URI user part,
// a tel URI, or a bare number, as digits only: angle brackets, a leading
// '+', URI parameters and the visual separators of RFC 3966 ("-", ".", "(",
// ")") are removed, which is the canonical form of RFC 8224 §8.3. ok is
// false if what remains is not 1 to 15 digits (E.164).
func NormalizeTN(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "<") {
		end := strings.IndexByte(s, '>')
		if end < 0 {
			return "", false
		}
		s = s[1:end]
	}
	switch {
	case hasPrefixFold(s, "sip:"):
		s = userPart(s[len("sip:"):])
	case hasPrefixFold(s, "sips:"):
		s = userPart(s[len("sips:"):])
	case hasPrefixFold(s, "tel:"):
		s = s[len("tel:"):]
	}
	// Parameters of a tel URI or of a telephone-subscriber user part
	// (";phone-context=", ";npdi", ...) are not part of the number.
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimPrefix(s, "+")
	var buf [maxTNDigits]byte
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			if n == maxTNDigits {
				return "", false
			}
			buf[n] = c
			n++
		case c == '-' || c == '.' || c == '(' || c == ')':
		default:
			return "", false
		}
	}
	if n == 0 {
		return "", false
	}
	if n == len(s) {
		return s, true // already canonical: no copy
	}
	return string(buf[:n]), true
}

// userPart returns the user part of what follows "sip:", or "" when the URI
// has none (a URI naming only a host is not a number).
func userPart(s string) string {
	at := strings.IndexByte(s, '@')
	if at < 0 {
		return ""
	}
	return s[:at]
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
