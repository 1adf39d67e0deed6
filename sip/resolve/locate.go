package resolve

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/hlas-voip/hlas/sip"
	"github.com/miekg/dns"
)

// Transports a target can use, spelled as in a Via header and in package
// sip/transport (RFC 3261 §18, RFC 7118 §5).
const (
	UDP = "UDP"
	TCP = "TCP"
	TLS = "TLS"
	WS  = "WS"
	WSS = "WSS"
)

// normalizeTransport maps "udp", "Tcp", ... to UDP, TCP, ...; "" when unknown.
func normalizeTransport(s string) string {
	switch t := strings.ToUpper(s); t {
	case UDP, TCP, TLS, WS, WSS:
		return t
	}
	return ""
}

// Default ports when neither the URI nor an SRV record gives one: RFC 3261
// §19.1.2 for SIP, RFC 6455 §3 for the WebSocket transports.
func defaultPort(transport string) int {
	switch transport {
	case TLS:
		return 5061
	case WS:
		return 80
	case WSS:
		return 443
	}
	return 5060
}

// service ties a transport to its NAPTR service field (RFC 3263 §4.1,
// RFC 7118 §7) and its SRV prefix (RFC 3263 §4.1, RFC 2782).
type service struct {
	naptr     string
	srv       string
	transport string
	secure    bool
}

// services lists them in the order SRV records are tried when a domain has
// no NAPTR records: _sip._udp, _sip._tcp, _sips._tcp, then WebSocket.
var services = [...]service{
	{"SIP+D2U", "_sip._udp.", UDP, false},
	{"SIP+D2T", "_sip._tcp.", TCP, false},
	{"SIPS+D2T", "_sips._tcp.", TLS, true},
	{"SIP+D2W", "_sip._ws.", WS, false},
	{"SIPS+D2W", "_sips._ws.", WSS, true},
}

func serviceByNAPTR(s string) (service, bool) {
	for _, sv := range services {
		if strings.EqualFold(sv.naptr, s) {
			return sv, true
		}
	}
	return service{}, false
}

func serviceByTransport(t string) service {
	for _, sv := range services {
		if sv.transport == t {
			return sv
		}
	}
	return services[0]
}

// Target is one place to send a request to: a transport, an address and a
// port (RFC 3263 §4), with the records that led there.
type Target struct {
	// Transport is UDP, TCP, TLS, WS or WSS.
	Transport string
	// Addr is the IP address and port.
	Addr netip.AddrPort
	// Host is the name the address was found under (an SRV target or the
	// URI's host), without the trailing dot; the address itself for a
	// numeric host. For TLS, RFC 5922 §4 checks the certificate against
	// the URI's domain, not this.
	Host string
	// Why is the chain of records, first to last, that produced the target.
	Why []Step
}

// String returns "udp 192.0.2.10:5060".
func (t Target) String() string {
	return strings.ToLower(t.Transport) + " " + t.Addr.String()
}

// Explain returns the chain of records on one line:
// `NAPTR 10 50 "s" SIP+D2U → SRV 0 5 5060 sip1.example.com. → A 192.0.2.10`.
func (t Target) Explain() string {
	parts := make([]string, len(t.Why))
	for i, s := range t.Why {
		parts[i] = s.String()
	}
	return strings.Join(parts, " → ")
}

func (t Target) key() targetKey { return targetKey{t.Transport, t.Addr} }

// targetKey identifies a target in the blocklist and for de-duplication.
type targetKey struct {
	transport string
	addr      netip.AddrPort
}

// Step is one link of a Target's chain: a DNS record, or a note on a
// decision taken without one (a numeric host, a default port).
type Step struct {
	// Type is the record type, "NAPTR", "SRV", "A", "AAAA"; empty for a note.
	Type string
	// Name is the owner name of the record; empty for a note.
	Name string
	// Data is the record's data as shown, `10 50 "s" SIP+D2U`,
	// `0 5 5060 sip1.example.com.`, `192.0.2.10`; or the note's text.
	Data string
}

// String returns `SRV 0 5 5060 sip1.example.com.`, or a note's text.
func (s Step) String() string {
	if s.Type == "" {
		return s.Data
	}
	return s.Type + " " + s.Data
}

func note(format string, args ...any) Step { return Step{Data: fmt.Sprintf(format, args...)} }

func naptrStep(n *dns.NAPTR) Step {
	return Step{Type: "NAPTR", Name: n.Hdr.Name,
		Data: fmt.Sprintf("%d %d %q %s", n.Order, n.Preference, unescapeText(n.Flags), unescapeText(n.Service))}
}

