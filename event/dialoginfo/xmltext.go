package dialoginfo

import "unicode/utf8"

// appendEscaped appends s as XML character data, or, with attr set, as the
// content of a double-quoted attribute value. Characters that XML 1.0 cannot
// carry at all (most C0 controls, invalid UTF-8, U+FFFE/U+FFFF) become U+FFFD,
// so text taken from SIP headers can never make the output ill-formed. In
// attributes, tab, LF and CR are written as character references so that
// attribute-value normalisation in the reader does not turn them into spaces;
// CR is escaped in text too, since readers would otherwise fold CRLF into LF.
func appendEscaped(dst []byte, s string, attr bool) []byte {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		width := 1
		esc := ""
		if c < utf8.RuneSelf {
			switch {
			case c == '&':
				esc = "&amp;"
			case c == '<':
				esc = "&lt;"
			case c == '>':
				esc = "&gt;"
			case c == '"':
				if attr {
					esc = "&quot;"
				}
			case c == '\t':
				if attr {
					esc = "&#x9;"
				}
			case c == '\n':
				if attr {
					esc = "&#xA;"
				}
			case c == '\r':
				esc = "&#xD;"
			case c < 0x20:
				esc = "\uFFFD"
			}
		} else {
			r, w := utf8.DecodeRuneInString(s[i:])
			width = w
			if (r == utf8.RuneError && w == 1) || !isXMLChar(r) {
				esc = "\uFFFD"
			}
		}
		if esc != "" {
			dst = append(dst, s[last:i]...)
			dst = append(dst, esc...)
			last = i + width
		}
		i += width
	}
	return append(dst, s[last:]...)
}

// isXMLChar reports whether a non-ASCII rune is allowed by the Char
// production of XML 1.0.
func isXMLChar(r rune) bool {
	return (r >= 0x80 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
}
