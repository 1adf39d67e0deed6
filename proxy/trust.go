package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/hlas-voip/hlas/handler"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transport"
)

// trustRule is one compiled entry of routing.trusted, or the rule a
// gateway's URI implies. A flow matches when every part the rule names
// matches: transport, address, port, certificate name.
type trustRule struct {
	proto  string       // UDP, TCP or TLS; "" any
	prefix netip.Prefix // the source addresses; invalid for a cert rule
	port   uint16       // 0: any port
	// udpPort applies port to UDP flows only: a gateway that connects
	// over TCP or TLS does so from an ephemeral port, not the one its
	// URI names.
	udpPort bool
	// name is a cert rule's DNS name, lower case, maybe "*.domain": the
	// peer's verified TLS certificate must carry it.
	name string
}

// matches reports whether a message from src over proto (upper case, src
// unmapped), from a TLS peer whose verified certificate carries names,
// is covered by the rule.
func (r *trustRule) matches(proto string, src netip.AddrPort, names []string) bool {
	if r.proto != "" && r.proto != proto {
		return false
	}
	if r.name != "" {
		// Names mean something only as a TLS handshake verified them.
		if proto != transport.TLS {
			return false
		}
		for _, n := range names {
			if certNameMatches(r.name, n) {
				return true
			}
		}
		return false
	}
	if !r.prefix.Contains(src.Addr()) {
		return false
	}
	if r.port != 0 && (!r.udpPort || proto == transport.UDP) && src.Port() != r.port {
		return false
	}
	return true
}

// certNameMatches reports whether name, a DNS name or common name from a
// verified certificate, satisfies pattern: equal ignoring case, or for
// "*.domain" any name of exactly one more label under domain. A wildcard
// certificate ("*.carrier.example") matches only the same wildcard rule:
// any host of that domain may present it, so it does not prove to be
// one particular host.
func certNameMatches(pattern, name string) bool {
	name = strings.TrimSuffix(name, ".")
	if strings.EqualFold(pattern, name) {
		return true
	}
	domain, ok := strings.CutPrefix(pattern, "*.")
	if !ok || len(name) <= len(domain)+1 {
		return false
	}
	label, suffix := name[:len(name)-len(domain)-1], name[len(name)-len(domain)-1:]
	return suffix[0] == '.' && strings.EqualFold(suffix[1:], domain) &&
		strings.IndexByte(label, '.') < 0 && label != "*"
}

// parseTrustRule reads one entry of routing.trusted:
//
//	192.0.2.0/24            any transport, any port (an address alone too)
//	udp:192.0.2.10          one transport
//	tcp:192.0.2.10:5060     transport and source port
//	udp:[2001:db8::1]:5060  IPv6 with a port goes in brackets
//	192.0.2.10:5060         any transport, that port
//	cert:gw.carrier.example a TLS peer whose verified certificate names it
//	cert:*.carrier.example  ... or any one-label name under the domain
func parseTrustRule(s string) (trustRule, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return trustRule{}, errors.New("empty")
	}
	var r trustRule
	if scheme, rest, ok := strings.Cut(s, ":"); ok {
		switch strings.ToLower(scheme) {
		case "cert":
			name, err := parseCertName(rest)
			if err != nil {
				return trustRule{}, err
			}
			r.name = name
			return r, nil
		case "udp", "tcp", "tls":
			r.proto = strings.ToUpper(scheme)
			s = rest
			if s == "" {
				return trustRule{}, errors.New("no address after the transport")
			}
		default:
			if isWord(scheme) {
				return trustRule{}, fmt.Errorf("%q: want udp:, tcp:, tls: or cert: before the address", scheme+":")
			}
			// An IPv6 address or address:port.
		}
	}
	var addr, port string
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return trustRule{}, errors.New("missing ]")
		}
		addr = s[1:end]
		if after := s[end+1:]; after != "" {
			var ok bool
			if port, ok = strings.CutPrefix(after, ":"); !ok || port == "" {
				return trustRule{}, fmt.Errorf("%q after ]: want :port", after)
			}
		}
	case strings.Count(s, ":") == 1:
		addr, port, _ = strings.Cut(s, ":")
	default:
		addr = s // IPv4, or IPv6 without a port
	}
	p, err := parsePrefix(addr)
	if err != nil {
		return trustRule{}, fmt.Errorf("address %q: want an IP address or CIDR prefix", addr)
	}
	r.prefix = p
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return trustRule{}, fmt.Errorf("port %q: want 1-65535", port)
		}
		r.port = uint16(n)
	}
	return r, nil
}

// isWord reports letters only, one of them not a hex digit: a scheme, where
// an IPv6 address ("fe80::1", "db8::1") has hex digits.
func isWord(s string) bool {
	word := false
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if c < 'a' || c > 'z' {
			return false
		}
		word = word || c > 'f'
	}
	return word
}

