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
	if alg, ok := lookupAlgorithm(s); ok {
		return alg, nil
	}
	return 0, fmt.Errorf("%w %q", ErrAlgorithm, s)
}

// lookupAlgorithm is ParseAlgorithm without the error value.
func lookupAlgorithm(s string) (Algorithm, bool) {
	if s == "" {
		return MD5, true
	}
	for i, n := range algorithmNames {
		if strings.EqualFold(n, s) {
			return Algorithm(i), true
		}
	}
	return 0, false
}

// maxHex is the length of the longest hex digest, SHA-256's and
// SHA-512/256's.
const maxHex = 2 * sha256.Size

// scratchLen is the room on the stack for what one digest hashes (user,
// realm and password; method and uri; HA1, nonce, cnonce and HA2): longer
// input is hashed all the same, from the heap.
const scratchLen = 384

// appendSum appends the lower-case hex digest of data: H(data) of RFC 7616
// §3.4. One-shot sums on the stack, no hash.Hash: a digest costs no
// allocation.
func (a Algorithm) appendSum(dst, data []byte) []byte {
	switch a {
	case SHA256, SHA256Sess:
		s := sha256.Sum256(data)
		return hex.AppendEncode(dst, s[:])
	case SHA512_256, SHA512_256Sess:
		s := sha512.Sum512_256(data)
		return hex.AppendEncode(dst, s[:])
	}
	s := md5.Sum(data)
	return hex.AppendEncode(dst, s[:])
}

// appendHash appends the hex digest of the parts joined by ":".
func (a Algorithm) appendHash(dst []byte, parts ...string) []byte {
	var scratch [scratchLen]byte
	b := scratch[:0]
	for i, p := range parts {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, p...)
	}
	return a.appendSum(dst, b)
}

// Hash returns the lower-case hex digest of the parts joined by ":", the
// H(data) and KD(secret, data) of RFC 7616 §3.4.
func (a Algorithm) Hash(parts ...string) string {
	var sum [maxHex]byte
	return string(a.appendHash(sum[:0], parts...))
}

// HA1 computes A1's hash (RFC 7616 §3.4.2): H(username:realm:password), and
// for a -sess algorithm H(H(username:realm:password):nonce:cnonce).
func HA1(alg Algorithm, username, realm, password, nonce, cnonce string) string {
	var sum [maxHex]byte
	ha1 := alg.appendHash(sum[:0], username, realm, password)
	if alg.Sess() {
		var sess [maxHex]byte
		ha1 = appendSessHA1(sess[:0], alg, ha1, nonce, cnonce)
	}
	return string(ha1)
}

// SessHA1 turns a stored H(username:realm:password) into the HA1 of a -sess
// algorithm (RFC 7616 §3.4.2), so that a server keeping only hashes can
// check -sess answers.
func SessHA1(alg Algorithm, ha1, nonce, cnonce string) string {
	var sum [maxHex]byte
	return string(alg.appendHash(sum[:0], ha1, nonce, cnonce))
}

// appendSessHA1 is SessHA1 for an HA1 held in bytes.
func appendSessHA1(dst []byte, alg Algorithm, ha1 []byte, nonce, cnonce string) []byte {
	var scratch [scratchLen]byte
	b := append(scratch[:0], ha1...)
	b = append(b, ':')
	b = append(b, nonce...)
	b = append(b, ':')
	b = append(b, cnonce...)
	return alg.appendSum(dst, b)
}

// HA2 computes A2's hash (RFC 7616 §3.4.3): H(method:uri), and for
// qop=auth-int H(method:uri:H(body)).
func HA2(alg Algorithm, qop, method, uri string, body []byte) string {
	var sum [maxHex]byte
	return string(appendHA2(sum[:0], alg, qop, method, uri, body))
}

// appendHA2 appends HA2 (see HA2).
func appendHA2(dst []byte, alg Algorithm, qop, method, uri string, body []byte) []byte {
	var scratch [scratchLen]byte
	b := append(scratch[:0], method...)
	b = append(b, ':')
	b = append(b, uri...)
	if strings.EqualFold(qop, "auth-int") {
		b = append(b, ':')
		b = alg.appendSum(b, body)
	}
	return alg.appendSum(dst, b)
}

