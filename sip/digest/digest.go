// Package digest implements SIP Digest access authentication at the
// protocol level: parsing and writing the WWW-Authenticate and
// Proxy-Authenticate challenges and the Authorization and
// Proxy-Authorization credentials (RFC 3261 §22.4, §25.1), and computing
// the digest for the MD5, SHA-256 and SHA-512-256 algorithms and their
// -sess variants (RFC 7616 §3.4, RFC 8760), with qop=auth, qop=auth-int and
// the legacy form without qop (RFC 2069, RFC 2617 §3.2.2.1).
//
// A user agent answers a challenge with Challenge.Authorize; a registrar or
// proxy checks the answer with Credentials.Verify. The package keeps no
// state: nonce bookkeeping (nc replay checks, expiry) belongs to its users.
package digest

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// Algorithm is a digest algorithm of the IANA "HTTP Digest Hash
// Algorithms" registry (RFC 7616 §3.3, §6.1), as used by SIP (RFC 8760).
type Algorithm uint8

// Algorithms. The zero value is MD5, the default when a challenge names
// none (RFC 7616 §3.3).
const (
	MD5 Algorithm = iota
	MD5Sess
	SHA256
	SHA256Sess
	SHA512_256
	SHA512_256Sess
)

var algorithmNames = [...]string{"MD5", "MD5-sess", "SHA-256", "SHA-256-sess", "SHA-512-256", "SHA-512-256-sess"}

// String returns the name as written in an algorithm parameter.
func (a Algorithm) String() string {
	if int(a) < len(algorithmNames) {
		return algorithmNames[a]
	}
	return "Algorithm(" + strconv.Itoa(int(a)) + ")"
}

// Sess reports a -sess variant, whose HA1 covers the nonce and cnonce
// (RFC 7616 §3.4.2).
func (a Algorithm) Sess() bool { return a == MD5Sess || a == SHA256Sess || a == SHA512_256Sess }

// New returns a new hash for the algorithm.
func (a Algorithm) New() hash.Hash {
	switch a {
	case SHA256, SHA256Sess:
		return sha256.New()
	case SHA512_256, SHA512_256Sess:
		return sha512.New512_256()
	}
	return md5.New()
}

// ErrAlgorithm is an algorithm name this package does not implement.
var ErrAlgorithm = errors.New("digest: unsupported algorithm")

// ParseAlgorithm maps an algorithm parameter (any case) to an Algorithm;
// "" is MD5 (RFC 7616 §3.3).
func ParseAlgorithm(s string) (Algorithm, error) {
	if s == "" {
		return MD5, nil
	}
	for i, n := range algorithmNames {
		if strings.EqualFold(n, s) {
			return Algorithm(i), nil
		}
	}
	return 0, fmt.Errorf("%w %q", ErrAlgorithm, s)
}

// Hash returns the lower-case hex digest of the parts joined by ":", the
// H(data) and KD(secret, data) of RFC 7616 §3.4.
func (a Algorithm) Hash(parts ...string) string {
	h := a.New()
	h.Write([]byte(strings.Join(parts, ":")))
	return hex.EncodeToString(h.Sum(nil))
}

// HA1 computes A1's hash (RFC 7616 §3.4.2): H(username:realm:password), and
// for a -sess algorithm H(H(username:realm:password):nonce:cnonce).
func HA1(alg Algorithm, username, realm, password, nonce, cnonce string) string {
	ha1 := alg.Hash(username, realm, password)
	if alg.Sess() {
		return SessHA1(alg, ha1, nonce, cnonce)
	}
	return ha1
}

// SessHA1 turns a stored H(username:realm:password) into the HA1 of a -sess
// algorithm (RFC 7616 §3.4.2), so that a server keeping only hashes can
// check -sess answers.
func SessHA1(alg Algorithm, ha1, nonce, cnonce string) string {
	return alg.Hash(ha1, nonce, cnonce)
}

