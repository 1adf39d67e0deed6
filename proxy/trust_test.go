package proxy

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transport"
)

func flowOn(proto, addr string) Flow {
	return Flow{Proto: proto, Remote: netip.MustParseAddrPort(addr)}
}

func TestTrustRules(t *testing.T) {
	cfg := Config{
		Trusted: []string{
			"192.0.2.0/24",            // any transport, any port
			"udp:198.51.100.10",       // UDP only
			"tcp:198.51.100.11:5060",  // TCP from that port only
			"udp:[2001:db8::1]:5060",  // IPv6 with a port
			"tls:203.0.113.0/28:5061", // combined
			"cert:gw.carrier.example",
			"cert:*.trunk.example",
			"2001:db8:ff::/48",
			"[2001:db8:aa::7]",
		},
		Gateways: map[string][]Gateway{"pstn": {
			{URI: "sip:203.0.113.50:5070"},                   // UDP port named; any transport
			{URI: "sip:203.0.113.51;transport=tcp"},          // TCP only, any source port
			{URI: "sips:203.0.113.52:5061"},                  // TLS only
			{URI: "sip:203.0.113.53"},                        // no transport, no port
			{URI: "sip:203.0.113.54:5060;transport=udp"},     // UDP from 5060 only
			{URI: "sip:gw.name.example:5060;transport=udp"},  // a host name: no rule
			{URI: "sip:x@203.0.113.99;maddr=203.0.113.55"},   // maddr is where it is
			{URI: "sip:[2001:db8:bb::1]:5060;transport=tls"}, // IPv6 TLS
		}},
	}
	e := newTestEnv(t, cfg, nil)
	gw := []string{"gw.carrier.example"}
	for _, tc := range []struct {
		name  string
		f     Flow
		names []string
		want  bool
	}{
		{"address alone: UDP", flowOn("UDP", "192.0.2.9:1234"), nil, true},
		{"address alone: TLS", flowOn("TLS", "192.0.2.9:40000"), nil, true},
		{"address alone: outside the prefix", flowOn("UDP", "192.0.3.9:5060"), nil, false},
		{"IPv4-mapped source", flowOn("UDP", "[::ffff:192.0.2.9]:5060"), nil, true},
		{"udp: any port", flowOn("UDP", "198.51.100.10:40000"), nil, true},
		{"udp: not over TCP", flowOn("TCP", "198.51.100.10:5060"), nil, false},
		{"tcp: with its port", flowOn("TCP", "198.51.100.11:5060"), nil, true},
		{"tcp: another port", flowOn("TCP", "198.51.100.11:40000"), nil, false},
		{"tcp: not over UDP", flowOn("UDP", "198.51.100.11:5060"), nil, false},
		{"udp IPv6 with its port", flowOn("UDP", "[2001:db8::1]:5060"), nil, true},
		{"udp IPv6 another port", flowOn("UDP", "[2001:db8::1]:5070"), nil, false},
		{"tls prefix and port", flowOn("TLS", "203.0.113.9:5061"), nil, true},
		{"tls prefix, another port", flowOn("TLS", "203.0.113.9:5062"), nil, false},
		{"tls prefix over TCP", flowOn("TCP", "203.0.113.9:5061"), nil, false},
		{"IPv6 prefix", flowOn("TCP", "[2001:db8:ff:1::5]:40000"), nil, true},
		{"bracketed IPv6 address", flowOn("UDP", "[2001:db8:aa::7]:9"), nil, true},
		{"cert: named peer over TLS", flowOn("TLS", "198.18.0.1:40000"), gw, true},
		{"cert: name in another case, trailing dot", flowOn("TLS", "198.18.0.1:40000"), []string{"GW.Carrier.Example."}, true},
		{"cert: names over TCP mean nothing", flowOn("TCP", "198.18.0.1:40000"), gw, false},
		{"cert: other name", flowOn("TLS", "198.18.0.1:40000"), []string{"gw2.carrier.example"}, false},
		{"cert: no names", flowOn("TLS", "198.18.0.1:40000"), nil, false},
		{"cert: wildcard rule, one label", flowOn("TLS", "198.18.0.1:40000"), []string{"a.trunk.example"}, true},
		{"cert: wildcard rule, two labels", flowOn("TLS", "198.18.0.1:40000"), []string{"a.b.trunk.example"}, false},
		{"cert: wildcard rule, the domain itself", flowOn("TLS", "198.18.0.1:40000"), []string{"trunk.example"}, false},
		{"cert: wildcard certificate does not prove one host", flowOn("TLS", "198.18.0.1:40000"), []string{"*.carrier.example"}, false},
		{"cert: suffix without a dot", flowOn("TLS", "198.18.0.1:40000"), []string{"xtrunk.example"}, false},
		{"gateway: UDP on its port", flowOn("UDP", "203.0.113.50:5070"), nil, true},
		{"gateway: UDP on another port", flowOn("UDP", "203.0.113.50:5060"), nil, false},
		{"gateway: TCP from an ephemeral port", flowOn("TCP", "203.0.113.50:40000"), nil, true},
		{"gateway transport=tcp: TCP", flowOn("TCP", "203.0.113.51:40000"), nil, true},
		{"gateway transport=tcp: not UDP", flowOn("UDP", "203.0.113.51:5060"), nil, false},
		{"gateway sips: TLS", flowOn("TLS", "203.0.113.52:40000"), nil, true},
		{"gateway sips: not TCP", flowOn("TCP", "203.0.113.52:5061"), nil, false},
		{"gateway without transport or port: any", flowOn("UDP", "203.0.113.53:7777"), nil, true},
		{"gateway udp:5060: its port", flowOn("UDP", "203.0.113.54:5060"), nil, true},
		{"gateway udp:5060: another port", flowOn("UDP", "203.0.113.54:5061"), nil, false},
		{"gateway udp:5060: not TCP", flowOn("TCP", "203.0.113.54:5060"), nil, false},
		{"gateway by maddr", flowOn("UDP", "203.0.113.55:5060"), nil, true},
		{"gateway by maddr: not its host", flowOn("UDP", "203.0.113.99:5060"), nil, false},
		{"gateway IPv6 TLS", flowOn("TLS", "[2001:db8:bb::1]:40000"), nil, true},
		{"gateway IPv6 TLS: not UDP", flowOn("UDP", "[2001:db8:bb::1]:5060"), nil, false},
		{"lower-case transport from a tx", flowOn("tls", "203.0.113.52:40000"), nil, true},
		{"nothing", flowOn("UDP", "198.18.0.1:5060"), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := e.p.TrustedSource(tc.f.Proto, tc.f.Remote, tc.names); got != tc.want {
				t.Errorf("TrustedSource(%s, %s, %q) = %v, want %v", tc.f.Proto, tc.f.Remote, tc.names, got, tc.want)
			}
			if got := e.p.TrustedTx(namedTx{&fakeTx{flow: tc.f}, tc.names}); got != tc.want {
				t.Errorf("TrustedTx = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("TrustedAddr: any address rule", func(t *testing.T) {
		for ip, want := range map[string]bool{
			"192.0.2.9":      true,  // address alone
			"198.51.100.10":  true,  // udp: only
			"198.51.100.11":  true,  // tcp with a port
			"203.0.113.50":   true,  // gateway with a UDP port
			"203.0.113.52":   true,  // sips gateway
			"::ffff:1.2.3.4": false, // nothing
			"198.18.0.1":     false, // cert rules name no address
		} {
			if got := e.p.TrustedAddr(netip.MustParseAddr(ip)); got != want {
				t.Errorf("TrustedAddr(%s) = %v, want %v", ip, got, want)
			}
		}
	})
}

func TestTrustRuleErrors(t *testing.T) {
	for _, tc := range []struct{ entry, want string }{
		{"nope", `routing.trusted[1] "nope": address "nope"`},
		{"tls:1.2.3.4:99999", `routing.trusted[1] "tls:1.2.3.4:99999": port "99999": want 1-65535`},
		{"udp:1.2.3.4:0", `port "0"`},
		{"tcp:", "no address after the transport"},
		{"sctp:1.2.3.4", `"sctp:": want udp:, tcp:, tls: or cert:`},
		{"gw.example", `address "gw.example"`},
		{"[2001:db8::1", "missing ]"},
		{"[2001:db8::1]5060", "want :port"},
		{"[2001:db8::1]:", "want :port"},
		{"1.2.3.4/33", "CIDR"},
		{"cert:", "cert: wants a DNS name"},
		{"cert:*.com", "two labels"},
		{"cert:gw..example", "empty label"},
		{"cert:a.*.example", "not allowed"},
		{"cert:gw example", "not allowed"},
		{"  ", "empty"},
	} {
		t.Run(tc.entry, func(t *testing.T) {
			err := Config{Trusted: []string{"192.0.2.1", tc.entry}}.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "routing.trusted[1] ") {
				t.Errorf("got %v, want an error naming routing.trusted[1] with %q", err, tc.want)
			}
		})
	}
	for _, ok := range []string{"udp:192.0.2.1", "UDP:192.0.2.1", "192.0.2.1:5060", "[::1]:5060", "tls:[2001:db8::/32]:5061",
		"::ffff:192.0.2.0/120", "cert:GW.Example.", "cert:*.carrier.example", "fe80::1%eth0", "fe80::1", "db8::/32"} {
		if err := (Config{Trusted: []string{ok}}).Validate(); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// namedTx is a server transaction over TLS whose peer presented a
// certificate with names (the server's transactions are PeerNamers).
type namedTx struct {
	*fakeTx
	names []string
}

func (n namedTx) PeerNames() []string { return n.names }

// CheckIdentity exempts trusted peers from the From check by the whole
// rule: transport, port and certificate, not the address alone.
func TestCheckIdentityByTrustRule(t *testing.T) {
	mallory := sip.URI{Scheme: "sip", User: "mallory", Host: "example.test"}
	cfg := Config{Locations: bobLocations, Trusted: []string{"tls:198.51.100.7", "cert:gw.carrier.example"}}
	for _, tc := range []struct {
		name  string
		flow  Flow
		names []string
		want  string
	}{
		{"trusted address over the trusted transport", flowOn("TLS", "198.51.100.7:5070"), nil, "100"},
		{"trusted address over another transport: checked", flowOn("UDP", "198.51.100.7:5070"), nil, "403"},
		{"certificate names a trusted peer", flowOn("TLS", "198.18.0.1:40000"), []string{"gw.carrier.example"}, "100"},
		{"certificate names someone else", flowOn("TLS", "198.18.0.1:40000"), []string{"evil.example"}, "403"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, cfg, func(env *Env) {
				env.Identity = func(context.Context) (sip.URI, bool) { return mallory, true }
			})
			e.p.SetListeners([]Listener{{transport.UDP, proxyUDP}, {transport.TCP, proxyUDP}, {transport.TLS, proxyTLS}})
			req := request(t, sip.INVITE, "sip:carol@example.test")
			req.StampVia(tc.flow.Remote)
			tx := namedTx{&fakeTx{flow: tc.flow}, tc.names}
			e.h.ServeSIP(context.Background(), tx, req)
			if got := tx.codes(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCertNameMatches(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"gw.example", "gw.example", true},
		{"gw.example", "GW.EXAMPLE", true},
		{"gw.example", "gw.example.", true},
		{"gw.example", "x.gw.example", false},
		{"*.example.net", "a.example.net", true},
		{"*.example.net", "A.Example.Net", true},
		{"*.example.net", "example.net", false},
		{"*.example.net", ".example.net", false},
		{"*.example.net", "a.b.example.net", false},
		{"*.example.net", "aexample.net", false},
		{"*.example.net", "*.example.net", true},
		{"gw.example.net", "*.example.net", false},
		{"*.example.net", "", false},
	} {
		if got := certNameMatches(tc.pattern, tc.name); got != tc.want {
			t.Errorf("certNameMatches(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

// FuzzTrustRule: any entry is either refused or parsed into a rule that
// can be matched; never a panic.
func FuzzTrustRule(f *testing.F) {
	for _, s := range []string{"192.0.2.0/24", "udp:192.0.2.10", "tls:192.0.2.0/24:5061", "tcp:192.0.2.10:5060",
		"udp:[2001:db8::1]:5060", "cert:gw.carrier.example", "cert:*.carrier.example", "[::1", "tls:", "cert:*."} {
		f.Add(s, "GW.carrier.example")
	}
	src := netip.MustParseAddrPort("192.0.2.10:5060")
	f.Fuzz(func(t *testing.T, entry, name string) {
		r, err := parseTrustRule(entry)
		if err != nil {
			return
		}
		if r.name == "" && !r.prefix.IsValid() {
			t.Fatalf("%q: rule without address or name", entry)
		}
		for _, proto := range []string{transport.UDP, transport.TCP, transport.TLS} {
			r.matches(proto, src, []string{name})
		}
		certNameMatches(r.name, name)
	})
}

func BenchmarkTrustedSource(b *testing.B) {
	cfg := Config{
		Trusted: []string{"10.0.0.0/8", "udp:198.51.100.10:5060", "tls:203.0.113.0/24", "cert:gw.carrier.example"},
		Gateways: map[string][]Gateway{"pstn": {
			{URI: "sip:203.0.113.50:5060"}, {URI: "sip:203.0.113.51;transport=tcp"},
		}},
	}
	e := newTestEnv(b, cfg, nil)
	untrusted := flowOn("UDP", "192.0.2.77:5060")
	names := []string{"phone.example"}
	b.ReportAllocs()
	for b.Loop() {
		if e.p.TrustedSource(untrusted.Proto, untrusted.Remote, names) {
			b.Fatal("trusted")
		}
	}
}
