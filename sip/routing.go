package sip

import (
	"net/netip"
	"strconv"
	"strings"
)

// StampVia records in the top Via where the request really came from
// (RFC 3261 §18.2.1, RFC 3581 §4): received when the sent-by host is not
// the source address, or whenever rport was asked for; rport then gets the
// source port. A received parameter the sender wrote itself is never
// trusted: it is overwritten with the real source (or removed when the
// sent-by already is the source), or responses could be aimed anywhere.
func (r *Request) StampVia(src netip.AddrPort) {
	if len(r.Via) == 0 {
		return
	}
	v := &r.Via[0]
	ip := src.Addr().Unmap()
	_, rport := v.RPort()
	sentBy, isIP := ParseIP(strings.Trim(v.Host, "[]"))
	set := rport || !isIP || sentBy.Unmap() != ip
	del := !set && v.Params.Has("received")
	if !set && !del {
		return
	}
	// The parameters are rewritten once, on the stack, as
	// Set("received", ip) (or Del("received")) then Set("rport", port)
	// would write them: one allocation for every request received, not
	// four.
	var buf [160]byte
	b := buf[:0]
	var ipBuf [48]byte
	ipText := ip.AppendTo(ipBuf[:0])
	if !ip.IsValid() {
		ipText = append(ipText, ip.String()...)
	}
	gotReceived, gotRPort := false, false
	v.Params.Each(func(name, value string, hasValue bool) bool {
		switch {
		case strings.EqualFold(name, "received") && (del || !gotReceived):
			if set {
				gotReceived = true
				b = append(append(b, ";received="...), ipText...)
			}
			return true // Del drops every one
		case rport && !gotRPort && strings.EqualFold(name, "rport"):
			gotRPort = true
			b = strconv.AppendUint(append(b, ";rport="...), uint64(src.Port()), 10)
			return true
		}
		b = append(append(b, ';'), name...)
		if hasValue {
			b = append(append(b, '='), value...)
		}
		return true
	})
	if set && !gotReceived {
		b = append(append(b, ";received="...), ipText...)
	}
	v.Params = Params(b)
}

// ResponseTarget is where a response goes over an unreliable transport, or
// over a new connection when the request's one has closed (RFC 3261
// §18.2.2, RFC 3581 §4): the received address (else the sent-by host when it
// is an IP address, else the source address), and the rport value (else
// the source port when forceRPort, else the sent-by port, else defPort).
// v is the top Via of the response (the request's, stamped); src the
// request's source address.
func ResponseTarget(v *Via, src netip.AddrPort, forceRPort bool, defPort int) netip.AddrPort {
	if v == nil {
		return src
	}
	addr := src.Addr().Unmap()
	if r := v.Received(); r != "" {
		if a, ok := ParseIP(strings.Trim(r, "[]")); ok {
			addr = a.Unmap()
		}
	} else if a, ok := ParseIP(strings.Trim(v.Host, "[]")); ok {
		addr = a.Unmap()
	}
	port := v.Port
	if rp, ok := v.RPort(); ok && rp != 0 {
		port = rp
	} else if forceRPort {
		port = int(src.Port())
	}
	if port == 0 {
		port = defPort
	}
	return netip.AddrPortFrom(addr, uint16(port))
}

// ParseIP is netip.ParseAddr for a host that may well be a name (without
// brackets): a name is told apart first, without the error value ParseAddr
// allocates for it, which on a per-message path is an allocation per
// message.
func ParseIP(host string) (netip.Addr, bool) {
	if host == "" || !(host[0] >= '0' && host[0] <= '9' || strings.IndexByte(host, ':') >= 0) {
		return netip.Addr{}, false // an IPv4 address starts with a digit, an IPv6 one has colons
	}
	a, err := netip.ParseAddr(host)
	return a, err == nil
}
