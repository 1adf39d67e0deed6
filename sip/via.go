package sip

import (
	"errors"
	"strconv"
	"strings"
)

// MagicCookie starts every branch made by an RFC 3261 element (§8.1.1.7).
const MagicCookie = "z9hG4bK"

// Via is one via-parm of a Via header field (RFC 3261 §20.42, RFC 3581).
type Via struct {
	// Proto is protocol name and version, "SIP/2.0".
	Proto string
	// Transport is as written ("UDP", "TCP", "TLS", "WS", ...).
	Transport string
	Host      string // sent-by host; IPv6 references keep their brackets
	Port      int    // sent-by port, 0 when absent
	Params    Params
}

var errVia = errors.New("malformed Via")

const sip20 = "SIP/2.0"

// parse parses one via-parm, allowing LWS wherever RFC 3261 §25.1 allows
// SWS (around "/", ":", ";" and "="). strict=false accepts anything after
// the sent-by as raw parameters, to salvage the sent-by of a broken Via so
// that a 400 can still be routed back.
func (v *Via) parse(s string, strict bool) error {
	name, s, ok := cutTrim(s, '/')
	if !ok || !isToken(name) {
		return errVia
	}
	version, s, ok := cutTrim(s, '/')
	if !ok || !isToken(version) {
		return errVia
	}
	if name == "SIP" && version == "2.0" {
		v.Proto = sip20
	} else {
		v.Proto = name + "/" + version
	}
	s = trimLWS(s)
	i := 0
	for i < len(s) && charClass[s[i]]&cToken != 0 {
		i++
	}
	if i == 0 || i == len(s) || !isLWS(s[i]) {
		return errVia
	}
	v.Transport = s[:i]
	s = trimLWS(s[i:])
	// sent-by
	if s == "" {
		return errVia
	}
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 || !validIPv6Ref(s[1:end]) {
			return errVia
		}
		i = end + 1
	} else {
		i = 0
		for i < len(s) && charClass[s[i]]&cHost != 0 {
			i++
		}
		if i == 0 {
			return errVia
		}
	}
	v.Host = s[:i]
	rest := s[i:]
	s = trimLWS(rest)
	if len(s) > 0 && s[0] == ':' {
		s = trimLWS(s[1:])
		j := 0
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		p, ok := parseUint(s[:j], 65535)
		if !ok || p == 0 {
			return errVia
		}
		v.Port = int(p)
		rest = s[j:]
		s = trimLWS(rest)
	}
	if s == "" {
		return nil
	}
	if !strict {
		if s[0] != ';' {
			// Keep the white space before the junk, so that the Via of a
			// 400 equals the request's (RFC 3261 §8.2.6.2) instead of
			// gluing the junk to the sent-by.
			s = strings.TrimRight(rest, " \t\r\n")
		}
		v.Params = Params(s)
		return nil
	}
	if s[0] != ';' {
		return errVia
	}
	p, err := parseHeaderParams(s)
	if err != nil {
		return errVia
	}
	v.Params = p
	return nil
}

// cutTrim splits s at the first sep and trims LWS from the part before it.
func cutTrim(s string, sep byte) (before, after string, ok bool) {
	i := strings.IndexByte(s, sep)
	if i < 0 {
		return "", s, false
	}
	return trimLWS(s[:i]), s[i+1:], true
}

// Branch returns the branch parameter, or "".
func (v *Via) Branch() string {
	b, _ := v.Params.Get("branch")
	return b
}

// Received returns the received parameter (RFC 3261 §18.2.1), or "".
func (v *Via) Received() string {
	r, _ := v.Params.Get("received")
	return r
}

// RPort returns the rport parameter (RFC 3581): present reports whether it
// is there at all, port its value (0 when the parameter has no value).
func (v *Via) RPort() (port int, present bool) {
	s, ok := v.Params.Get("rport")
	if !ok {
		return 0, false
	}
	p, _ := parseUint(s, 65535)
	return int(p), true
}

// SentBy returns host[:port] as written in the Via.
func (v *Via) SentBy() string {
	if v.Port == 0 {
		return v.Host
	}
	return v.Host + ":" + strconv.Itoa(v.Port)
}

// AppendTo appends the via-parm as written on the wire.
func (v *Via) AppendTo(b []byte) []byte {
	if v.Proto == "" {
		b = append(b, sip20...)
	} else {
		b = append(b, v.Proto...)
	}
	b = append(b, '/')
	b = append(b, v.Transport...)
	b = append(b, ' ')
	b = append(b, v.Host...)
	if v.Port != 0 {
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(v.Port), 10)
	}
	return append(b, v.Params...)
}

// String returns the via-parm as written on the wire.
func (v Via) String() string { return string(v.AppendTo(nil)) }

// NewBranch is a helper for callers that build their own branch: it
// prefixes the magic cookie.
func NewBranch(unique string) string { return MagicCookie + unique }