// parseCertName checks the name of a cert rule: a DNS name (letters,
// digits, '-', '_', dots between non-empty labels), or "*." and a name of
// at least two labels. It returns it in lower case.
func parseCertName(s string) (string, error) {
	name := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "."))
	rest, wild := strings.CutPrefix(name, "*.")
	if rest == "" {
		return "", errors.New("cert: wants a DNS name")
	}
	for _, label := range strings.Split(rest, ".") {
		if label == "" {
			return "", fmt.Errorf("cert name %q: empty label", s)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("cert name %q: %q not allowed (a wildcard only as the whole first label)", s, c)
			}
		}
	}
	if wild && !strings.Contains(rest, ".") {
		return "", fmt.Errorf("cert name %q: a wildcard wants a domain of two labels or more", s)
	}
	return name, nil
}

// gatewayTrustRule is the rule a gateway's URI implies: its address (maddr
// first, where requests go), only the transport the URI names
// (;transport=, TLS for sips), and for UDP only the port it names. A
// TCP or TLS gateway connects from ephemeral ports, so no port is
// compared for streams; a URI without a port leaves the UDP port open
// too, since the gateway may answer from another socket. A gateway named
// by host name implies no rule: trust it with a cert: rule.
func gatewayTrustRule(u sip.URI) (trustRule, bool) {
	host := u.Hostname()
	if maddr, ok := u.Params.Get("maddr"); ok && maddr != "" {
		host = strings.Trim(maddr, "[]")
	}
	a, ok := sip.ParseIP(host)
	if !ok {
		return trustRule{}, false
	}
	a = a.Unmap().WithZone("")
	r := trustRule{prefix: netip.PrefixFrom(a, a.BitLen()), udpPort: true}
	if t, ok := u.Params.Get("transport"); ok && t != "" {
		// An unsupported transport matches no flow at all.
		r.proto = strings.ToUpper(t)
	}
	if u.Scheme == sip.SchemeSIPS {
		r.proto = transport.TLS
	}
	if u.Port > 0 && u.Port <= 65535 {
		r.port = uint16(u.Port)
	}
	return r, true
}

// PeerNamer is a server transaction that knows the names in the verified
// certificate of the TLS peer its request came from (DNS SANs and common
// name); nil or empty for other transports and unverified peers. The
// server's transactions implement it; TrustedTx and CheckIdentity use it
// for cert: trust rules.
type PeerNamer interface {
	PeerNames() []string
}

// TrustedSource reports whether a request that came over proto (any
// case) from src passes without authentication and has its identity
// believed (docs/trust.md): a routing.trusted rule or a gateway's implied
// rule covers its transport, source address and port, or, over TLS, one
// of peerNames, the names in the peer's verified certificate (DNS SANs
// and common name). The caller vouches that peerNames were verified; nil
// when there are none.
func (p *Proxy) TrustedSource(proto string, src netip.AddrPort, peerNames []string) bool {
	proto = strings.ToUpper(proto) // no allocation when it is already
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	c := p.rt.Load().c
	for i := range c.trusted {
		if c.trusted[i].matches(proto, src, peerNames) {
			return true
		}
	}
	return false
}

// TrustedTx is TrustedSource for the request of tx: its transport and
// source (from its Flow when tx is a FlowTx) and, when tx is a
// PeerNamer, its peer's certificate names.
func (p *Proxy) TrustedTx(tx handler.ServerTx) bool {
	var names []string
	if pn, ok := tx.(PeerNamer); ok && p.rt.Load().c.certRules {
		names = pn.PeerNames() // only when a rule can use them
	}
	f := flowOf(tx)
	return p.TrustedSource(f.Proto, f.Remote, names)
}

// TrustedAddr reports whether some address rule (routing.trusted
// entries other than cert:, and the gateways') covers ip, whatever
// transport and port the rule names. It says an address belongs to a
// trusted peer, for exemptions that see no more than the address (the
// flood guard, before parsing); it must not decide authentication,
// which TrustedSource and TrustedTx do by the whole rule.
func (p *Proxy) TrustedAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	c := p.rt.Load().c
	for i := range c.trusted {
		if r := &c.trusted[i]; r.name == "" && r.prefix.Contains(ip) {
			return true
		}
	}
	return false
}

// trustedHop reports whether a request sent to h goes to a trusted peer,
// by the same rules as TrustedSource but without certificate names: the
// copy of the request is decided before a connection to the hop exists,
// and the proxy's outbound TLS connections are verified against the
// hop's address, so a cert: rule never covers a hop.
func (p *Proxy) trustedHop(h Hop) bool {
	return p.TrustedSource(h.Proto, h.Addr, nil)
}