// HA2 computes A2's hash (RFC 7616 §3.4.3): H(method:uri), and for
// qop=auth-int H(method:uri:H(body)).
func HA2(alg Algorithm, qop, method, uri string, body []byte) string {
	if strings.EqualFold(qop, "auth-int") {
		h := alg.New()
		h.Write(body)
		return alg.Hash(method, uri, hex.EncodeToString(h.Sum(nil)))
	}
	return alg.Hash(method, uri)
}

// Response computes the request-digest (RFC 7616 §3.4.1):
// KD(HA1, nonce:nc:cnonce:qop:HA2), or KD(HA1, nonce:HA2) when qop is empty
// (RFC 2069 compatibility, RFC 2617 §3.2.2.1).
func Response(alg Algorithm, ha1, nonce string, nc uint32, cnonce, qop, ha2 string) string {
	if qop == "" {
		return alg.Hash(ha1, nonce, ha2)
	}
	return alg.Hash(ha1, nonce, FormatNC(nc), cnonce, qop, ha2)
}

// FormatNC writes a nonce count as 8 hex digits (RFC 7616 §3.4).
func FormatNC(nc uint32) string {
	s := strconv.FormatUint(uint64(nc), 16)
	return strings.Repeat("0", 8-len(s)) + s
}

// Param is an auth-param that has no field of its own in Challenge or
// Credentials (RFC 7235 §2.1).
type Param struct {
	Name   string
	Value  string // unquoted
	Quoted bool   // written as a quoted-string
}

// Challenge is a WWW-Authenticate or Proxy-Authenticate challenge
// (RFC 3261 §20.27, §20.44, §25.1; RFC 7616 §3.3).
type Challenge struct {
	// Scheme is the auth-scheme, "Digest" for everything this package
	// computes.
	Scheme    string
	Realm     string
	Domain    string
	Nonce     string
	Opaque    string
	Stale     bool
	Algorithm string // as written; "" means MD5
	// QOP lists the qop-options, "auth" and/or "auth-int"; empty for the
	// RFC 2069 form.
	QOP      []string
	Charset  string
	Userhash bool
	Other    []Param
}

// Credentials are the Authorization or Proxy-Authorization credentials
// (RFC 3261 §20.7, §20.28, §25.1; RFC 7616 §3.4).
type Credentials struct {
	Scheme    string
	Username  string
	Realm     string
	Nonce     string
	URI       string
	Response  string
	Algorithm string // as written; "" means MD5
	CNonce    string
	Opaque    string
	QOP       string
	// NC is the nonce count; written only with a qop.
	NC       uint32
	Userhash bool
	Other    []Param
}

// ErrSyntax is a malformed challenge or credentials header value.
var ErrSyntax = errors.New("digest: malformed header")

// ParseChallenge parses the value of a WWW-Authenticate or
// Proxy-Authenticate header: a scheme and comma-separated auth-params
// whose names compare case-insensitively and whose values are tokens or
// quoted-strings (RFC 3261 §25.1, RFC 7235 §2.1). Unknown parameters are
// kept in Other; a scheme other than Digest parses with all its parameters
// in Other.
func ParseChallenge(s string) (*Challenge, error) {
	scheme, params, err := parseAuth(s)
	if err != nil {
		return nil, err
	}
	c := &Challenge{Scheme: scheme}
	if !strings.EqualFold(scheme, "Digest") {
		c.Other = params
		return c, nil
	}
	for _, p := range params {
		switch strings.ToLower(p.Name) {
		case "realm":
			c.Realm = p.Value
		case "domain":
			c.Domain = p.Value
		case "nonce":
			c.Nonce = p.Value
		case "opaque":
			c.Opaque = p.Value
		case "stale":
			c.Stale = strings.EqualFold(p.Value, "true")
		case "algorithm":
			c.Algorithm = p.Value
		case "qop":
			for _, q := range strings.Split(p.Value, ",") {
				if q = strings.TrimSpace(q); q != "" {
					c.QOP = append(c.QOP, q)
				}
			}
		case "charset":
			c.Charset = p.Value
		case "userhash":
			c.Userhash = strings.EqualFold(p.Value, "true")
		default:
			c.Other = append(c.Other, p)
		}
	}
	return c, nil
}