func srvStep(s *dns.SRV) Step {
	return Step{Type: "SRV", Name: s.Hdr.Name, Data: fmt.Sprintf("%d %d %d %s", s.Priority, s.Weight, s.Port, s.Target)}
}

// Resolve finds where to send a request for u, a sip: or sips: URI, by
// RFC 3263 §4, and returns the targets in the order to try them:
//
//   - the maddr parameter, when present, stands in for the host (§4);
//   - a numeric host is used as it is, with the URI's port or the default
//     (§4.1, §4.2); the transport is the transport parameter, or UDP for
//     sip and TLS for sips;
//   - a host with a port is looked up in A and AAAA (§4.2);
//   - with a transport parameter, the SRV records of that transport are
//     used (_sip._tcp, _sips._tcp, ...), else A/AAAA with the default port
//     (§4.2);
//   - otherwise the NAPTR records of the host (§4.1): services SIP+D2U,
//     SIP+D2T, SIPS+D2T, SIP+D2W and SIPS+D2W with flag "s" (and "a"), by
//     order then preference, each followed to its SRV records; without
//     usable NAPTR records, the SRV records _sip._udp, _sip._tcp and
//     _sips._tcp (for sips only _sips._tcp), in that order; without those,
//     A/AAAA with UDP (TLS for sips) and port 5060 (5061).
//
// SRV records are ordered by priority, and among equal priorities by the
// weighted random selection of RFC 2782. A sips URI is only ever sent over
// TLS or WSS (RFC 3261 §26.2.2). Each SRV target's A records come before
// its AAAA records. Every usable NAPTR record and SRV transport
// contributes its targets, in order, so that failover (RFC 3263 §4.3) can
// move on past a dead transport; a target reached twice is kept at its
// first place. Targets in the blocklist come last (see Targets.Next).
//
// When no target is found the error wraps ErrNoRecord if the DNS answered
// and had nothing usable, or the lookup error otherwise.
func (r *Resolver) Resolve(ctx context.Context, u sip.URI) (*Targets, error) {
	if !u.IsSIP() {
		return nil, fmt.Errorf("resolve: %s: %w", u.String(), ErrScheme)
	}
	ctx, miss := cacheOnly(ctx)
	secure := u.Scheme == sip.SchemeSIPS
	host, port := u.Hostname(), u.Port
	if maddr, ok := u.Params.Get("maddr"); ok && maddr != "" {
		host = strings.Trim(maddr, "[]")
	}
	transport := ""
	if tp, ok := u.Params.Get("transport"); ok {
		t, err := r.uriTransport(tp, secure)
		if err != nil {
			return nil, fmt.Errorf("resolve: %s: %w", u.String(), err)
		}
		transport = t
	}

	var b builder
	switch {
	case isNumeric(host):
		b.numeric(r, host, port, transport, secure)
	case port != 0:
		if transport == "" {
			transport = defaultTransport(secure)
		}
		r.addresses(ctx, &b, host, port, transport, []Step{note("port %d from the URI", port)})
	case transport != "":
		sv := serviceByTransport(transport)
		why := []Step{note("transport=%s", strings.ToLower(transport))}
		if !r.srvTargets(ctx, &b, sv.srv+dns.Fqdn(host), transport, why) {
			r.addresses(ctx, &b, host, defaultPort(transport), transport,
				append(why, note("no SRV, port %d", defaultPort(transport))))
		}
	default:
		r.locate(ctx, &b, host, secure)
	}
	if miss != nil && miss.Load() {
		// A partial answer would be a different target list: none.
		return nil, fmt.Errorf("resolve: %s: %w", u.String(), ErrNotCached)
	}
	if len(b.targets) == 0 {
		err := b.err
		if err == nil {
			err = ErrNoRecord
		}
		return nil, fmt.Errorf("resolve: %s: %w", u.String(), err)
	}
	return r.newTargets(b.targets), nil
}

// uriTransport checks the transport parameter of a URI.
func (r *Resolver) uriTransport(tp string, secure bool) (string, error) {
	t := normalizeTransport(tp)
	if secure {
		switch t {
		case TCP, TLS:
			t = TLS
		case WS, WSS:
			t = WSS
		default:
			return "", fmt.Errorf("%w: transport=%s with sips", ErrTransport, tp)
		}
	}
	if t == "" || !r.transports[t] {
		return "", fmt.Errorf("%w: transport=%s", ErrTransport, tp)
	}
	return t, nil
}