// Response computes the request-digest (RFC 7616 §3.4.1):
// KD(HA1, nonce:nc:cnonce:qop:HA2), or KD(HA1, nonce:HA2) when qop is empty
// (RFC 2069 compatibility, RFC 2617 §3.2.2.1).
func Response(alg Algorithm, ha1, nonce string, nc uint32, cnonce, qop, ha2 string) string {
	var h1, h2, sum [maxHex]byte
	return string(appendResponse(sum[:0], alg, append(h1[:0], ha1...), nonce, nc, cnonce, qop, append(h2[:0], ha2...)))
}

// appendResponse appends the request-digest (see Response).
func appendResponse(dst []byte, alg Algorithm, ha1 []byte, nonce string, nc uint32, cnonce, qop string, ha2 []byte) []byte {
	var scratch [scratchLen]byte
	b := append(scratch[:0], ha1...)
	b = append(b, ':')
	b = append(b, nonce...)
	b = append(b, ':')
	if qop != "" {
		b = appendNC(b, nc)
		b = append(b, ':')
		b = append(b, cnonce...)
		b = append(b, ':')
		b = append(b, qop...)
		b = append(b, ':')
	}
	b = append(b, ha2...)
	return alg.appendSum(dst, b)
}

// FormatNC writes a nonce count as 8 hex digits (RFC 7616 §3.4).
func FormatNC(nc uint32) string {
	var b [8]byte
	return string(appendNC(b[:0], nc))
}

