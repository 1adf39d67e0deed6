package sip

import (
	"errors"
	"strings"
)

// Address is a name-addr or addr-spec with header parameters, as in From,
// To, Contact, Route and Record-Route (RFC 3261 §20.10, §25.1).
type Address struct {
	// Display is the display name as written: a quoted-string with its
	// quotes and escapes, or a sequence of tokens; "" when absent.
	Display string
	URI     URI
	Params  Params
	// Wildcard marks "Contact: *" (RFC 3261 §10.2.2).
	Wildcard bool
}

var (
	errUnterminatedQuote = errors.New("unterminated quoted string")
	errDisplayName       = errors.New("invalid display name (quote it or enclose the URI in <>)")
	errAngle             = errors.New("unbalanced angle brackets")
	errAddrSpec          = errors.New("URI with headers, commas or parameters ambiguous outside <>")
	errAddrParams        = errors.New("invalid header parameters")
	errWildcard          = errors.New("wildcard not allowed here")
)

// ParseAddress parses one name-addr or addr-spec with its parameters. The
// result refers into s.
func ParseAddress(s string) (Address, error) {
	var a Address
	err := a.parse(trimLWS(s))
	return a, err
}

// parse parses an element already separated from its neighbours and
// trimmed of LWS.
func (a *Address) parse(s string) error {
	if s == "" {
		return errURIEmpty
	}
	var rest string
	switch {
	case s[0] == '"':
		e := quotedEnd(s)
		if e < 0 {
			return errUnterminatedQuote
		}
		a.Display = s[:e]
		rest = trimLWS(s[e:])
		if rest == "" || rest[0] != '<' {
			return errDisplayName
		}
	default:
		lt := strings.IndexByte(s, '<')
		if lt < 0 {
			return a.parseAddrSpec(s)
		}
		if d := trimLWS(s[:lt]); d != "" {
			if !validDisplayTokens(d) {
				return errDisplayName
			}
			a.Display = d
		}
		rest = s[lt:]
	}
	gt := strings.IndexByte(rest, '>')
	if gt < 0 {
		return errAngle
	}
	if err := a.URI.parse(rest[1:gt]); err != nil {
		return err
	}
	return a.parseParams(trimLWS(rest[gt+1:]))
}

// parseAddrSpec handles the form without angle brackets, in which every
// ";" starts a header parameter (RFC 3261 §20.10), so the URI itself may
// carry neither parameters nor headers.
func (a *Address) parseAddrSpec(s string) error {
	uri, params := s, ""
	if i := strings.IndexByte(s, ';'); i >= 0 {
		uri, params = trimLWS(s[:i]), s[i:]
	}
	if strings.ContainsAny(uri, "?, \t\r\n\">") {
		return errAddrSpec
	}
	if err := a.URI.parse(uri); err != nil {
		return err
	}
	return a.parseParams(params)
}

func (a *Address) parseParams(s string) error {
	if s == "" {
		return nil
	}
	p, err := parseHeaderParams(s)
	if err != nil {
		return errAddrParams
	}
	a.Params = p
	return nil
}

// validDisplayTokens checks an unquoted display name: tokens separated by
// LWS (RFC 3261 §25.1 display-name).
func validDisplayTokens(s string) bool {
	for i := 0; i < len(s); i++ {
		if charClass[s[i]]&cToken == 0 && !isLWS(s[i]) {
			return false
		}
	}
	return true
}

// Tag returns the tag parameter (RFC 3261 §19.3), or "".
func (a *Address) Tag() string {
	t, _ := a.Params.Get("tag")
	return t
}

// DisplayName returns the display name with quotes and quoted-pairs removed.
func (a *Address) DisplayName() string {
	d := a.Display
	if len(d) < 2 || d[0] != '"' {
		return d
	}
	d = d[1 : len(d)-1]
	if strings.IndexByte(d, '\\') < 0 {
		return d
	}
	var b strings.Builder
	for i := 0; i < len(d); i++ {
		if d[i] == '\\' && i+1 < len(d) {
			i++
		}
		b.WriteByte(d[i])
	}
	return b.String()
}

// IsZero reports whether the address is unset.
func (a *Address) IsZero() bool { return a.URI.Scheme == "" && !a.Wildcard }

// AppendTo appends the address in name-addr form (a URI is always enclosed
// in <>, which keeps its parameters apart from the header's).
func (a *Address) AppendTo(b []byte) []byte {
	if a.Wildcard {
		return append(b, '*')
	}
	if a.Display != "" {
		b = append(b, a.Display...)
		b = append(b, ' ')
	}
	b = append(b, '<')
	b = a.URI.AppendTo(b)
	b = append(b, '>')
	return append(b, a.Params...)
}

// String returns the address as it would be written in a header.
func (a Address) String() string { return string(a.AppendTo(nil)) }

// QuoteDisplay makes a quoted-string display name from arbitrary text.
func QuoteDisplay(name string) string {
	var b strings.Builder
	b.Grow(len(name) + 2)
	b.WriteByte('"')
	for i := 0; i < len(name); i++ {
		if name[i] == '"' || name[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(name[i])
	}
	b.WriteByte('"')
	return b.String()
}