// defaultTransport is the transport of a URI that names none and has no
// SRV records: UDP for sip, TLS for sips (RFC 3263 §4.1).
func defaultTransport(secure bool) string {
	if secure {
		return TLS
	}
	return UDP
}

func isNumeric(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}

// builder collects targets without duplicates, and the last lookup error.
type builder struct {
	targets []Target
	seen    map[targetKey]bool
	err     error
}

func (b *builder) add(t Target) {
	if b.seen == nil {
		b.seen = make(map[targetKey]bool)
	}
	if b.seen[t.key()] {
		return
	}
	b.seen[t.key()] = true
	b.targets = append(b.targets, t)
}

// fail remembers a lookup error, ignoring negative answers.
func (b *builder) fail(err error) {
	if err != nil {
		b.err = err
	}
}

// numeric adds the one target of a numeric host (RFC 3263 §4.1, §4.2).
func (b *builder) numeric(r *Resolver, host string, port int, transport string, secure bool) {
	why := []Step{note("numeric host")}
	if transport == "" {
		transport = defaultTransport(secure)
		if !r.transports[transport] {
			b.fail(fmt.Errorf("%w: %s not configured", ErrTransport, transport))
			return
		}
	}
	if port == 0 {
		port = defaultPort(transport)
		why = append(why, note("port %d", port))
	}
	addr, _ := netip.ParseAddr(host)
	b.add(Target{Transport: transport, Addr: netip.AddrPortFrom(addr.Unmap(), uint16(port)), Host: host, Why: why})
}

// locate is RFC 3263 §4.1 for a host with neither port nor transport:
// NAPTR, then SRV, then A/AAAA.
func (r *Resolver) locate(ctx context.Context, b *builder, host string, secure bool) {
	fqdn := dns.Fqdn(host)
	rrs, err := r.lookup(ctx, fqdn, dns.TypeNAPTR)
	b.fail(err)
	if err != nil && ctx.Err() != nil {
		return
	}
	usable := r.usableNAPTR(rrs, secure)
	for _, n := range usable {
		sv, _ := serviceByNAPTR(unescapeText(n.Service))
		why := []Step{naptrStep(n)}
		switch strings.ToLower(unescapeText(n.Flags)) {
		case "s":
			r.srvTargets(ctx, b, n.Replacement, sv.transport, why)
		case "a":
			r.addresses(ctx, b, n.Replacement, defaultPort(sv.transport), sv.transport,
				append(why, note("port %d", defaultPort(sv.transport))))
		}
	}
	if len(b.targets) > 0 {
		return
	}
	// No NAPTR records, or none that led anywhere: SRV for each supported
	// transport in turn.
	found := false
	for _, sv := range services[:3] {
		if secure && !sv.secure || !r.transports[sv.transport] {
			continue
		}
		if r.srvTargets(ctx, b, sv.srv+fqdn, sv.transport, nil) {
			found = true
		}
	}
	if found || len(b.targets) > 0 {
		return
	}
	transport := defaultTransport(secure)
	if !r.transports[transport] {
		return
	}
	port := defaultPort(transport)
	r.addresses(ctx, b, host, port, transport, []Step{note("no NAPTR or SRV, %s port %d", strings.ToLower(transport), port)})
}

// usableNAPTR keeps the NAPTR records a SIP client can follow (RFC 3263
// §4.1): a known service of a configured transport (only SIPS ones for a
// sips URI), flag "s" or "a", an empty regexp and a replacement, ordered
// by order then preference (RFC 3403 §4.1).
func (r *Resolver) usableNAPTR(rrs []dns.RR, secure bool) []*dns.NAPTR {
	var out []*dns.NAPTR
	for _, rr := range rrs {
		n, ok := rr.(*dns.NAPTR)
		if !ok {
			continue
		}
		sv, ok := serviceByNAPTR(unescapeText(n.Service))
		if !ok || secure && !sv.secure || !r.transports[sv.transport] {
			continue
		}
		switch strings.ToLower(unescapeText(n.Flags)) {
		case "s", "a":
		default:
			continue
		}
		if n.Regexp != "" || n.Replacement == "" || n.Replacement == "." {
			continue
		}
		out = append(out, n)
	}
	slices.SortStableFunc(out, func(a, b *dns.NAPTR) int {
		return cmp.Or(cmp.Compare(a.Order, b.Order), cmp.Compare(a.Preference, b.Preference))
	})
	return out
}

