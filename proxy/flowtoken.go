package proxy

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"hash/fnv"
	"net/netip"
	"strings"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transport"
)

// Flow tokens carry a dialog's NAT flows in the user part of the proxy's
// Record-Route (the idea of RFC 5626 §5.3, kept to what one proxy that
// serves both ends needs). A phone behind a NAT writes a Contact the proxy
// cannot reach; the INVITE reached it over the flow its REGISTER came on,
// and its own requests come over the flow they were sent on. The token
// remembers both flows — the caller's (where the INVITE came from) and the
// callee's (where the branch went) — each only when it is needed: a
// stream, or an address that differs from the Contact. An in-dialog
// request names the token in its Route; the proxy tells the caller's
// requests from the callee's by the caller's From tag, also in the token,
// and sends the request over the other side's flow instead of to its
// Request-URI. The token is signed together with the dialog's Call-ID, so
// that a forged Route cannot make the proxy send anywhere it was not
// already going, and a token seen in one dialog cannot steer requests of
// another one towards that dialog's phones.

// flowTokenPrefix starts the user part of a Record-Route with a token.
const flowTokenPrefix = "ft-"

// flowToken is a decoded token.
type flowToken struct {
	tag    uint32 // FNV-1a of the caller's From tag
	caller Flow   // where the dialog-creating request came from; zero: none needed
	callee Flow   // where its branch went; zero: none needed
	callID string // the dialog's Call-ID: signed, not carried
}

// flowTokenKey is the context key of the token of the Route entry
// Preprocess removed.
type flowTokenKey struct{}

func tokenFrom(ctx context.Context) (flowToken, bool) {
	t, ok := ctx.Value(flowTokenKey{}).(flowToken)
	return t, ok
}

func tagHash(tag string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(tag))
	return h.Sum32()
}

// flowUser returns the Record-Route user part for req going out on to
// (the target's flow, zero when the branch does not use one), or "" when
// neither side needs its flow remembered.
func (p *Proxy) flowUser(req *sip.Request, in, to Flow) string {
	var t flowToken
	if needsFlow(in, req.Contact) {
		t.caller = in
	}
	if !to.IsZero() && (to.Proto != transport.UDP || !atFlow(to, &req.URI)) {
		// The location service chose the callee's flow (nat.contact):
		// the dialog's later requests take it too, unless the Contact is
		// the flow's very address and port.
		t.callee = to
	}
	if t.caller.IsZero() && t.callee.IsZero() {
		return ""
	}
	t.tag = tagHash(req.From.Tag())
	t.callID = req.CallID
	var raw, text [128]byte // on the stack: the string is the one allocation
	return string(base64.RawURLEncoding.AppendEncode(append(text[:0], flowTokenPrefix...), p.appendToken(raw[:0], t)))
}

// needsFlow reports whether requests to a peer must use the flow f rather
// than the address in its contact: f is a stream (the peer may not accept
// connections: RFC 5626, RFC 5923), or the contact's host is not the
// address f comes from (a NAT, or a host name). The same address at
// another port is the peer's own choice, as for the registrar's
// nat.contact auto rule: a UA that sends from one socket and listens on
// another (sipsak) is reached at its Contact.
func needsFlow(f Flow, contact []sip.Address) bool {
	if f.IsZero() {
		return false
	}
	if f.Proto != transport.UDP {
		return true
	}
	if len(contact) == 0 {
		return true
	}
	u := contact[0].URI
	a, ok := sip.ParseIP(strings.Trim(u.Host, "[]"))
	if !ok {
		return true
	}
	return a.Unmap() != f.Remote.Addr().Unmap()
}

// atFlow reports whether u names the address and port f comes from.
func atFlow(f Flow, u *sip.URI) bool {
	a, ok := sip.ParseIP(strings.Trim(u.Host, "[]"))
	if !ok {
		return false
	}
	port := u.Port
	if port == 0 {
		port = 5060
	}
	return a.Unmap() == f.Remote.Addr().Unmap() && uint16(port) == f.Remote.Port()
}

func protoByte(p string) byte {
	switch p {
	case transport.UDP:
		return 1
	case transport.TCP:
		return 2
	case transport.TLS:
		return 3
	case transport.WS:
		return 4
	case transport.WSS:
		return 5
	}
	return 0
}

func byteProto(b byte) string {
	switch b {
	case 1:
		return transport.UDP
	case 2:
		return transport.TCP
	case 3:
		return transport.TLS
	case 4:
		return transport.WS
	case 5:
		return transport.WSS
	}
	return ""
}

// flowMACLen is the length of the token's truncated HMAC-SHA-256.
const flowMACLen = 8