// ParseCredentials parses the value of an Authorization or
// Proxy-Authorization header (RFC 3261 §25.1 credentials).
func ParseCredentials(s string) (*Credentials, error) {
	scheme, params, err := parseAuth(s)
	if err != nil {
		return nil, err
	}
	c := &Credentials{Scheme: scheme}
	if !strings.EqualFold(scheme, "Digest") {
		c.Other = params
		return c, nil
	}
	for _, p := range params {
		switch strings.ToLower(p.Name) {
		case "username":
			c.Username = p.Value
		case "realm":
			c.Realm = p.Value
		case "nonce":
			c.Nonce = p.Value
		case "uri":
			c.URI = p.Value
		case "response":
			c.Response = p.Value
		case "algorithm":
			c.Algorithm = p.Value
		case "cnonce":
			c.CNonce = p.Value
		case "opaque":
			c.Opaque = p.Value
		case "qop":
			c.QOP = p.Value
		case "nc":
			n, err := strconv.ParseUint(p.Value, 16, 32)
			if err != nil || len(p.Value) != 8 {
				return nil, fmt.Errorf("%w: nonce-count %q is not 8 hex digits", ErrSyntax, p.Value)
			}
			c.NC = uint32(n)
		case "userhash":
			c.Userhash = strings.EqualFold(p.Value, "true")
		default:
			c.Other = append(c.Other, p)
		}
	}
	return c, nil
}

// parseAuth splits "scheme param=value, param="quoted", ..." into the scheme
// and its parameters. Line folds count as white space.
func parseAuth(s string) (string, []Param, error) {
	s = trimLWS(s)
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	if i == 0 {
		return "", nil, fmt.Errorf("%w: no auth-scheme", ErrSyntax)
	}
	scheme, rest := s[:i], s[i:]
	if rest != "" && !isLWS(rest[0]) {
		return "", nil, fmt.Errorf("%w: bad character after auth-scheme", ErrSyntax)
	}
	var params []Param
	rest = trimLWS(rest)
	for rest != "" {
		if rest[0] == ',' { // empty list elements are allowed (RFC 7230 §7)
			rest = trimLWS(rest[1:])
			continue
		}
		j := 0
		for j < len(rest) && isTokenChar(rest[j]) {
			j++
		}
		if j == 0 {
			return "", nil, fmt.Errorf("%w: bad auth-param name", ErrSyntax)
		}
		p := Param{Name: rest[:j]}
		rest = trimLWS(rest[j:])
		if rest == "" || rest[0] != '=' {
			return "", nil, fmt.Errorf("%w: auth-param %q has no value", ErrSyntax, p.Name)
		}
		rest = trimLWS(rest[1:])
		if rest != "" && rest[0] == '"' {
			v, n, ok := unquote(rest)
			if !ok {
				return "", nil, fmt.Errorf("%w: unterminated quoted-string in %q", ErrSyntax, p.Name)
			}
			p.Value, p.Quoted = v, true
			rest = rest[n:]
		} else {
			j = 0
			for j < len(rest) && isTokenChar(rest[j]) {
				j++
			}
			if j == 0 {
				return "", nil, fmt.Errorf("%w: auth-param %q has an empty value", ErrSyntax, p.Name)
			}
			p.Value = rest[:j]
			rest = rest[j:]
		}
		params = append(params, p)
		rest = trimLWS(rest)
		if rest == "" {
			break
		}
		if rest[0] != ',' {
			return "", nil, fmt.Errorf("%w: expected a comma after %q", ErrSyntax, p.Name)
		}
	}
	return scheme, params, nil
}