// srvTargets looks up the SRV records at name, orders them (RFC 2782) and
// adds the addresses of each target. It reports whether any SRV record was
// found; a lone record with target "." says the service is not offered
// there (RFC 2782) and counts as found, with no target.
func (r *Resolver) srvTargets(ctx context.Context, b *builder, name, transport string, why []Step) bool {
	rrs, err := r.lookup(ctx, name, dns.TypeSRV)
	b.fail(err)
	var srvs []*dns.SRV
	for _, rr := range rrs {
		if s, ok := rr.(*dns.SRV); ok {
			srvs = append(srvs, s)
		}
	}
	if len(srvs) == 0 {
		return false
	}
	for _, s := range orderSRV(srvs, r.intN) {
		if s.Target == "." {
			continue
		}
		r.addresses(ctx, b, s.Target, int(s.Port), transport, append(slices.Clip(why), srvStep(s)))
	}
	return true
}

// orderSRV sorts SRV records by priority and, within a priority, by the
// weighted random selection of RFC 2782: repeatedly a random number picks
// the first record whose running sum of weights exceeds it. RFC 2782's
// literal recipe (a number in [0, sum] inclusive, weight-0 records first)
// gives the first record one share too many, which for small weights
// (1 and 4: a third instead of a fifth) is not the proportion an operator
// configured. So positive weights count a thousandfold and a weight of 0
// counts one: shares follow the weights, and weight-0 records keep the
// "very small chance" RFC 2782 asks for.
func orderSRV(srvs []*dns.SRV, intN func(int) int) []*dns.SRV {
	sorted := slices.Clone(srvs)
	slices.SortStableFunc(sorted, func(a, b *dns.SRV) int { return cmp.Compare(a.Priority, b.Priority) })
	out := make([]*dns.SRV, 0, len(sorted))
	share := func(s *dns.SRV) int {
		if s.Weight == 0 {
			return 1
		}
		return int(s.Weight) * srvWeightScale
	}
	for len(sorted) > 0 {
		n := 1
		for n < len(sorted) && sorted[n].Priority == sorted[0].Priority {
			n++
		}
		group := sorted[:n]
		sorted = sorted[n:]
		// Weight 0 first, as RFC 2782 orders them.
		slices.SortStableFunc(group, func(a, b *dns.SRV) int {
			return cmp.Compare(min(a.Weight, 1), min(b.Weight, 1))
		})
		for len(group) > 0 {
			sum := 0
			for _, s := range group {
				sum += share(s)
			}
			pick := intN(sum)
			i, run := 0, 0
			for ; i < len(group)-1; i++ {
				run += share(group[i])
				if run > pick {
					break
				}
			}
			out = append(out, group[i])
			group = slices.Delete(group, i, i+1)
		}
	}
	return out
}

// srvWeightScale is how many times a unit of SRV weight outweighs a record
// of weight 0 (see orderSRV).
const srvWeightScale = 1000

// addresses looks up host's A and AAAA records and adds a target for each
// address (RFC 3263 §4.2).
func (r *Resolver) addresses(ctx context.Context, b *builder, host string, port int, transport string, why []Step) {
	if !r.transports[transport] {
		b.fail(fmt.Errorf("%w: %s not configured", ErrTransport, transport))
		return
	}
	name := dns.Fqdn(host)
	for _, qtype := range [...]uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, err := r.lookup(ctx, name, qtype)
		b.fail(err)
		for _, rr := range rrs {
			var addr netip.Addr
			var step Step
			switch a := rr.(type) {
			case *dns.A:
				addr, _ = netip.AddrFromSlice(a.A.To4())
				step = Step{Type: "A", Name: a.Hdr.Name, Data: addr.String()}
			case *dns.AAAA:
				addr, _ = netip.AddrFromSlice(a.AAAA.To16())
				step = Step{Type: "AAAA", Name: a.Hdr.Name, Data: addr.String()}
			}
			if !addr.IsValid() {
				continue
			}
			b.add(Target{
				Transport: transport,
				Addr:      netip.AddrPortFrom(addr, uint16(port)),
				Host:      strings.TrimSuffix(host, "."),
				Why:       append(slices.Clip(why), step),
			})
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// unescapeText turns a character-string as miekg/dns presents it (`\\`,
// `\"`, `\DDD`) back into its octets.
func unescapeText(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			out.WriteByte(c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			if v, err := strconv.Atoi(s[i+1 : i+4]); err == nil && v < 256 {
				out.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		out.WriteByte(s[i+1])
		i++
	}
	return out.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
