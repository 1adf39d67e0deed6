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
	sentBy, err := netip.ParseAddr(strings.Trim(v.Host, "[]"))
	switch {
	case rport || err != nil || sentBy.Unmap() != ip:
		v.Params = v.Params.Set("received", ip.String())
	case v.Params.Has("received"):
		v.Params = v.Params.Del("received")
	}
	if rport {
		v.Params = v.Params.Set("rport", strconv.Itoa(int(src.Port())))
	}
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
		if a, err := netip.ParseAddr(strings.Trim(r, "[]")); err == nil {
			addr = a.Unmap()
		}
	} else if a, err := netip.ParseAddr(strings.Trim(v.Host, "[]")); err == nil {
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
