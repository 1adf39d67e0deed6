package proxy

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transport"
)

var proxyTLS = netip.MustParseAddrPort("192.0.2.1:5061")

// withTLS gives the test proxy a TLS listener besides UDP and TCP.
func withTLS(e *testEnv) *testEnv {
	e.p.SetListeners([]Listener{{transport.UDP, proxyUDP}, {transport.TCP, proxyUDP}, {transport.TLS, proxyTLS}})
	return e
}

// sentAll waits for the background dials (streams) and returns every
// message sent. It closes the proxy: one exchange per test environment.
func (e *testEnv) sentAll() []sent {
	e.p.Close()
	return e.net.take()
}

func hopsOf(s []sent) string {
	var out []string
	for _, m := range s {
		out = append(out, strings.ToLower(m.proto)+":"+m.remote.String())
	}
	return strings.Join(out, ", ")
}

// RFC 3261 §26.2.2, RFC 5630 §3.1.3: a request for a sips: URI leaves
// over TLS on every hop; a target with no TLS hop ends with 480.
func TestSIPSOverTLSOnly(t *testing.T) {
	phoneFlow := Flow{Proto: transport.UDP, Local: proxyUDP, Remote: netip.MustParseAddrPort("203.0.113.77:40001")}
	loc := StaticLocator{
		"sip:carol@example.test": {{URI: sip.URI{Scheme: "sip", User: "carol", Host: "10.0.0.5", Port: 5062}, Q: 1, Flow: phoneFlow}},
		"sip:dan@example.test":   {{URI: sip.URI{Scheme: "sips", User: "dan", Host: "198.51.100.40"}, Q: 1}},
	}
	cfg := Config{
		Mode: Stateful,
		Routes: map[string][]string{
			"mixed.test":         {"udp:203.0.113.9:5060", "tcp:203.0.113.9:5060", "tls:203.0.113.9:5061"},
			"plain.test":         {"udp:203.0.113.10:5060"},
			"198.51.100.20:5062": {"udp:198.51.100.20:5062"},
		},
		Gateways: map[string][]Gateway{"pstn": {{URI: "sip:203.0.113.50:5060"}}},
		Rules: []Rule{
			{Prefix: "+", Action: ActionForward, Gateways: "pstn"},
			{Domain: "mixed.test", Action: ActionResolve},
			{Domain: "plain.test", Action: ActionResolve},
		},
	}
	inDialog := func(ruri string, routes ...string) func(t *testing.T) *sip.Request {
		return func(t *testing.T) *sip.Request {
			req := request(t, sip.BYE, ruri, append([]string{"Route: <sip:192.0.2.1;lr>"}, routes...)...)
			req.To.Params = ";tag=b1"
			return req
		}
	}
	outOfDialog := func(ruri string) func(t *testing.T) *sip.Request {
		return func(t *testing.T) *sip.Request { return request(t, sip.INVITE, ruri) }
	}
	for _, tc := range []struct {
		name  string
		req   func(t *testing.T) *sip.Request
		codes string // stateful
		hops  string
	}{
		{"static routes: udp and tcp hops skipped, the tls one taken", outOfDialog("sips:x@mixed.test"), "100", "tls:203.0.113.9:5061"},
		{"static routes: sip: target takes the first hop", outOfDialog("sip:x@mixed.test"), "100", "udp:203.0.113.9:5060"},
		{"static routes: no tls hop: 480", outOfDialog("sips:x@plain.test"), "100 480", ""},
		{"registered binding over a UDP flow: 480", outOfDialog("sips:carol@example.test"), "100 480", ""},
		{"registered binding over a UDP flow, sip: target: the flow", outOfDialog("sip:carol@example.test"), "100", "udp:203.0.113.77:40001"},
		{"sips contact resolved: TLS", outOfDialog("sips:dan@example.test"), "100", "tls:198.51.100.40:5061"},
		{"gateway over UDP for a sips target: 480", outOfDialog("sips:+4420@example.test"), "100 480", ""},
		{"in dialog: sips Request-URI with a udp route: 480", inDialog("sips:bob@198.51.100.20:5062"), "480", ""},
		{"in dialog: sips Request-URI: TLS", inDialog("sips:bob@198.51.100.21:5061"), "", "tls:198.51.100.21:5061"},
		{"in dialog: sips next Route with only a udp hop: 480", inDialog("sip:bob@198.51.100.21", "Route: <sips:plain.test;lr>"), "480", ""},
		{"in dialog: sip: with a udp route: as before", inDialog("sip:bob@198.51.100.20:5062"), "", "udp:198.51.100.20:5062"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, mode := range []Mode{Stateful, Stateless} {
				cfg := cfg
				cfg.Mode = mode
				e := withTLS(newTestEnv(t, cfg, func(env *Env) { env.Locator = loc }))
				tx := e.serve(tc.req(t))
				s := e.sentAll()
				if got := hopsOf(s); got != tc.hops {
					t.Errorf("%s: sent to %q, want %q", mode, got, tc.hops)
				}
				want := tc.codes
				if mode == Stateless {
					want = strings.TrimPrefix(strings.TrimPrefix(want, "100"), " ") // no 100 without state
				}
				if got := tx.codes(); got != want {
					t.Errorf("%s: caller got %q, want %q", mode, got, want)
				}
				for _, m := range s {
					if r, ok := m.msg.(*sip.Request); ok && r.Via[0].Transport != m.proto {
						t.Errorf("%s: Via %s over %s", mode, r.Via[0].Transport, m.proto)
					}
				}
			}
		})
	}
}

