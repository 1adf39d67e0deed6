package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/resolve"
	"github.com/hlas-voip/hlas/sip/transport"
)

// Hop is one place to send a request to: a transport and an address
// (RFC 3263 §4).
type Hop struct {
	// Proto is UDP, TCP or TLS.
	Proto string
	// Addr is the IP address and port.
	Addr netip.AddrPort
	// Host is the name the address was found under, for TLS server name
	// checks; the address itself for a numeric host.
	Host string
}

// String returns "udp:192.0.2.1:5060", the form ParseHop reads.
func (h Hop) String() string { return strings.ToLower(h.Proto) + ":" + h.Addr.String() }

// ParseHop reads "udp:192.0.2.1:5060", "tcp:[2001:db8::1]:5060" or
// "tls:192.0.2.1:5061".
func ParseHop(s string) (Hop, error) {
	proto, ap, ok := strings.Cut(s, ":")
	p := strings.ToUpper(proto)
	if !ok || (p != transport.UDP && p != transport.TCP && p != transport.TLS) {
		return Hop{}, fmt.Errorf("hop %q: want udp|tcp|tls:host:port", s)
	}
	addr, err := netip.ParseAddrPort(ap)
	if err != nil {
		return Hop{}, fmt.Errorf("hop %q: %w", s, err)
	}
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	return Hop{Proto: p, Addr: addr, Host: addr.Addr().String()}, nil
}

// Failure says why a hop did not work (RFC 3263 §4.3).
type Failure int

// Failures after which a request moves on to the next hop.
const (
	// FailTransport is a transport error (RFC 3261 §8.1.3.1, §18.4).
	FailTransport Failure = iota + 1
	// FailTimeout is a client transaction that timed out (Timer B or F).
	FailTimeout
	// FailUnavailable is a 503 response (RFC 3263 §4.3).
	FailUnavailable
)

// Hops is the ordered result of a Resolver, walked with Next until a hop
// works; a hop that failed is reported with Fail (RFC 3263 §4.3), and the
// request goes, with a new branch, to the next one. Implementations are
// safe for concurrent use.
type Hops interface {
	// Next returns the next hop to try; false when none is left.
	Next() (Hop, bool)
	// Fail reports that h did not work.
	Fail(h Hop, why Failure)
}

// Resolver finds where a request to a URI goes: the next hops of RFC 3263
// in order. StaticResolver serves IP literals, configured routes and plain
// address records; package sip/resolve does NAPTR and SRV.
type Resolver interface {
	Resolve(ctx context.Context, uri sip.URI) (Hops, error)
}

// ResolverFunc adapts a function to a Resolver.
type ResolverFunc func(ctx context.Context, uri sip.URI) (Hops, error)

// Resolve calls f.
func (f ResolverFunc) Resolve(ctx context.Context, uri sip.URI) (Hops, error) { return f(ctx, uri) }

// HopList is a fixed list of hops: Next walks it once, Fail does nothing
// more.
type HopList struct {
	mu   sync.Mutex
	list []Hop
	next int
	one  [1]Hop // list's array for a single hop (singleHop)
}

// NewHopList returns the hops in order.
func NewHopList(hops ...Hop) *HopList { return &HopList{list: hops} }

// singleHop is NewHopList(h) in one allocation.
func singleHop(h Hop) *HopList {
	l := &HopList{one: [1]Hop{h}}
	l.list = l.one[:]
	return l
}

// Next implements Hops.
func (l *HopList) Next() (Hop, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.next >= len(l.list) {
		return Hop{}, false
	}
	l.next++
	return l.list[l.next-1], true
}

// Fail implements Hops.
func (l *HopList) Fail(Hop, Failure) {}

// StaticResolver resolves a URI from a configured route for its host (or
// host:port), an IP literal, or else through DNS: RFC 3263 (NAPTR, SRV,
// A/AAAA, names in the resolver's hosts file included) with DNS set, then
// the system resolver's address records with LookupDNS. Without DNS the
// transport is the URI's transport parameter, TLS for sips, else UDP, and
// the port defaults to 5060 (5061 for TLS). A maddr parameter replaces the
// host (RFC 3261 §19.1.1).
type StaticResolver struct {
	// Routes maps a lower-case host or host:port to its hops.
	Routes map[string][]Hop
	// DNS locates host names without a route by RFC 3263.
	DNS *resolve.Resolver
	// LookupDNS allows address-record lookups of host names by the system
	// resolver when DNS is nil or finds nothing; without either, a host
	// name with no route fails.
	LookupDNS bool
}

