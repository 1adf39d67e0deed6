// Package xmltext is the XML plumbing shared by the event body packages
// (pidf, dialoginfo, reginfo, winfo): writing text and attributes that
// always stay well-formed, and the checks a body must pass before
// encoding/xml is let loose on it. Error wording is the caller's: every
// error starts with the Prefix of its Rules.
package xmltext

import (
	"strconv"
	"unicode/utf8"
)

// AppendEscaped appends s as XML character data, or, with attr set, as the
// content of a double-quoted attribute value. Characters that XML 1.0 cannot
// carry at all (most C0 controls, invalid UTF-8, U+FFFE/U+FFFF) become U+FFFD,
// so text taken from SIP headers can never make the output ill-formed. In
// attributes, tab, LF and CR are written as character references so that
// attribute-value normalisation in the reader does not turn them into spaces;
// CR is escaped in text too, since readers would otherwise fold CRLF into LF.
func AppendEscaped(dst []byte, s string, attr bool) []byte {
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
			if (r == utf8.RuneError && w == 1) || !IsXMLChar(r) {
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

// AppendAttr appends ` name="value"` with value escaped; name is written
// as given, so it must already be a valid (qualified) attribute name.
func AppendAttr(dst []byte, name, value string) []byte {
	dst = append(dst, ' ')
	dst = append(dst, name...)
	dst = append(dst, '=', '"')
	dst = AppendEscaped(dst, value, true)
	return append(dst, '"')
}

// AppendUintAttr appends ` name="v"`, or nothing when v is zero: the
// optional counters of the event bodies mean "unknown" at zero.
func AppendUintAttr(dst []byte, name string, v uint32) []byte {
	if v == 0 {
		return dst
	}
	dst = append(dst, ' ')
	dst = append(dst, name...)
	dst = append(dst, '=', '"')
	dst = strconv.AppendUint(dst, uint64(v), 10)
	return append(dst, '"')
}

// AppendVersionState appends the version and state attributes that
// dialog-info, reginfo and watcherinfo roots share (RFC 4235 §4.1.1,
// RFC 3680 §5.3, RFC 3858 §4), with a leading space.
func AppendVersionState(dst []byte, version uint32, full bool) []byte {
	dst = append(dst, ` version="`...)
	dst = strconv.AppendUint(dst, uint64(version), 10)
	if full {
		return append(dst, `" state="full"`...)
	}
	return append(dst, `" state="partial"`...)
}

// IsXMLChar reports whether a non-ASCII rune is allowed by the Char
// production of XML 1.0. ASCII is the caller's business: which controls
// are allowed depends on where the character stands.
func IsXMLChar(r rune) bool {
	return (r >= 0x80 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
}

// Clip shortens a value quoted in an error message, so that a hostile body
// cannot make the Warning of a response as long as itself.
func Clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