const pai = "P-Asserted-Identity: <sip:+15551230000@example.test>"

// RFC 3325 §7, RFC 3323: a request with Privacy: id loses its asserted
// identity towards hops outside the trust domain, keeps it towards
// trusted ones.
func TestPrivacyID(t *testing.T) {
	cfg := Config{
		Locations: map[string][]string{"carol@example.test": {"sip:carol@198.51.100.30:5062"}},
		// The phone's address is in a trusted network: still a user agent.
		Trusted: []string{"198.51.100.0/24", "udp:203.0.113.10"},
		Routes: map[string][]string{
			"peer.test":    {"udp:203.0.113.9:5060"},
			"trusted.test": {"udp:203.0.113.10:5060"},
			"tcp.test":     {"tcp:203.0.113.10:5060"}, // trusted for UDP only
			"fail.test":    {"udp:203.0.113.9:5060", "udp:203.0.113.10:5060"},
			"back.test":    {"udp:203.0.113.10:5060", "udp:203.0.113.9:5060"},
		},
		Gateways: map[string][]Gateway{"pstn": {{URI: "sip:203.0.113.50:5060"}}},
		Rules: []Rule{
			{Prefix: "+", Action: ActionForward, Gateways: "pstn"},
			{Domain: "example.test", Action: ActionLocal},
			{Domain: "*", Action: ActionResolve},
		},
	}
	for _, tc := range []struct {
		name    string
		ruri    string
		privacy string
		keep    bool
	}{
		{"untrusted peer: removed", "sip:x@peer.test", "Privacy: id", false},
		{"trusted peer: kept", "sip:x@trusted.test", "Privacy: id", true},
		{"trusted address over another transport: removed", "sip:x@tcp.test", "Privacy: id", false},
		{"gateway: kept", "sip:+4420@example.test", "Privacy: id", true},
		{"registered phone in a trusted network: removed", "sip:carol@example.test", "Privacy: id", false},
		{"id among other values: removed", "sip:x@peer.test", "Privacy: header;id;critical", false},
		{"id in a comma list: removed", "sip:x@peer.test", "Privacy: user, ID", false},
		{"Privacy: none: kept", "sip:x@peer.test", "Privacy: none", true},
		{"Privacy: header only: kept", "sip:x@peer.test", "Privacy: header", true},
		{"no Privacy: kept", "sip:x@peer.test", "", true},
		{"not an id: kept", "sip:x@peer.test", "Privacy: idx;session", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, mode := range []Mode{Stateful, Stateless} {
				cfg := cfg
				cfg.Mode = mode
				e := newTestEnv(t, cfg, nil)
				extra := []string{pai, "P-Preferred-Identity: <sip:alice@example.test>", "X-Other: 1"}
				if tc.privacy != "" {
					extra = append(extra, tc.privacy)
				}
				req := request(t, sip.INVITE, tc.ruri, extra...)
				e.serve(req)
				out := e.sentAll() // TCP: dialed in the background
				if len(out) != 1 {
					t.Fatalf("%s: sent %s", mode, hopsOf(out))
				}
				r := out[0].msg.(*sip.Request)
				if got := r.Has("P-Asserted-Identity") && r.Has("P-Preferred-Identity"); got != tc.keep {
					t.Errorf("%s: identity kept %v, want %v:\n%s", mode, got, tc.keep, r)
				}
				if r.Has("P-Asserted-Identity") != r.Has("P-Preferred-Identity") {
					t.Errorf("%s: one identity header left:\n%s", mode, r)
				}
				if r.Get("X-Other") != "1" || (tc.privacy != "" && !r.Has("Privacy")) {
					t.Errorf("%s: other headers lost:\n%s", mode, r)
				}
				if !req.Has("P-Asserted-Identity") || !req.Has("P-Preferred-Identity") {
					t.Errorf("%s: the request received was changed", mode)
				}
			}
		})
	}
	// Each hop of a target gets the copy its trust allows: failing over
	// from an untrusted hop to a trusted one brings the identity back,
	// and the other way round it goes.
	for _, tc := range []struct {
		ruri  string
		first bool
		then  bool
	}{
		{"sip:x@fail.test", false, true},
		{"sip:x@back.test", true, false},
	} {
		t.Run("failover "+tc.ruri, func(t *testing.T) {
			e := newTestEnv(t, cfg, nil)
			tx := e.serve(request(t, sip.INVITE, tc.ruri, pai, "Privacy: id"))
			out := e.net.requests(t)
			if len(out) != 1 || out[0].Has("P-Asserted-Identity") != tc.first {
				t.Fatalf("first hop: %d sent, identity %v", len(out), len(out) == 1 && out[0].Has("P-Asserted-Identity"))
			}
			e.answer(out[0], 503, "")
			out = e.net.requests(t)
			if len(out) != 1 || out[0].Has("P-Asserted-Identity") != tc.then {
				t.Fatalf("second hop: %d sent, identity %v", len(out), len(out) == 1 && out[0].Has("P-Asserted-Identity"))
			}
			e.answer(out[0], 200, "x")
			if tx.codes() != "100 200" {
				t.Errorf("caller got %q", tx.codes())
			}
		})
	}
	t.Run("forked: each branch by its own hop", func(t *testing.T) {
		cfg := cfg
		cfg.Locations = nil
		loc := StaticLocator{"sip:bob@example.test": {
			{URI: sip.URI{Scheme: "sip", User: "bob", Host: "198.51.100.20"}, Q: 1},
			// Registered through an edge proxy in the trust domain.
			{URI: sip.URI{Scheme: "sip", User: "bob", Host: "10.0.0.9"}, Q: 1,
				Path: []sip.Address{{URI: sip.URI{Scheme: "sip", Host: "203.0.113.10", Params: ";lr"}}}},
		}}
		e := newTestEnv(t, cfg, func(env *Env) { env.Locator = loc })
		e.serve(request(t, sip.INVITE, "sip:bob@example.test", pai, "Privacy: id"))
		got := map[string]bool{}
		for _, s := range e.net.take() {
			got[s.remote.String()] = s.msg.Head().Has("P-Asserted-Identity")
		}
		if len(got) != 2 || got["198.51.100.20:5060"] || !got["203.0.113.10:5060"] {
			t.Errorf("identity by hop: %v, want only the trusted edge proxy's", got)
		}
	})
	t.Run("in-dialog ACK, stateless: removed towards an untrusted hop", func(t *testing.T) {
		e := newTestEnv(t, cfg, nil)
		ack := request(t, sip.ACK, "sip:bob@203.0.113.9", "Route: <sip:192.0.2.1;lr>", pai, "Privacy: id")
		ack.To.Params = ";tag=b1"
		ack.StampVia(callerIn)
		e.p.HandleACK(context.Background(), ack, Flow{Proto: transport.UDP, Local: proxyUDP, Remote: callerIn})
		out := e.net.all(t)
		if len(out) != 1 || out[0].Has("P-Asserted-Identity") {
			t.Errorf("sent %s with identity %v", uris(out), len(out) == 1 && out[0].Has("P-Asserted-Identity"))
		}
	})
}

