package media

import (
	"bytes"
	"net/netip"
	"strings"
)

// The media engines and the proxy's relay policy share one test of
// whether a party is behind a NAT, from its session description.

// PrivateSDP reports whether an SDP's connection (c=) addresses include a
// private one (RFC 1918, RFC 6598 shared space, RFC 4193, link-local)
// that is not src: the sender wrote an address of its own network, and
// its SIP came through a NAT. This is nathelper's "SDP contains a private
// address" test, less the case of a sender on the server's own private
// network (its source is the address it wrote).
func PrivateSDP(sdp []byte, src netip.Addr) bool {
	for line := range bytes.Lines(sdp) {
		rest, ok := bytes.CutPrefix(line, []byte("c="))
		if !ok {
			continue
		}
		// c=<nettype> <addrtype> <connection-address>[/ttl[/n]] (RFC 8866 §5.7)
		f := strings.Fields(string(rest))
		if len(f) < 3 || f[0] != "IN" || (f[1] != "IP4" && f[1] != "IP6") {
			continue
		}
		host, _, _ := strings.Cut(f[2], "/")
		a, err := netip.ParseAddr(host)
		if err != nil {
			continue
		}
		if a = a.Unmap(); a != src.Unmap() && Private(a) {
			return true
		}
	}
	return false
}

// sharedSpace is RFC 6598's carrier-grade NAT range.
var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

// Private reports an address of a network behind a NAT: RFC 1918, RFC
// 6598 shared space, RFC 4193, link-local.
func Private(a netip.Addr) bool {
	return a.IsPrivate() || a.IsLinkLocalUnicast() || sharedSpace.Contains(a)
}