// unquote reads the quoted-string at the start of s and returns its
// content with quoted-pairs resolved and how many bytes it took.
func unquote(s string) (string, int, bool) {
	var b []byte
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 == len(s) {
				return "", 0, false
			}
			if b == nil {
				b = append([]byte(nil), s[1:i]...)
			}
			i++
			b = append(b, s[i])
		case '"':
			if b == nil {
				return s[1:i], i + 1, true
			}
			return string(b), i + 1, true
		default:
			if b != nil {
				b = append(b, c)
			}
		}
	}
	return "", 0, false
}

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

// isTokenChar reports a token character (RFC 3261 §25.1).
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-.!%*_+`'~", c) >= 0
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

// quote writes s as a quoted-string.
func quote(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
}

type writer struct {
	b     strings.Builder
	first bool
}

func (w *writer) sep(name string) {
	if w.first {
		w.b.WriteByte(' ')
		w.first = false
	} else {
		w.b.WriteString(", ")
	}
	w.b.WriteString(name)
	w.b.WriteByte('=')
}

func (w *writer) quoted(name, v string) {
	w.sep(name)
	quote(&w.b, v)
}

func (w *writer) token(name, v string) {
	w.sep(name)
	w.b.WriteString(v)
}

func (w *writer) tokenOrQuoted(name, v string) {
	if isToken(v) {
		w.token(name, v)
	} else {
		w.quoted(name, v)
	}
}

func (w *writer) other(ps []Param) {
	for _, p := range ps {
		if p.Quoted || !isToken(p.Value) {
			w.quoted(p.Name, p.Value)
		} else {
			w.token(p.Name, p.Value)
		}
	}
}

// String writes the challenge as a header value. qop-options, realm,
// nonce, opaque and domain are quoted-strings, algorithm and stale tokens
// (RFC 3261 §25.1).
func (c *Challenge) String() string {
	w := writer{first: true}
	scheme := c.Scheme
	if scheme == "" {
		scheme = "Digest"
	}
	w.b.WriteString(scheme)
	if c.Realm != "" || strings.EqualFold(scheme, "Digest") {
		w.quoted("realm", c.Realm)
	}
	if c.Domain != "" {
		w.quoted("domain", c.Domain)
	}
	if c.Nonce != "" {
		w.quoted("nonce", c.Nonce)
	}
	if c.Opaque != "" {
		w.quoted("opaque", c.Opaque)
	}
	if c.Stale {
		w.token("stale", "true")
	}
	if c.Algorithm != "" {
		w.tokenOrQuoted("algorithm", c.Algorithm)
	}
	if len(c.QOP) > 0 {
		w.quoted("qop", strings.Join(c.QOP, ","))
	}
	if c.Charset != "" {
		w.tokenOrQuoted("charset", c.Charset)
	}
	if c.Userhash {
		w.token("userhash", "true")
	}
	w.other(c.Other)
	return w.b.String()
}

// String writes the credentials as a header value: username, realm,
// nonce, uri, response, cnonce and opaque quoted; algorithm, qop and nc
// tokens (RFC 3261 §25.1; qop unquoted as RFC 7616 §3.4 says).
func (c *Credentials) String() string {
	w := writer{first: true}
	scheme := c.Scheme
	if scheme == "" {
		scheme = "Digest"
	}
	w.b.WriteString(scheme)
	w.quoted("username", c.Username)
	w.quoted("realm", c.Realm)
	w.quoted("nonce", c.Nonce)
	w.quoted("uri", c.URI)
	w.quoted("response", c.Response)
	if c.Algorithm != "" {
		w.tokenOrQuoted("algorithm", c.Algorithm)
	}
	if c.CNonce != "" {
		w.quoted("cnonce", c.CNonce)
	}
	if c.Opaque != "" {
		w.quoted("opaque", c.Opaque)
	}
	if c.QOP != "" {
		w.tokenOrQuoted("qop", c.QOP)
		w.token("nc", FormatNC(c.NC))
	}
	if c.Userhash {
		w.token("userhash", "true")
	}
	w.other(c.Other)
	return w.b.String()
}

// Answer is what Challenge.Authorize needs to know about the request and
// the user.
type Answer struct {
	Method   string // the request's method
	URI      string // the Request-URI as written (digest-uri, RFC 3261 §22.4)
	Username string
	Password string
	// Body is the request body, hashed for qop=auth-int.
	Body []byte
	// NC is the nonce count: 1 for the first request with a nonce, then
	// one more for each reuse (RFC 7616 §3.4). Zero means 1.
	NC uint32
	// CNonce is the client nonce; required when the challenge offers qop
	// or a -sess algorithm.
	CNonce string
}

// ErrQOP is a challenge that offers only qop values this package does not
// implement.
var ErrQOP = errors.New("digest: no supported qop offered")

// Authorize computes the credentials answering the challenge (RFC 3261
// §22.4, RFC 7616 §3.4). It prefers qop=auth, then auth-int, and uses the
// RFC 2069 form without qop, nc and cnonce when the challenge offers no
// qop. With userhash=true the username is hashed (RFC 7616 §3.4.4).
func (c *Challenge) Authorize(a Answer) (*Credentials, error) {
	if !strings.EqualFold(c.Scheme, "Digest") {
		return nil, fmt.Errorf("digest: cannot answer a %q challenge", c.Scheme)
	}
	alg, err := ParseAlgorithm(c.Algorithm)
	if err != nil {
		return nil, err
	}
	qop := ""
	if len(c.QOP) > 0 {
		for _, want := range []string{"auth", "auth-int"} {
			for _, q := range c.QOP {
				if strings.EqualFold(q, want) {
					qop = want
					break
				}
			}
			if qop != "" {
				break
			}
		}
		if qop == "" {
			return nil, fmt.Errorf("%w: %v", ErrQOP, c.QOP)
		}
	}
	nc := a.NC
	if nc == 0 {
		nc = 1
	}
	cnonce := a.CNonce
	if (qop != "" || alg.Sess()) && cnonce == "" {
		return nil, errors.New("digest: a cnonce is needed for qop or -sess")
	}
	cr := &Credentials{
		Scheme:    "Digest",
		Username:  a.Username,
		Realm:     c.Realm,
		Nonce:     c.Nonce,
		URI:       a.URI,
		Algorithm: c.Algorithm,
		Opaque:    c.Opaque,
		QOP:       qop,
		Userhash:  c.Userhash,
	}
	if qop != "" || alg.Sess() {
		cr.CNonce = cnonce
	}
	if qop != "" {
		cr.NC = nc
	}
	ha1 := HA1(alg, a.Username, c.Realm, a.Password, c.Nonce, cr.CNonce)
	cr.Response = Response(alg, ha1, c.Nonce, cr.NC, cr.CNonce, qop, HA2(alg, qop, a.Method, a.URI, a.Body))
	if c.Userhash {
		cr.Username = alg.Hash(a.Username, c.Realm)
	}
	return cr, nil
}

// Verify checks the response of the credentials for a request with the
// given method and body, given the stored H(username:realm:password) of
// their algorithm (RFC 7616 §3.4, §3.9.1). The comparison takes constant
// time. Checking the nonce, its count and the uri against the request is
// the caller's business.
func (c *Credentials) Verify(method string, body []byte, ha1 string) bool {
	alg, err := ParseAlgorithm(c.Algorithm)
	if err != nil {
		return false
	}
	if alg.Sess() {
		ha1 = SessHA1(alg, ha1, c.Nonce, c.CNonce)
	}
	want := Response(alg, ha1, c.Nonce, c.NC, c.CNonce, c.QOP, HA2(alg, c.QOP, method, c.URI, body))
	return subtle.ConstantTimeCompare([]byte(strings.ToLower(c.Response)), []byte(want)) == 1
}
