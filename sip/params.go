package sip

import (
	"errors"
	"strings"
	"unsafe"
)

// Params is a parameter list as written on the wire, ";name=value;flag",
// with a leading ";" when non-empty. Keeping the raw text makes parsing and
// writing free of allocations; lookups scan it, which is fast for the
// handful of parameters real messages carry. Names compare case-insensitively
// (RFC 3261 §7.3.1, §19.1.4). Values are returned raw: quoted strings keep
// their quotes and URI parameters their escapes.
type Params string

// Each calls fn for every parameter in order until fn returns false. A
// parameter without "=" has an empty value and hasValue false.
func (p Params) Each(fn func(name, value string, hasValue bool) bool) {
	for s := string(p); s != ""; {
		var elem string
		if elem, s = nextParam(s); elem == "" {
			return // only ";" were left
		}
		name, value, has := elem, "", false
		if i := strings.IndexByte(elem, '='); i >= 0 {
			name, value, has = elem[:i], elem[i+1:], true
		}
		if !fn(name, value, has) {
			return
		}
	}
}

// nextParam splits the first parameter off s, a list as Params holds it
// (";" before each parameter, doubled ones skipped), and returns it
// ("" when only ";" are left) and the rest of the list.
func nextParam(s string) (elem, rest string) {
	for s != "" && s[0] == ';' {
		s = s[1:]
	}
	end := paramEnd(s)
	return s[:end], s[end:]
}

// paramEnd returns the index of the ";" that ends the first parameter of s,
// skipping quoted strings, or len(s).
func paramEnd(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ';':
			return i
		case '"':
			if e := quotedEnd(s[i:]); e > 0 {
				i += e - 1
			}
		}
	}
	return len(s)
}

// Get returns the value of the named parameter and whether it is present.
// It walks the list itself rather than through Each: it runs several times
// per message (branch, tags, rport, expires), and calling a closure for
// each parameter makes a lookup some 15% slower.
func (p Params) Get(name string) (value string, ok bool) {
	for s := string(p); s != ""; {
		var elem string
		if elem, s = nextParam(s); elem == "" {
			break
		}
		n, v := elem, ""
		if i := strings.IndexByte(elem, '='); i >= 0 {
			n, v = elem[:i], elem[i+1:]
		}
		if len(n) == len(name) && strings.EqualFold(n, name) {
			return v, true
		}
	}
	return "", false
}

// Has reports whether the named parameter is present.
func (p Params) Has(name string) bool {
	_, ok := p.Get(name)
	return ok
}

// Set returns p with the named parameter set to value, replacing an existing
// one in place or appending it. An empty value writes a flag (";lr").
func (p Params) Set(name, value string) Params {
	return paramsOf(p.AppendSet(make([]byte, 0, len(p)+len(name)+len(value)+2), name, value))
}

// AppendSet appends to dst what Set returns, for a caller that builds a
// header of its own and would only copy Set's string into it.
func (p Params) AppendSet(dst []byte, name, value string) []byte {
	done := false
	p.Each(func(n, v string, has bool) bool {
		if !done && strings.EqualFold(n, name) {
			done = true
			n, v, has = name, value, value != ""
		}
		dst = appendParam(dst, n, v, has)
		return true
	})
	if !done {
		dst = appendParam(dst, name, value, value != "")
	}
	return dst
}

// Del returns p without the named parameter.
func (p Params) Del(name string) Params {
	if !p.Has(name) {
		return p
	}
	return paramsOf(p.AppendDel(make([]byte, 0, len(p)), name))
}

// AppendDel appends to dst what Del returns (see AppendSet).
func (p Params) AppendDel(dst []byte, name string) []byte {
	if !p.Has(name) {
		return append(dst, p...)
	}
	p.Each(func(n, v string, has bool) bool {
		if !strings.EqualFold(n, name) {
			dst = appendParam(dst, n, v, has)
		}
		return true
	})
	return dst
}

// appendParam appends ";name" or ";name=value".
func appendParam(dst []byte, name, value string, hasValue bool) []byte {
	dst = append(dst, ';')
	dst = append(dst, name...)
	if hasValue {
		dst = append(dst, '=')
		dst = append(dst, value...)
	}
	return dst
}

// paramsOf turns a buffer nothing else refers to into Params without
// copying it, as strings.Builder does.
func paramsOf(b []byte) Params {
	return Params(unsafe.String(unsafe.SliceData(b), len(b)))
}

var (
	errEmptyParam = errors.New("empty parameter")
	errParamName  = errors.New("invalid parameter name")
	errParamValue = errors.New("invalid parameter value")
)

// parseHeaderParams validates generic-param lists of header fields
// (RFC 3261 §25.1: generic-param = token [ EQUAL gen-value ], gen-value =
// token / host / quoted-string) and returns them with white space around
// the separators removed. s starts at the first ";". Values are accepted
// liberally: anything but white space, ";" and "," (an IPv6 address without
// brackets is common in received=, RFC 5118 §4.5).
func parseHeaderParams(s string) (Params, error) {
	if !hasLWS(s) {
		if err := checkHeaderParams(s); err != nil {
			return "", err
		}
		return Params(s), nil
	}
	// Rare: LWS around ";" or "=". Rebuild without it.
	var b strings.Builder
	b.Grow(len(s))
	rest := s
	for len(rest) > 0 {
		rest = trimLWS(rest)
		if rest == "" {
			break
		}
		if rest[0] != ';' {
			return "", errParamName
		}
		rest = trimLWS(rest[1:])
		end := paramEnd(rest)
		elem := rest[:end]
		rest = rest[end:]
		name, value, has := strings.Cut(elem, "=")
		name = trimLWS(name)
		b.WriteByte(';')
		b.WriteString(name)
		if has {
			b.WriteByte('=')
			b.WriteString(trimLWS(value))
		}
	}
	out := b.String()
	if err := checkHeaderParams(out); err != nil {
		return "", err
	}
	return Params(out), nil
}

func checkHeaderParams(s string) error {
	return checkParams(s, isToken, validGenValue)
}

// checkParams walks a ";"-separated list strictly: every element must be a
// valid name, optionally "=" and a valid value; ";;" and a trailing ";" are
// empty parameters and rejected (RFC 4475 §3.1.2.1).
func checkParams(s string, validName, validValue func(string) bool) error {
	for len(s) > 0 {
		if s[0] != ';' {
			return errParamName
		}
		s = s[1:]
		end := paramEnd(s)
		elem := s[:end]
		s = s[end:]
		if elem == "" {
			return errEmptyParam
		}
		name, value, has := strings.Cut(elem, "=")
		if !validName(name) {
			return errParamName
		}
		if has && !validValue(value) {
			return errParamValue
		}
	}
	return nil
}

func validGenValue(v string) bool {
	if v == "" {
		return false
	}
	if v[0] == '"' {
		return quotedEnd(v) == len(v)
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case isLWS(c), c == ';', c == ',', c == '"', c < 0x21, c == 0x7f:
			return false
		}
	}
	return true
}

// checkURIParams validates uri-parameters (RFC 3261 §25.1: pname [ "=" pvalue ],
// paramchar = param-unreserved / unreserved / escaped).
func checkURIParams(s string) error {
	return checkParams(s, isParamChars, isParamChars)
}

func isParamChars(s string) bool { return s != "" && allOf(s, cUnres|cParam, true) }
