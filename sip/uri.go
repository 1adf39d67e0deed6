package sip

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// URI schemes hlas parses structurally. Any other scheme is kept opaque.
const (
	SchemeSIP  = "sip"
	SchemeSIPS = "sips"
	SchemeTel  = "tel"
)

// URI is a SIP, SIPS or tel URI (RFC 3261 §19.1, RFC 3966), or an opaque URI
// of another scheme. Components are kept as written: User and Password keep
// their %HH escapes, Host keeps the brackets of an IPv6 reference.
type URI struct {
	Scheme   string // lower case for sip, sips and tel; as written otherwise
	User     string // user part, escaped; for tel URIs the telephone number
	Password string
	Host     string // "example.com", "192.0.2.1", "[2001:db8::1]"
	Port     int    // 0 when absent
	Params   Params // ";transport=tcp;lr"
	Headers  string // "Subject=x&Priority=y", without the "?"
	Opaque   string // everything after "scheme:" for schemes other than sip, sips and tel
}

// URI errors name what is wrong, for the Warning of a 400.
var (
	ErrURIScheme   = errors.New("missing or invalid URI scheme")
	errURIUser     = errors.New("invalid user part")
	errURIPassword = errors.New("invalid password")
	errURIHost     = errors.New("invalid host")
	errURIPort     = errors.New("invalid port")
	errURIParams   = errors.New("invalid URI parameter")
	errURIHeaders  = errors.New("invalid URI headers")
	errURIEmpty    = errors.New("empty URI")
)

// ParseURI parses an absolute URI. The result refers into s; no copy is made.
func ParseURI(s string) (URI, error) {
	var u URI
	err := u.parse(s)
	return u, err
}

// schemeEnd returns the length of a valid scheme followed by ":", or -1.
func schemeEnd(s string) int {
	if s == "" || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z') {
		return -1
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if c == ':' {
			return i
		}
		if charClass[c]&cScheme == 0 {
			return -1
		}
	}
	return -1
}

func (u *URI) parse(s string) error {
	if s == "" {
		return errURIEmpty
	}
	n := schemeEnd(s)
	if n < 0 {
		return ErrURIScheme
	}
	scheme, rest := s[:n], s[n+1:]
	switch {
	case strings.EqualFold(scheme, SchemeSIP):
		u.Scheme = SchemeSIP
		return u.parseSIP(rest)
	case strings.EqualFold(scheme, SchemeSIPS):
		u.Scheme = SchemeSIPS
		return u.parseSIP(rest)
	case strings.EqualFold(scheme, SchemeTel):
		u.Scheme = SchemeTel
		return u.parseTel(rest)
	}
	u.Scheme = scheme
	if rest == "" {
		return errURIEmpty
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '"' {
			return ErrURIScheme
		}
	}
	u.Opaque = rest
	return nil
}

// parseSIP parses what follows "sip:" (RFC 3261 §25.1 SIP-URI).
func (u *URI) parseSIP(s string) error {
	if at := strings.IndexByte(s, '@'); at >= 0 {
		userinfo := s[:at]
		s = s[at+1:]
		user, pass, hasPass := strings.Cut(userinfo, ":")
		if user == "" || !allOf(user, cUnres|cUser, true) {
			return errURIUser
		}
		if hasPass && !allOf(pass, cUnres|cPassword, true) {
			return errURIPassword
		}
		u.User, u.Password = user, pass
	}
	if s == "" {
		return errURIHost
	}
	var i int
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 || !validIPv6Ref(s[1:end]) {
			return errURIHost
		}
		i = end + 1
	} else {
		for i < len(s) && charClass[s[i]]&cHost != 0 {
			i++
		}
		if i == 0 {
			return errURIHost
		}
	}
	u.Host = s[:i]
	s = s[i:]
	if len(s) > 0 && s[0] == ':' {
		j := 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		p, ok := parseUint(s[1:j], 65535)
		if !ok || p == 0 {
			return errURIPort
		}
		u.Port = int(p)
		s = s[j:]
	}
	if len(s) > 0 && s[0] == ';' {
		end := strings.IndexByte(s, '?')
		if end < 0 {
			end = len(s)
		}
		if checkURIParams(s[:end]) != nil {
			return errURIParams
		}
		u.Params = Params(s[:end])
		s = s[end:]
	}
	if len(s) > 0 && s[0] == '?' {
		h := s[1:]
		if h == "" || !allOf(h, cUnres|cHeader|cPassword, true) {
			return errURIHeaders
		}
		u.Headers = h
		s = ""
	}
	if s != "" {
		return errURIHost
	}
	return nil
}