func TestPrivacyIDParse(t *testing.T) {
	for _, tc := range []struct {
		rows []string
		want bool
	}{
		{nil, false},
		{[]string{"id"}, true},
		{[]string{"ID"}, true},
		{[]string{"none"}, false},
		{[]string{"header; id"}, true},
		{[]string{"header;user", "id"}, true},
		{[]string{"user , id ;critical"}, true},
		{[]string{"idx"}, false},
		{[]string{"i d"}, false},
		{[]string{";;,"}, false},
	} {
		req := request(t, sip.INVITE, "sip:x@example.test")
		for _, r := range tc.rows {
			req.Add("Privacy", r)
		}
		if got := privacyID(req); got != tc.want {
			t.Errorf("Privacy %q: %v, want %v", tc.rows, got, tc.want)
		}
	}
}

// A request without Privacy pays one scan of its fields, no allocation.
func TestHideIdentityCheap(t *testing.T) {
	req := request(t, sip.INVITE, "sip:x@example.test", pai, "User-Agent: x", "Allow: INVITE, ACK")
	if n := testing.AllocsPerRun(100, func() { hideIdentity(req) }); n != 0 {
		t.Errorf("%v allocs", n)
	}
}

func BenchmarkHideIdentity(b *testing.B) {
	plain := request(b, sip.INVITE, "sip:x@example.test", pai, "User-Agent: x", "Allow: INVITE, ACK")
	private := request(b, sip.INVITE, "sip:x@example.test", pai, "User-Agent: x", "Privacy: header;id")
	b.Run("no Privacy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			hideIdentity(plain)
		}
	})
	b.Run("Privacy id", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			hideIdentity(private)
		}
	})
}

func FuzzPrivacyID(f *testing.F) {
	for _, s := range []string{"id", "header;id", "none", "user, id ;critical", ";;", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		req := &sip.Request{}
		req.Add("Privacy", v)
		got := privacyID(req)
		want := false
		// The value as the header layer gives it back (unfolded).
		for _, tok := range strings.FieldsFunc(req.Get("Privacy"), func(r rune) bool { return r == ';' || r == ',' }) {
			if strings.EqualFold(strings.TrimSpace(tok), "id") {
				want = true
			}
		}
		if got != want {
			t.Errorf("privacyID(%q) = %v, want %v", v, got, want)
		}
	})
}