// lookup reports whether resolving u asks the DNS: its host (or maddr) is
// not an IP literal and has no configured route.
func (r *StaticResolver) lookup(u sip.URI) bool {
	if r.DNS == nil && !r.LookupDNS {
		return false
	}
	host, _, _, err := target(u)
	if err != nil {
		return false // Resolve fails at once
	}
	if _, ok := sip.ParseIP(host); ok {
		return false
	}
	_, routed := r.route(host, u.Port)
	return !routed
}

// target is what a URI names for RFC 3263 without DNS: the host (maddr
// first, RFC 3261 §19.1.1, lower case, no brackets), the transport (the
// transport parameter, TLS for sips, else UDP) and the port (5060, 5061
// for TLS, when the URI has none).
func target(u sip.URI) (host, proto string, port int, err error) {
	if !u.IsSIP() {
		return "", "", 0, fmt.Errorf("proxy: resolve %s: not a sip or sips URI", u.String())
	}
	proto = transport.UDP
	if t, ok := u.Params.Get("transport"); ok {
		switch p := strings.ToUpper(t); p {
		case transport.UDP, transport.TCP, transport.TLS:
			proto = p
		case transport.WS, transport.WSS:
			// Only over the connection the client opened (its flow).
			return "", "", 0, fmt.Errorf("proxy: resolve %s: %w", u.String(), errFlowClosed)
		default:
			return "", "", 0, fmt.Errorf("proxy: resolve %s: transport %q not supported", u.String(), t)
		}
	}
	if u.Scheme == sip.SchemeSIPS {
		proto = transport.TLS
	}
	host = strings.ToLower(u.Hostname())
	if maddr, ok := u.Params.Get("maddr"); ok && maddr != "" {
		host = strings.ToLower(strings.Trim(maddr, "[]"))
	}
	port = u.Port
	if port == 0 {
		port = 5060
		if proto == transport.TLS {
			port = 5061
		}
	}
	return host, proto, port, nil
}

// route returns the configured hops of host:port (uriPort as the URI
// gives it), or of host alone when the URI has no port.
func (r *StaticResolver) route(host string, uriPort int) ([]Hop, bool) {
	if len(r.Routes) == 0 {
		return nil, false
	}
	if uriPort != 0 {
		// net.JoinHostPort(host, port), on the stack.
		var buf [128]byte
		k := buf[:0]
		if strings.IndexByte(host, ':') >= 0 {
			k = append(append(append(k, '['), host...), ']')
		} else {
			k = append(k, host...)
		}
		k = strconv.AppendInt(append(k, ':'), int64(uriPort), 10)
		hs, ok := r.Routes[string(k)]
		return hs, ok
	}
	hs, ok := r.Routes[host]
	return hs, ok
}

// Resolve implements Resolver.
func (r *StaticResolver) Resolve(ctx context.Context, u sip.URI) (Hops, error) {
	host, proto, port, err := target(u)
	if err != nil {
		return nil, err
	}
	if hs, ok := r.route(host, u.Port); ok {
		return NewHopList(hs...), nil
	}
	if a, ok := sip.ParseIP(host); ok {
		return singleHop(Hop{Proto: proto, Addr: netip.AddrPortFrom(a.Unmap(), uint16(port)), Host: host}), nil
	}
	var dnsErr error
	if r.DNS != nil {
		ts, err := r.DNS.Resolve(ctx, u)
		if err == nil {
			return newDNSHops(ts), nil
		}
		dnsErr = err
	}
	if !r.LookupDNS || ctx.Err() != nil {
		if dnsErr != nil {
			return nil, fmt.Errorf("proxy: %w", dnsErr)
		}
		return nil, fmt.Errorf("proxy: resolve %s: no route for host %q", u.String(), host)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return nil, fmt.Errorf("proxy: resolve %s: %w", u.String(), err)
	}
	hops := make([]Hop, 0, len(ips))
	for _, ip := range ips {
		hops = append(hops, Hop{Proto: proto, Addr: netip.AddrPortFrom(ip.Unmap(), uint16(port)), Host: host})
	}
	return NewHopList(hops...), nil
}