// validIPv6Ref checks the text between the brackets of an IPv6 reference.
// RFC 5118 §4.10: the RFC 3261 ABNF wrongly allows a third colon before an
// embedded IPv4 address ("2001:db8:::192.0.2.1") and implementations must
// tolerate it, so text of hex digits, colons and dots with at least two
// colons is accepted even when it is not a strict IPv6 address.
func validIPv6Ref(s string) bool {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Is6() && a.Zone() == ""
	}
	colons := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ':':
			colons++
		case c == '.' || isHex(c):
		default:
			return false
		}
	}
	return colons >= 2 && strings.Contains(s, "::")
}

// parseTel parses what follows "tel:" (RFC 3966): the number, then parameters.
func (u *URI) parseTel(s string) error {
	num, params := s, ""
	if i := strings.IndexByte(s, ';'); i >= 0 {
		num, params = s[:i], s[i:]
	}
	if num == "" {
		return errURIUser
	}
	for i := 0; i < len(num); i++ {
		c := num[i]
		if !(c >= '0' && c <= '9' || isHex(c) || strings.IndexByte("+-.()*#", c) >= 0) {
			return errURIUser
		}
	}
	if checkURIParams(params) != nil {
		return errURIParams
	}
	u.User, u.Params = num, Params(params)
	return nil
}

// IsSIP reports whether the URI is a sip: or sips: URI.
func (u *URI) IsSIP() bool { return u.Scheme == SchemeSIP || u.Scheme == SchemeSIPS }

// Hostname returns Host without the brackets of an IPv6 reference.
func (u *URI) Hostname() string {
	if len(u.Host) > 1 && u.Host[0] == '[' {
		return u.Host[1 : len(u.Host)-1]
	}
	return u.Host
}

// AppendTo appends the URI as written on the wire.
func (u *URI) AppendTo(b []byte) []byte {
	b = append(b, u.Scheme...)
	b = append(b, ':')
	if u.Opaque != "" {
		return append(b, u.Opaque...)
	}
	if u.Scheme == SchemeTel {
		b = append(b, u.User...)
		return append(b, u.Params...)
	}
	if u.User != "" {
		b = append(b, u.User...)
		if u.Password != "" {
			b = append(b, ':')
			b = append(b, u.Password...)
		}
		b = append(b, '@')
	}
	b = append(b, u.Host...)
	if u.Port != 0 {
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(u.Port), 10)
	}
	b = append(b, u.Params...)
	if u.Headers != "" {
		b = append(b, '?')
		b = append(b, u.Headers...)
	}
	return b
}

// String returns the URI as written on the wire.
func (u URI) String() string { return string(u.AppendTo(nil)) }

// Equal compares two URIs by the rules of RFC 3261 §19.1.4: user and
// password case-sensitively after unescaping, host case-insensitively, a
// component present in only one URI never matches, the user, ttl, method,
// maddr and transport parameters must match when present in either, other
// parameters only when present in both, and headers must all match.
// URIs of other schemes compare by their text, case-insensitively in the
// scheme only.
func (u *URI) Equal(v *URI) bool {
	if !strings.EqualFold(u.Scheme, v.Scheme) {
		return false
	}
	if !u.IsSIP() {
		return u.Opaque == v.Opaque && Unescape(u.User) == Unescape(v.User) && paramsEqual(u.Params, v.Params, nil)
	}
	if Unescape(u.User) != Unescape(v.User) || Unescape(u.Password) != Unescape(v.Password) {
		return false
	}
	if !strings.EqualFold(u.Host, v.Host) || u.Port != v.Port {
		return false
	}
	if !paramsEqual(u.Params, v.Params, []string{"user", "ttl", "method", "maddr", "transport"}) {
		return false
	}
	return headersEqual(u.Headers, v.Headers)
}

// paramsEqual compares parameters present in both lists, and requires each
// parameter named in must to be present in both or in neither.
func paramsEqual(a, b Params, must []string) bool {
	for _, name := range must {
		if a.Has(name) != b.Has(name) {
			return false
		}
	}
	eq := true
	a.Each(func(name, _ string, _ bool) bool {
		// A repeated name compares by its first value, as Get reads it, so
		// that Equal stays reflexive and symmetric.
		av, _ := a.Get(name)
		if bv, ok := b.Get(name); ok && !strings.EqualFold(Unescape(av), Unescape(bv)) {
			eq = false
		}
		return eq
	})
	return eq
}

func headersEqual(a, b string) bool {
	if a == b {
		return true
	}
	split := func(s string) map[string]string {
		m := map[string]string{}
		for _, kv := range strings.Split(s, "&") {
			k, v, _ := strings.Cut(kv, "=")
			m[strings.ToLower(Unescape(k))] = Unescape(v)
		}
		return m
	}
	ma, mb := split(a), split(b)
	if len(ma) != len(mb) {
		return false
	}
	for k, v := range ma {
		if w, ok := mb[k]; !ok || w != v {
			return false
		}
	}
	return true
}