// appendNC appends a nonce count as 8 lower-case hex digits.
func appendNC(b []byte, nc uint32) []byte {
	const digits = "0123456789abcdef"
	for shift := 28; shift >= 0; shift -= 4 {
		b = append(b, digits[nc>>uint(shift)&0xf])
	}
	return b
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
	scheme, rest, err := parseScheme(s)
	if err != nil {
		return nil, err
	}
	c := &Challenge{Scheme: scheme}
	isDigest := strings.EqualFold(scheme, "Digest")
	for {
		var p Param
		var ok bool
		if p, rest, ok, err = nextParam(rest); err != nil {
			return nil, err
		} else if !ok {
			return c, nil
		}
		if !isDigest {
			c.Other = append(c.Other, p)
			continue
		}
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
			for q, more := p.Value, true; more; {
				var opt string
				opt, q, more = strings.Cut(q, ",")
				if opt = strings.TrimSpace(opt); opt != "" {
					c.QOP = append(c.QOP, opt)
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
}

// ParseCredentials parses the value of an Authorization or
// Proxy-Authorization header (RFC 3261 §25.1 credentials).
func ParseCredentials(s string) (*Credentials, error) {
	c := new(Credentials)
	if err := c.Parse(s); err != nil {
		return nil, err
	}
	return c, nil
}

// Parse sets c to the credentials in s, the value of an Authorization or
// Proxy-Authorization header, as ParseCredentials does; on error c is left
// as it was. The fields are substrings of s: a server checking credentials
// in a variable of its own parses them without allocating, unless a value
// holds a quoted-pair, a parameter name is not in lower case or there are
// unknown parameters.
func (c *Credentials) Parse(s string) error {
	scheme, rest, err := parseScheme(s)
	if err != nil {
		return err
	}
	n := Credentials{Scheme: scheme}
	isDigest := strings.EqualFold(scheme, "Digest")
	for {
		var p Param
		var ok bool
		if p, rest, ok, err = nextParam(rest); err != nil {
			return err
		} else if !ok {
			*c = n
			return nil
		}
		if !isDigest {
			n.Other = append(n.Other, p)
			continue
		}
		switch strings.ToLower(p.Name) {
		case "username":
			n.Username = p.Value
		case "realm":
			n.Realm = p.Value
		case "nonce":
			n.Nonce = p.Value
		case "uri":
			n.URI = p.Value
		case "response":
			n.Response = p.Value
		case "algorithm":
			n.Algorithm = p.Value
		case "cnonce":
			n.CNonce = p.Value
		case "opaque":
			n.Opaque = p.Value
		case "qop":
			n.QOP = p.Value
		case "nc":
			v, err := strconv.ParseUint(p.Value, 16, 32)
			if err != nil || len(p.Value) != 8 {
				return fmt.Errorf("%w: nonce-count %q is not 8 hex digits", ErrSyntax, p.Value)
			}
			n.NC = uint32(v)
		case "userhash":
			n.Userhash = strings.EqualFold(p.Value, "true")
		default:
			n.Other = append(n.Other, p)
		}
	}
}

// parseScheme reads the auth-scheme at the start of s and returns it and
// the auth-params after it, white space trimmed. Line folds count as
// white space.
func parseScheme(s string) (scheme, rest string, err error) {
	s = trimLWS(s)
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	if i == 0 {
		return "", "", fmt.Errorf("%w: no auth-scheme", ErrSyntax)
	}
	scheme, rest = s[:i], s[i:]
	if rest != "" && !isLWS(rest[0]) {
		return "", "", fmt.Errorf("%w: bad character after auth-scheme", ErrSyntax)
	}
	return scheme, trimLWS(rest), nil
}

// nextParam reads the next auth-param of rest, a comma-separated list
// ("param=value, param="quoted", ...") with white space trimmed, and
// returns it and the rest of the list; ok is false at the end of the
// list. Values are substrings of rest unless a quoted-pair must be
// resolved.
func nextParam(rest string) (p Param, tail string, ok bool, err error) {
	for rest != "" && rest[0] == ',' { // empty list elements are allowed (RFC 7230 §7)
		rest = trimLWS(rest[1:])
	}
	if rest == "" {
		return Param{}, "", false, nil
	}
	j := 0
	for j < len(rest) && isTokenChar(rest[j]) {
		j++
	}
	if j == 0 {
		return Param{}, "", false, fmt.Errorf("%w: bad auth-param name", ErrSyntax)
	}
	p.Name = rest[:j]
	rest = trimLWS(rest[j:])
	if rest == "" || rest[0] != '=' {
		return Param{}, "", false, fmt.Errorf("%w: auth-param %q has no value", ErrSyntax, p.Name)
	}
	rest = trimLWS(rest[1:])
	if rest != "" && rest[0] == '"' {
		v, n, ok := unquote(rest)
		if !ok {
			return Param{}, "", false, fmt.Errorf("%w: unterminated quoted-string in %q", ErrSyntax, p.Name)
		}
		p.Value, p.Quoted = v, true
		rest = rest[n:]
	} else {
		j = 0
		for j < len(rest) && isTokenChar(rest[j]) {
			j++
		}
		if j == 0 {
			return Param{}, "", false, fmt.Errorf("%w: auth-param %q has an empty value", ErrSyntax, p.Name)
		}
		p.Value = rest[:j]
		rest = rest[j:]
	}
	rest = trimLWS(rest)
	if rest != "" && rest[0] != ',' {
		return Param{}, "", false, fmt.Errorf("%w: expected a comma after %q", ErrSyntax, p.Name)
	}
	return p, rest, true, nil
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
	switch c {
	case '-', '.', '!', '%', '*', '_', '+', '`', '\'', '~':
		return true
	}
	return false
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

// appendQuoted appends s as a quoted-string.
func appendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendQuotedContent(b, s)
	return append(b, '"')
}

// appendQuotedContent appends s with '"' and '\\' escaped as quoted-pairs,
// the inside of a quoted-string.
func appendQuotedContent(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return b
}

// writer appends a header value: the scheme, then auth-params. Its
// methods return the writer they have written with (w = w.token(...)), so
// that the buffer of String stays on the stack.
type writer struct {
	b     []byte
	first bool // no auth-param written yet
}

func (w writer) sep(name string) writer {
	if w.first {
		w.b = append(w.b, ' ')
		w.first = false
	} else {
		w.b = append(w.b, ", "...)
	}
	w.b = append(w.b, name...)
	w.b = append(w.b, '=')
	return w
}

func (w writer) quoted(name, v string) writer {
	w = w.sep(name)
	w.b = appendQuoted(w.b, v)
	return w
}

func (w writer) token(name, v string) writer {
	w = w.sep(name)
	w.b = append(w.b, v...)
	return w
}

func (w writer) tokenOrQuoted(name, v string) writer {
	if isToken(v) {
		return w.token(name, v)
	}
	return w.quoted(name, v)
}

func (w writer) other(ps []Param) writer {
	for _, p := range ps {
		if p.Quoted || !isToken(p.Value) {
			w = w.quoted(p.Name, p.Value)
		} else {
			w = w.token(p.Name, p.Value)
		}
	}
	return w
}

// stringLen is the room on the stack for a header value that String
// writes; a longer one costs one more allocation.
const stringLen = 512

// String writes the challenge as a header value. qop-options, realm,
// nonce, opaque and domain are quoted-strings, algorithm and stale tokens
// (RFC 3261 §25.1).
func (c *Challenge) String() string {
	var buf [stringLen]byte
	return string(c.AppendTo(buf[:0]))
}

// AppendTo appends the challenge as String writes it.
func (c *Challenge) AppendTo(b []byte) []byte {
	w := writer{b: b, first: true}
	scheme := c.Scheme
	if scheme == "" {
		scheme = "Digest"
	}
	w.b = append(w.b, scheme...)
	if c.Realm != "" || strings.EqualFold(scheme, "Digest") {
		w = w.quoted("realm", c.Realm)
	}
	if c.Domain != "" {
		w = w.quoted("domain", c.Domain)
	}
	if c.Nonce != "" {
		w = w.quoted("nonce", c.Nonce)
	}
	if c.Opaque != "" {
		w = w.quoted("opaque", c.Opaque)
	}
	if c.Stale {
		w = w.token("stale", "true")
	}
	if c.Algorithm != "" {
		w = w.tokenOrQuoted("algorithm", c.Algorithm)
	}
	if len(c.QOP) > 0 {
		w = w.sep("qop")
		w.b = append(w.b, '"')
		for i, q := range c.QOP {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			w.b = appendQuotedContent(w.b, q)
		}
		w.b = append(w.b, '"')
	}
	if c.Charset != "" {
		w = w.tokenOrQuoted("charset", c.Charset)
	}
	if c.Userhash {
		w = w.token("userhash", "true")
	}
	w = w.other(c.Other)
	return w.b
}

// String writes the credentials as a header value: username, realm,
// nonce, uri, response, cnonce and opaque quoted; algorithm, qop and nc
// tokens (RFC 3261 §25.1; qop unquoted as RFC 7616 §3.4 says).
func (c *Credentials) String() string {
	var buf [stringLen]byte
	return string(c.AppendTo(buf[:0]))
}

// AppendTo appends the credentials as String writes them.
func (c *Credentials) AppendTo(b []byte) []byte {
	w := writer{b: b, first: true}
	scheme := c.Scheme
	if scheme == "" {
		scheme = "Digest"
	}
	w.b = append(w.b, scheme...)
	w = w.quoted("username", c.Username)
	w = w.quoted("realm", c.Realm)
	w = w.quoted("nonce", c.Nonce)
	w = w.quoted("uri", c.URI)
	w = w.quoted("response", c.Response)
	if c.Algorithm != "" {
		w = w.tokenOrQuoted("algorithm", c.Algorithm)
	}
	if c.CNonce != "" {
		w = w.quoted("cnonce", c.CNonce)
	}
	if c.Opaque != "" {
		w = w.quoted("opaque", c.Opaque)
	}
	if c.QOP != "" {
		w = w.tokenOrQuoted("qop", c.QOP)
		w = w.sep("nc")
		w.b = appendNC(w.b, c.NC)
	}
	if c.Userhash {
		w = w.token("userhash", "true")
	}
	w = w.other(c.Other)
	return w.b
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
	var h1, sess, h2, sum [maxHex]byte
	ha1 := alg.appendHash(h1[:0], a.Username, c.Realm, a.Password)
	if alg.Sess() {
		ha1 = appendSessHA1(sess[:0], alg, ha1, c.Nonce, cr.CNonce)
	}
	cr.Response = string(appendResponse(sum[:0], alg, ha1, c.Nonce, cr.NC, cr.CNonce, qop, appendHA2(h2[:0], alg, qop, a.Method, a.URI, a.Body)))
	if c.Userhash {
		cr.Username = alg.Hash(a.Username, c.Realm)
	}
	return cr, nil
}

// Verify checks the response of the credentials for a request with the
// given method and body, given the stored H(username:realm:password) of
// their algorithm (RFC 7616 §3.4, §3.9.1). The comparison takes constant
// time. Checking the nonce, its count and the uri against the request is
// the caller's business. It allocates nothing.
func (c *Credentials) Verify(method string, body []byte, ha1 string) bool {
	alg, ok := lookupAlgorithm(c.Algorithm)
	if !ok {
		return false
	}
	var h1, sess, h2, want [maxHex]byte
	ha1b := append(h1[:0], ha1...)
	if alg.Sess() {
		ha1b = appendSessHA1(sess[:0], alg, ha1b, c.Nonce, c.CNonce)
	}
	wantb := appendResponse(want[:0], alg, ha1b, c.Nonce, c.NC, c.CNonce, c.QOP, appendHA2(h2[:0], alg, c.QOP, method, c.URI, body))
	// The response is hex: compared without regard to case (a response
	// with any other byte cannot match). Its length is no secret.
	if len(c.Response) != len(wantb) {
		return false
	}
	var got [maxHex]byte
	for i := 0; i < len(c.Response); i++ {
		b := c.Response[i]
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		got[i] = b
	}
	return subtle.ConstantTimeCompare(got[:len(wantb)], wantb) == 1
}
