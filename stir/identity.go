package stir

import (
	"errors"
	"strings"
)

// IdentityParams are the parameters of an Identity header (RFC 8224 §4.1).
// Unknown parameters (ident-info-extension) are skipped.
type IdentityParams struct {
	Info string // the URI of the signer's certificate, without angle brackets
	Alg  string // "ES256" when absent from the header (RFC 8224 §4.1)
	Ppt  string // PASSporT extension, "" when absent
}

// maxIdentityLen bounds the header value a verifier looks at: a SHAKEN
// Identity header is about 800 bytes.
const maxIdentityLen = 8192

var (
	errIdentityEmpty  = errors.New("stir: Identity: empty")
	errIdentityLong   = errors.New("stir: Identity: too long")
	errIdentityToken  = errors.New("stir: Identity: bad character in signed-identity-digest")
	errIdentityParam  = errors.New("stir: Identity: malformed parameter")
	errIdentityDup    = errors.New("stir: Identity: repeated parameter")
	errIdentityNoInfo = errors.New("stir: Identity: no info parameter")
)

// ParseIdentity splits an Identity header value into its
// signed-identity-digest (the PASSporT) and its parameters, following
// RFC 8224 §4.1:
//
//	Identity = signed-identity-digest SEMI ident-info *( SEMI ident-info-params )
//	ident-info = "info" EQUAL ident-info-uri      ; LAQUOT absoluteURI RAQUOT
//
// It is lenient where peers differ: whitespace around ";" and "=", an info
// URI without angle brackets, quoted parameter values and parameter names
// in any case are accepted. The info parameter is required; a parameter
// given twice is an error.
func ParseIdentity(h string) (token string, params IdentityParams, err error) {
	if len(h) > maxIdentityLen {
		return "", IdentityParams{}, errIdentityLong
	}
	h = trimLWS(h)
	end := strings.IndexByte(h, ';')
	if end < 0 {
		end = len(h)
	}
	token = trimLWS(h[:end])
	if token == "" {
		return "", IdentityParams{}, errIdentityEmpty
	}
	for i := 0; i < len(token); i++ {
		if !isDigestChar(token[i]) {
			return "", IdentityParams{}, errIdentityToken
		}
	}
	rest := h[end:]
	var seenInfo, seenAlg, seenPpt bool
	for len(rest) > 0 {
		rest = trimLWS(rest[1:]) // skip ';'
		name, value, next, err := nextParam(rest)
		if err != nil {
			return "", IdentityParams{}, err
		}
		rest = next
		switch {
		case strings.EqualFold(name, "info"):
			if seenInfo {
				return "", IdentityParams{}, errIdentityDup
			}
			seenInfo = true
			params.Info = value
		case strings.EqualFold(name, "alg"):
			if seenAlg {
				return "", IdentityParams{}, errIdentityDup
			}
			seenAlg = true
			params.Alg = value
		case strings.EqualFold(name, "ppt"):
			if seenPpt {
				return "", IdentityParams{}, errIdentityDup
			}
			seenPpt = true
			params.Ppt = value
		}
	}
	if params.Info == "" {
		return "", IdentityParams{}, errIdentityNoInfo
	}
	if params.Alg == "" {
		params.Alg = "ES256"
	}
	return token, params, nil
}

// nextParam reads one name[=value] parameter from s and returns what
// follows it, starting at the next ';' (or empty). The value may be a
// <URI> (which may hold ';'), a quoted string or a token.
func nextParam(s string) (name, value, rest string, err error) {
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	name = s[:i]
	if name == "" {
		return "", "", "", errIdentityParam
	}
	s = trimLWS(s[i:])
	if len(s) == 0 || s[0] == ';' {
		return name, "", s, nil
	}
	if s[0] != '=' {
		return "", "", "", errIdentityParam
	}
	s = trimLWS(s[1:])
	switch {
	case strings.HasPrefix(s, "<"):
		end := strings.IndexByte(s, '>')
		if end < 0 {
			return "", "", "", errIdentityParam
		}
		value = trimLWS(s[1:end])
		s = s[end+1:]
	case strings.HasPrefix(s, `"`):
		end := strings.IndexByte(s[1:], '"')
		if end < 0 {
			return "", "", "", errIdentityParam
		}
		value = s[1 : 1+end]
		s = s[2+end:]
	default:
		j := 0
		for j < len(s) && s[j] != ';' && s[j] != ' ' && s[j] != '\t' {
			if s[j] == '<' || s[j] == '>' || s[j] == '"' || s[j] < 0x21 || s[j] > 0x7e {
				return "", "", "", errIdentityParam
			}
			j++
		}
		value = s[:j]
		s = s[j:]
	}
	if value == "" {
		return "", "", "", errIdentityParam
	}
	s = trimLWS(s)
	if len(s) > 0 && s[0] != ';' {
		return "", "", "", errIdentityParam
	}
	return name, value, s, nil
}

// trimLWS removes the linear whitespace a folded header may still carry.
func trimLWS(s string) string {
	return strings.Trim(s, " \t\r\n")
}

// isDigestChar reports base64-char / "." of RFC 8224 §4.1.
func isDigestChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
		c == '/' || c == '+' || c == '-' || c == '_' || c == '=' || c == '.'
}

// isTokenChar reports the token characters of RFC 3261 §25.1.
func isTokenChar(c byte) bool {
	if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
		return true
	}
	switch c {
	case '-', '.', '!', '%', '*', '_', '+', '`', '\'', '~':
		return true
	}
	return false
}