// appendToken appends the token's bytes to b: flags (bit 0 caller, bit 1
// callee), the tag hash, each flow present as proto, address length,
// address, port; then the MAC.
func (p *Proxy) appendToken(b []byte, t flowToken) []byte {
	start := len(b)
	var flags byte
	if !t.caller.IsZero() {
		flags |= 1
	}
	if !t.callee.IsZero() {
		flags |= 2
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint32(b, t.tag)
	for _, f := range []Flow{t.caller, t.callee} {
		if f.IsZero() {
			continue
		}
		ip := f.Remote.Addr().Unmap().AsSlice()
		b = append(b, protoByte(f.Proto), byte(len(ip)))
		b = append(b, ip...)
		b = binary.BigEndian.AppendUint16(b, f.Remote.Port())
	}
	return p.appendMAC(b, b[start:], t.callID)
}

// macState is an HMAC-SHA-256 keyed with the flow key, kept for reuse
// (Proxy.macs): every in-dialog request with a token checks one, and
// hmac.New costs a handful of allocations.
type macState struct {
	h   hash.Hash
	in  []byte // the MAC's input, token ‖ 0 ‖ Call-ID
	sum [sha256.Size]byte
}

// appendMAC appends to dst the MAC (flowMACLen bytes) that signs a
// token's bytes b with the dialog's Call-ID.
func (p *Proxy) appendMAC(dst, b []byte, callID string) []byte {
	m, _ := p.macs.Get().(*macState)
	if m == nil {
		m = &macState{h: hmac.New(sha256.New, p.flowKey)}
	} else {
		m.h.Reset()
	}
	m.in = append(append(append(m.in[:0], b...), 0), callID...)
	m.h.Write(m.in)
	dst = append(dst, m.h.Sum(m.sum[:0])[:flowMACLen]...)
	if cap(m.in) <= 1024 {
		p.macs.Put(m)
	}
	return dst
}

// decodeToken reads the token of a Record-Route user part in a request of
// the dialog callID; false when user holds none, or one this proxy did not
// sign for that dialog.
func (p *Proxy) decodeToken(user, callID string) (flowToken, bool) {
	s, ok := strings.CutPrefix(user, flowTokenPrefix)
	if !ok || len(s) > 128 {
		return flowToken{}, false
	}
	for i := 0; i < len(s); i++ {
		// The decoder skips CR and LF; a token has neither.
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return flowToken{}, false
		}
	}
	var raw [96]byte // what 128 characters decode to, on the stack
	b, err := base64.RawURLEncoding.Strict().AppendDecode(raw[:0], []byte(s))
	if err != nil || len(b) < 5+flowMACLen {
		return flowToken{}, false
	}
	body, mac := b[:len(b)-flowMACLen], b[len(b)-flowMACLen:]
	var want [flowMACLen]byte
	if !hmac.Equal(mac, p.appendMAC(want[:0], body, callID)) {
		return flowToken{}, false
	}
	t := flowToken{callID: callID}
	flags := body[0]
	t.tag = binary.BigEndian.Uint32(body[1:5])
	rest := body[5:]
	read := func() (Flow, bool) {
		if len(rest) < 2 {
			return Flow{}, false
		}
		proto, n := byteProto(rest[0]), int(rest[1])
		if proto == "" || (n != 4 && n != 16) || len(rest) < 2+n+2 {
			return Flow{}, false
		}
		ip, _ := netip.AddrFromSlice(rest[2 : 2+n])
		port := binary.BigEndian.Uint16(rest[2+n:])
		rest = rest[2+n+2:]
		return Flow{Proto: proto, Remote: netip.AddrPortFrom(ip, port)}, true
	}
	if flags&1 != 0 {
		if t.caller, ok = read(); !ok {
			return flowToken{}, false
		}
	}
	if flags&2 != 0 {
		if t.callee, ok = read(); !ok {
			return flowToken{}, false
		}
	}
	if len(rest) != 0 || flags&^3 != 0 {
		return flowToken{}, false
	}
	return t, true
}

// dialogFlow picks the flow an in-dialog request goes over, given the
// token of the Route it came with: the callee's for a request from the
// caller (its From tag is the caller's), the caller's for one from the
// callee. For a stream whose connection has closed, none: the request
// then goes to its Request-URI, which may still be reachable.
func (p *Proxy) dialogFlow(req *sip.Request, t flowToken) Flow {
	f := t.caller
	if tagHash(req.From.Tag()) == t.tag {
		f = t.callee
	}
	if f.IsZero() {
		return Flow{}
	}
	if f.Proto != transport.UDP {
		c := p.env.Network.Lookup(f.Proto, f.Remote)
		if c == nil {
			return Flow{}
		}
		f.Conn = c
		f.Local = c.LocalAddr()
	}
	return f
}
