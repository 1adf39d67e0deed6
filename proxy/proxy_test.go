package proxy

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transport"
)

// bob has two contacts of equal q and one lower.
var bobLocations = map[string][]string{
	"bob@example.test": {
		"sip:bob@198.51.100.20:5062",
		"sip:bob@198.51.100.21:5062",
		"sip:bob@198.51.100.22:5062;q=0.5",
	},
	"carol@example.test": {"sip:carol@198.51.100.30:5062"},
	"dave@example.test":  {},
}

func TestRouting(t *testing.T) {
	cfg := Config{
		Locations: bobLocations,
		Routes:    map[string][]string{"peer.test": {"udp:203.0.113.9:5060"}},
		Gateways: map[string][]Gateway{
			"pstn": {{URI: "sip:203.0.113.50:5060", Priority: 1}, {URI: "sip:203.0.113.51:5060", Priority: 2}},
		},
		Rules: []Rule{
			{Prefix: "900", Action: ActionReject, Code: 403, Reason: "Premium Barred"},
			{Prefix: "+", Action: ActionForward, Gateways: "pstn", Strip: 1},
			{Domain: "peer.test", Action: ActionResolve},
			{Domain: "moved.test", Action: ActionRedirect, Targets: []string{"sip:bob@example.test"}},
		},
	}
	cases := []struct {
		name  string
		ruri  string
		extra []string
		codes string // what the caller got at once
		sent  string // what went on the wire
	}{
		{"RFC3261 16.5 location service: equal q in parallel", "sip:bob@example.test", nil, "100",
			"INVITE sip:bob@198.51.100.20:5062, INVITE sip:bob@198.51.100.21:5062"},
		{"RFC3261 16.5 unknown user: 404", "sip:nobody@example.test", nil, "404", ""},
		{"RFC3261 16.5 user without contacts: 480", "sip:dave@example.test", nil, "480", ""},
		{"foreign domain without a rule: 404", "sip:x@elsewhere.test", nil, "404", ""},
		{"rule: reject with code and reason", "sip:900123@example.test", nil, "403", ""},
		{"rule: forward to the first gateway, prefix stripped", "sip:+4420@example.test", nil, "100",
			"INVITE sip:4420@203.0.113.50:5060"},
		{"rule: resolve a foreign domain through configured routes", "sip:x@peer.test", nil, "100",
			"INVITE sip:x@peer.test"},
		{"rule: redirect", "sip:old@moved.test", nil, "302", ""},
		{"RFC3261 16.4 our Route is removed, the Request-URI routed", "sip:carol@example.test",
			[]string{"Route: <sip:192.0.2.1;lr>"}, "100", "INVITE sip:carol@198.51.100.30:5062"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, cfg, nil)
			tx := e.serve(request(t, sip.INVITE, tc.ruri, tc.extra...))
			if got := tx.codes(); got != tc.codes {
				t.Errorf("caller got %q, want %q", got, tc.codes)
			}
			if got := uris(e.net.requests(t)); got != tc.sent {
				t.Errorf("sent %q, want %q", got, tc.sent)
			}
		})
	}
}

func TestForwarding(t *testing.T) {
	t.Run("RFC3261 16.6 copy: Request-URI, Max-Forwards, Record-Route, Via", func(t *testing.T) {
		e := newTestEnv(t, Config{Locations: bobLocations}, nil)
		req := request(t, sip.INVITE, "sip:carol@example.test", "Record-Route: <sip:upstream.test;lr>")
		e.serve(req)
		out := e.net.requests(t)
		if len(out) != 1 {
			t.Fatalf("sent %d", len(out))
		}
		r := out[0]
		if r.MaxForwards != 69 {
			t.Errorf("Max-Forwards %d", r.MaxForwards)
		}
		if len(r.RecordRoute) != 2 || r.RecordRoute[0].URI.String() != "sip:192.0.2.1:5060;lr" {
			t.Errorf("Record-Route %v", r.RecordRoute)
		}
		if len(r.Via) != 2 || !strings.HasPrefix(r.Via[0].Branch(), branchPrefix) || r.Via[0].SentBy() != "192.0.2.1:5060" ||
			r.Via[1].Branch() != "z9hG4bKcaller1" || r.Via[1].Received() != "" && r.Via[1].Received() != "198.51.100.7" {
			t.Errorf("Via %v", r.Via)
		}
		if r.CallID != req.CallID || r.CSeq != req.CSeq || string(r.Body) != string(req.Body) {
			t.Error("request changed beyond §16.6")
		}
	})
	t.Run("RFC3261 16.6 step 3 Max-Forwards added when absent", func(t *testing.T) {
		e := newTestEnv(t, Config{Locations: bobLocations}, nil)
		req := request(t, sip.MESSAGE, "sip:carol@example.test")
		req.MaxForwards = -1
		e.serve(req)
		if out := e.net.requests(t); len(out) != 1 || out[0].MaxForwards != 70 {
			t.Fatalf("sent %v", out)
		}
	})
	t.Run("RFC3261 16.6 step 4 two Record-Route entries when the transport changes", func(t *testing.T) {
		e := newTestEnv(t, Config{Locations: map[string][]string{"carol@example.test": {"sip:carol@198.51.100.30:5062;transport=tcp"}}}, nil)
		e.serve(request(t, sip.INVITE, "sip:carol@example.test"))
		e.p.Close() // the TCP connection is dialed in the background
		s := e.net.take()
		if len(s) != 1 || s[0].proto != transport.TCP {
			t.Fatalf("sent %v", s)
		}
		r := s[0].msg.(*sip.Request)
		if len(r.RecordRoute) != 2 || r.RecordRoute[0].URI.String() != "sip:192.0.2.1:5060;lr;transport=tcp;r2=on" ||
			r.RecordRoute[1].URI.String() != "sip:192.0.2.1:5060;lr;r2=on" {
			t.Errorf("Record-Route %v", r.RecordRoute)
		}
		if r.Via[0].Transport != "TCP" {
			t.Errorf("Via %v", r.Via[0])
		}
	})
	t.Run("RFC3261 16.6 step 4 no Record-Route when configured off, nor in a dialog", func(t *testing.T) {
		e := newTestEnv(t, Config{Locations: bobLocations, RecordRoute: boolp(false)}, nil)
		e.serve(request(t, sip.INVITE, "sip:carol@example.test"))
		if out := e.net.requests(t); len(out) != 1 || len(out[0].RecordRoute) != 0 {
			t.Fatalf("sent %v", out)
		}
	})
	t.Run("RFC3327 Path becomes the Route set; RFC5626 the flow of the REGISTER carries it", func(t *testing.T) {
		nat := netip.MustParseAddrPort("203.0.113.77:40001")
		loc := StaticLocator{"sip:carol@example.test": {{
			URI:  sip.URI{Scheme: "sip", User: "carol", Host: "10.0.0.5", Port: 5062},
			Q:    1,
			Path: []sip.Address{{URI: sip.URI{Scheme: "sip", Host: "192.0.2.1", Params: ";lr"}}, {URI: sip.URI{Scheme: "sip", Host: "edge.test", Params: ";lr"}}},
			Flow: Flow{Proto: transport.UDP, Local: proxyUDP, Remote: nat},
		}}}
		e := newTestEnv(t, Config{}, func(env *Env) { env.Locator = loc })
		e.serve(request(t, sip.INVITE, "sip:carol@example.test"))
		s := e.net.take()
		if len(s) != 1 || s[0].remote != nat || s[0].local != proxyUDP {
			t.Fatalf("sent %+v, want to %s from %s", s, nat, proxyUDP)
		}
		r := s[0].msg.(*sip.Request)
		if r.URI.Host != "10.0.0.5" || len(r.Route) != 1 || r.Route[0].URI.Host != "edge.test" {
			t.Errorf("%s with Route %v", r.URI.String(), r.Route)
		}
	})
	t.Run("RFC5923 a TCP flow whose connection is gone: the Contact instead", func(t *testing.T) {
		flow := netip.MustParseAddrPort("203.0.113.77:40001") // the phone's ephemeral source port
		loc := StaticLocator{"sip:carol@example.test": {{
			URI:  sip.URI{Scheme: "sip", User: "carol", Host: "198.51.100.5", Port: 5062, Params: ";transport=tcp"},
			Q:    1,
			Flow: Flow{Proto: transport.TCP, Remote: flow}, // no open connection
		}}}
		e := newTestEnv(t, Config{}, func(env *Env) { env.Locator = loc })
		e.serve(request(t, sip.INVITE, "sip:carol@example.test"))
		var s []sent
		for deadline := time.Now().Add(5 * time.Second); len(s) == 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond) // the dial runs in the background
			s = e.net.take()
		}
		if len(s) != 1 || s[0].proto != transport.TCP || s[0].remote.String() != "198.51.100.5:5062" {
			t.Fatalf("sent %+v, want a new connection to the Contact", s)
		}
	})
	t.Run("RFC3261 16.6 step 6 strict next hop: Request-URI to the end of the Route set", func(t *testing.T) {
		e := newTestEnv(t, Config{Routes: map[string][]string{"strict.test": {"udp:203.0.113.9:5060"}}},
			nil)
		req := request(t, sip.BYE, "sip:carol@198.51.100.30:5062", "Route: <sip:192.0.2.1;lr>", "Route: <sip:strict.test>")
		req.To.Params = ";tag=b1"
		e.serve(req)
		s := e.net.take()
		if len(s) != 1 || s[0].remote.String() != "203.0.113.9:5060" {
			t.Fatalf("sent %+v", s)
		}
		r := s[0].msg.(*sip.Request)
		if r.URI.String() != "sip:strict.test" || len(r.Route) != 1 || r.Route[0].URI.String() != "sip:carol@198.51.100.30:5062" {
			t.Errorf("%s Route %v", r.URI.String(), r.Route)
		}
	})
}

func TestPreprocess(t *testing.T) {
	e := newTestEnv(t, Config{}, nil)
	cases := []struct {
		name, ruri string
		routes     []string
		wantURI    string
		wantRoutes int
		routed     bool
	}{
		{"RFC3261 16.4 our Route removed", "sip:bob@198.51.100.20", []string{"<sip:192.0.2.1;lr>", "<sip:next.test;lr>"}, "sip:bob@198.51.100.20", 1, true},
		{"RFC3261 16.4 both our r2 entries removed", "sip:bob@198.51.100.20", []string{"<sip:192.0.2.1;lr;transport=tcp;r2=on>", "<sip:192.0.2.1;lr;r2=on>"}, "sip:bob@198.51.100.20", 0, true},
		{"RFC3261 16.4 a second Route of ours without r2 stays (spiral)", "sip:bob@198.51.100.20", []string{"<sip:192.0.2.1;lr>", "<sip:proxy.test;lr>"}, "sip:bob@198.51.100.20", 1, true},
		{"RFC3261 16.4 strict router left our Record-Route in the Request-URI", "sip:192.0.2.1;lr", []string{"<sip:next.test;lr>", "<sip:bob@198.51.100.20>"}, "sip:bob@198.51.100.20", 1, true},
		{"RFC3261 16.4 foreign Route untouched", "sip:bob@198.51.100.20", []string{"<sip:other.test;lr>"}, "sip:bob@198.51.100.20", 1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var extra []string
			for _, r := range tc.routes {
				extra = append(extra, "Route: "+r)
			}
			req := request(t, sip.BYE, tc.ruri, extra...)
			routed, _, _ := e.p.preprocess(req)
			if routed != tc.routed || req.URI.String() != tc.wantURI || len(req.Route) != tc.wantRoutes {
				t.Errorf("routed %v, URI %s, Route %v", routed, req.URI.String(), req.Route)
			}
		})
	}
}

func TestLoopDetection(t *testing.T) {
	cfg := Config{
		Routes: map[string][]string{"peer.test": {"udp:203.0.113.9:5060"}},
		Rules:  []Rule{{Domain: "peer.test", Action: ActionResolve}, {Domain: "other.test", Action: ActionResolve}},
	}
	e := newTestEnv(t, cfg, nil)
	e.serve(request(t, sip.INVITE, "sip:x@peer.test"))
	out := e.net.requests(t)
	if len(out) != 1 {
		t.Fatalf("sent %d", len(out))
	}
	back := func(r *sip.Request, ruri string) *sip.Request {
		// The next hop sends it straight back, adding its Via.
		m, _ := sip.ParseString(r.String())
		b := m.(*sip.Request)
		b.Via = append([]sip.Via{{Transport: "UDP", Host: "203.0.113.9", Port: 5060, Params: ";branch=z9hG4bKpeer"}}, b.Via...)
		if ruri != "" {
			b.URI, _ = sip.ParseURI(ruri)
		}
		return b
	}
	t.Run("RFC3261 16.3 step 4 same Request-URI again: 482", func(t *testing.T) {
		tx := e.serve(back(out[0], ""))
		if tx.codes() != "482" {
			t.Errorf("got %q", tx.codes())
		}
		if n := testutil.ToFloat64(e.p.met.requests.WithLabelValues("loop")); n != 1 {
			t.Errorf("loop metric %v", n)
		}
	})
	t.Run("RFC3261 16.3 step 4 spiral with a new Request-URI passes", func(t *testing.T) {
		tx := e.serve(back(out[0], "sip:x@other.test"))
		if strings.Contains(tx.codes(), "482") {
			t.Errorf("spiral refused: %q", tx.codes())
		}
	})
}

func TestResponseContext(t *testing.T) {
	cfg := Config{Locations: bobLocations}
	setup := func(t *testing.T) (*testEnv, *fakeTx, []*sip.Request) {
		e := newTestEnv(t, cfg, nil)
		tx := e.serve(request(t, sip.INVITE, "sip:bob@example.test"))
		out := e.net.requests(t)
		if len(out) != 2 {
			t.Fatalf("forked to %d", len(out))
		}
		return e, tx, out
	}
	t.Run("RFC3261 16.7 step 5 provisional responses forwarded, 100 not", func(t *testing.T) {
		e, tx, out := setup(t)
		e.answer(out[0], 100, "")
		e.answer(out[0], 180, "b1")
		if tx.codes() != "100 180" {
			t.Errorf("caller got %q", tx.codes())
		}
		if len(tx.last().Via) != 1 {
			t.Errorf("our Via not removed: %v", tx.last().Via)
		}
	})
	t.Run("RFC3261 16.7 step 10 first 2xx forwarded, other branches cancelled", func(t *testing.T) {
		e, tx, out := setup(t)
		e.answer(out[0], 180, "b1")
		e.answer(out[1], 180, "b2")
		e.answer(out[1], 200, "b2")
		if tx.codes() != "100 180 180 200" {
			t.Errorf("caller got %q", tx.codes())
		}
		c := e.net.requests(t)
		if len(c) != 1 || c[0].Method != sip.CANCEL || c[0].Via[0].Branch() != out[0].Via[0].Branch() {
			t.Fatalf("sent %s", uris(c))
		}
		e.answer(c[0], 200, "b1")
		e.answer(out[0], 487, "b1")
		if tx.codes() != "100 180 180 200" {
			t.Errorf("487 of the cancelled branch went upstream: %q", tx.codes())
		}
		// Every 2xx is forwarded (§16.7 step 5), a late one included.
		e.answer(out[1], 200, "b2")
		if tx.codes() != "100 180 180 200 200" {
			t.Errorf("2xx retransmission not forwarded: %q", tx.codes())
		}
		if e.p.Pending() != 0 {
			t.Errorf("%d contexts left", e.p.Pending())
		}
	})
	t.Run("RFC3261 16.7 step 6 lowest class wins; sequential q-value group next", func(t *testing.T) {
		e, tx, out := setup(t)
		e.answer(out[0], 486, "b1")
		e.answer(out[1], 404, "b2")
		next := e.net.requests(t)
		if uris(next) != "INVITE sip:bob@198.51.100.22:5062" {
			t.Fatalf("lower q not tried: %s", uris(next))
		}
		e.answer(next[0], 302, "b3", func(r *sip.Response) {
			r.Contact = []sip.Address{{URI: sip.URI{Scheme: "sip", User: "bob", Host: "203.0.113.1"}}}
		})
		if tx.codes() != "100 302" {
			t.Errorf("caller got %q", tx.codes())
		}
	})
	t.Run("RFC3261 16.7 step 6 503 becomes 500", func(t *testing.T) {
		e, tx, out := setup(t)
		e.answer(out[0], 503, "b1")
		e.answer(out[1], 503, "b2")
		e.answer(e.net.requests(t)[0], 503, "b3")
		if tx.codes() != "100 500" {
			t.Errorf("caller got %q", tx.codes())
		}
	})
	t.Run("RFC3261 16.7 step 7 challenges of 401 and 407 merged", func(t *testing.T) {
		e, tx, out := setup(t)
		e.answer(out[0], 401, "b1", func(r *sip.Response) { r.Add("WWW-Authenticate", `Digest realm="a", nonce="1"`) })
		e.answer(out[1], 407, "b2", func(r *sip.Response) { r.Add("Proxy-Authenticate", `Digest realm="b", nonce="2"`) })
		e.answer(e.net.requests(t)[0], 486, "b3")
		res := tx.last()
		if res.StatusCode != 401 || len(res.All("WWW-Authenticate")) != 1 || len(res.All("Proxy-Authenticate")) != 1 {
			t.Errorf("got %d with %v", res.StatusCode, res.Fields)
		}
	})
	t.Run("RFC3261 16.7 step 5 6xx cancels the other branches and is the answer", func(t *testing.T) {
		e, tx, out := setup(t)
		e.answer(out[1], 180, "b2")
		e.answer(out[0], 603, "b1")
		c := e.net.requests(t)
		if len(c) != 1 || c[0].Method != sip.CANCEL {
			t.Fatalf("sent %s", uris(c))
		}
		e.answer(out[1], 487, "b2")
		if tx.codes() != "100 180 603" {
			t.Errorf("caller got %q", tx.codes())
		}
	})
	t.Run("RFC3261 16.10 CANCEL from the caller cancels the branches; 487", func(t *testing.T) {
		e, tx, out := setup(t)
		e.answer(out[0], 180, "b1")
		tx.cancel()
		c := e.net.requests(t)
		if len(c) != 1 || c[0].Method != sip.CANCEL || c[0].Via[0].Branch() != out[0].Via[0].Branch() {
			t.Fatalf("sent %s", uris(c))
		}
		e.answer(out[0], 487, "b1")
		if tx.codes() != "100 180 487" {
			t.Errorf("caller got %q", tx.codes())
		}
		// The silent branch gets its CANCEL once it speaks (§9.1).
		e.answer(out[1], 180, "b2")
		if c := e.net.requests(t); len(c) != 1 || c[0].Method != sip.CANCEL {
			t.Errorf("late provisional not cancelled: %s", uris(c))
		}
	})
	t.Run("RFC3261 16.8 Timer C: CANCEL after a provisional, 408 upstream", func(t *testing.T) {
		e := newTestEnv(t, Config{Locations: bobLocations, TimerC: 4 * time.Minute}, nil)
		tx := e.serve(request(t, sip.INVITE, "sip:carol@example.test"))
		out := e.net.requests(t)
		e.answer(out[0], 180, "c1")
		e.clock.Advance(3 * time.Minute)
		e.answer(out[0], 183, "c1") // restarts Timer C
		e.clock.Advance(3 * time.Minute)
		if c := e.net.requests(t); len(c) != 0 {
			t.Fatalf("Timer C not restarted: %s", uris(c))
		}
		e.clock.Advance(time.Minute)
		c := e.net.requests(t)
		if len(c) != 1 || c[0].Method != sip.CANCEL {
			t.Fatalf("sent %s", uris(c))
		}
		// The branch's client transaction outlived the transaction
		// layer's Timer B: the 487 comes in as a stray and is ACKed here.
		e.answer(out[0], 487, "c1")
		if a := e.net.all(t); len(a) != 1 || a[0].Method != sip.ACK {
			t.Errorf("487 not ACKed: %s", uris(a))
		}
		if tx.codes() != "100 180 183 408" {
			t.Errorf("caller got %q", tx.codes())
		}
		if e.p.Pending() != 0 {
			t.Errorf("%d contexts left", e.p.Pending())
		}
	})
	t.Run("RFC3261 16.8 Timer C without a provisional: 408", func(t *testing.T) {
		e := newTestEnv(t, Config{Locations: bobLocations, TimerC: 10 * time.Second}, nil)
		tx := e.serve(request(t, sip.INVITE, "sip:carol@example.test"))
		e.clock.Advance(11 * time.Second)
		if tx.codes() != "100 408" {
			t.Errorf("caller got %q", tx.codes())
		}
	})
	t.Run("RFC3261 16.9 transport error counts as 503; no hop left: 500 upstream", func(t *testing.T) {
		e := newTestEnv(t, Config{Locations: bobLocations}, nil)
		e.net.fail = map[netip.AddrPort]bool{netip.MustParseAddrPort("198.51.100.30:5062"): true}
		tx := e.serve(request(t, sip.INVITE, "sip:carol@example.test"))
		if tx.codes() != "100 500" {
			t.Errorf("caller got %q", tx.codes())
		}
	})
	t.Run("non-INVITE: no 100, final forwarded", func(t *testing.T) {
		e := newTestEnv(t, Config{Locations: bobLocations}, nil)
		tx := e.serve(request(t, sip.MESSAGE, "sip:carol@example.test"))
		out := e.net.requests(t)
		e.answer(out[0], 202, "c1")
		if tx.codes() != "202" {
			t.Errorf("caller got %q", tx.codes())
		}
	})
}

func TestGatewayFailover(t *testing.T) {
	cfg := Config{
		Gateways: map[string][]Gateway{"pstn": {
			{URI: "sip:203.0.113.50:5060", Priority: 1},
			{URI: "sip:203.0.113.51:5060", Priority: 2},
			{URI: "sip:203.0.113.52:5060", Priority: 3},
		}},
		Rules: []Rule{{Prefix: "0", Action: ActionForward, Gateways: "pstn", Timeout: 2 * time.Second}},
	}
	t.Run("503 then timeout then answer", func(t *testing.T) {
		e := newTestEnv(t, cfg, nil)
		tx := e.serve(request(t, sip.INVITE, "sip:0123@example.test"))
		out := e.net.requests(t)
		e.answer(out[0], 503, "g1")
		out = e.net.all(t)
		if uris(out) != "ACK sip:0123@203.0.113.50:5060, INVITE sip:0123@203.0.113.51:5060" {
			t.Fatalf("after 503: %s", uris(out))
		}
		e.clock.Advance(2100 * time.Millisecond) // gateway 2 silent
		out = e.net.requests(t)
		var inv *sip.Request
		for _, r := range out {
			if r.Method == sip.INVITE && r.URI.Host == "203.0.113.52" {
				inv = r
			}
		}
		if inv == nil {
			t.Fatalf("after the timeout: %s", uris(out))
		}
		e.answer(inv, 200, "g3")
		if tx.codes() != "100 200" {
			t.Errorf("caller got %q", tx.codes())
		}
	})
	t.Run("486 ends the search", func(t *testing.T) {
		e := newTestEnv(t, cfg, nil)
		tx := e.serve(request(t, sip.INVITE, "sip:0123@example.test"))
		e.answer(e.net.requests(t)[0], 486, "g1")
		if out := e.net.all(t); uris(out) != "ACK sip:0123@203.0.113.50:5060" {
			t.Errorf("sent %s", uris(out))
		}
		if tx.codes() != "100 486" {
			t.Errorf("caller got %q", tx.codes())
		}
	})
	t.Run("gateways are trusted peers", func(t *testing.T) {
		e := newTestEnv(t, cfg, nil)
		udp := netip.MustParseAddrPort
		if !e.p.TrustedSource(transport.UDP, udp("203.0.113.51:5060"), nil) || e.p.TrustedSource(transport.UDP, udp("203.0.113.99:5060"), nil) {
			t.Error("TrustedSource")
		}
	})
}

func TestWeights(t *testing.T) {
	gws := []GatewayTarget{{URI: sip.URI{Host: "a"}, Weight: 3}, {URI: sip.URI{Host: "b"}, Weight: 1}, {URI: sip.URI{Host: "c"}, Priority: 1, Weight: 1}}
	first := map[string]int{}
	for i := range 4000 {
		o := orderGateways(gws, "call-"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune(i)))
		if len(o) != 3 || o[2].URI.Host != "c" {
			t.Fatalf("priority ignored: %v", o)
		}
		first[o[0].URI.Host]++
	}
	if first["a"] < 2*first["b"] {
		t.Errorf("weights 3:1 gave %v", first)
	}
}

func TestInDialog(t *testing.T) {
	e := newTestEnv(t, Config{}, nil)
	t.Run("RFC3261 16.12 loose routing: BYE to the Request-URI", func(t *testing.T) {
		req := request(t, sip.BYE, "sip:bob@198.51.100.20:5062", "Route: <sip:192.0.2.1;lr>")
		req.To.Params = ";tag=b1"
		tx := e.serve(req)
		out := e.net.requests(t)
		if uris(out) != "BYE sip:bob@198.51.100.20:5062" || len(out[0].Route) != 0 || len(out[0].RecordRoute) != 0 {
			t.Fatalf("sent %s", uris(out))
		}
		e.answer(out[0], 200, "b1")
		if tx.codes() != "200" {
			t.Errorf("caller got %q", tx.codes())
		}
	})
	t.Run("in-dialog request not through our Route: not relayed", func(t *testing.T) {
		req := request(t, sip.BYE, "sip:bob@198.51.100.20:5062")
		req.To.Params = ";tag=b1"
		if tx := e.serve(req); tx.codes() != "404" {
			t.Errorf("caller got %q", tx.codes())
		}
	})
	t.Run("RFC3261 16.7 step 10 ACK for a 2xx forwarded statelessly", func(t *testing.T) {
		ack := request(t, sip.ACK, "sip:bob@198.51.100.20:5062", "Route: <sip:192.0.2.1;lr>")
		ack.To.Params = ";tag=b1"
		ack.StampVia(callerIn)
		e.p.HandleACK(context.Background(), ack, Flow{Proto: transport.UDP, Local: proxyUDP, Remote: callerIn})
		out := e.net.all(t)
		if uris(out) != "ACK sip:bob@198.51.100.20:5062" || !strings.HasSuffix(out[0].Via[0].Branch(), ".0") {
			t.Fatalf("sent %s", uris(out))
		}
	})
}

func TestStateless(t *testing.T) {
	e := newTestEnv(t, Config{Mode: Stateless, Locations: bobLocations}, nil)
	t.Run("RFC3261 16.11 one target, deterministic branch, no 100", func(t *testing.T) {
		tx := e.serve(request(t, sip.INVITE, "sip:bob@example.test"))
		tx2 := e.serve(request(t, sip.INVITE, "sip:bob@example.test"))
		out := e.net.requests(t)
		if len(out) != 2 || out[0].Via[0].Branch() != out[1].Via[0].Branch() || tx.codes() != "" || tx2.codes() != "" {
			t.Fatalf("sent %s; branches %v", uris(out), out)
		}
		c := request(t, sip.CANCEL, "sip:bob@example.test")
		e.serve(c)
		if cs := e.net.requests(t); len(cs) != 1 || cs[0].Via[0].Branch() != out[0].Via[0].Branch() {
			t.Errorf("CANCEL took another branch: %v", cs)
		}
	})
	t.Run("RFC3261 16.11 responses go by their Via", func(t *testing.T) {
		e.serve(request(t, sip.INVITE, "sip:bob@example.test"))
		out := e.net.requests(t)
		res := sip.NewResponse(out[0], 180, "")
		res.To.Params = ";tag=x"
		if e.l.HandleResponse(res) || !e.p.HandleResponse(res, Flow{}) {
			t.Fatal("response not taken")
		}
		s := e.net.take()
		if len(s) != 1 || s[0].remote != callerIn || len(s[0].msg.Head().Via) != 1 {
			t.Fatalf("forwarded %+v", s)
		}
	})
	t.Run("a response whose top Via is not ours is not forwarded", func(t *testing.T) {
		res := sip.NewResponse(request(t, sip.INVITE, "sip:bob@example.test"), 200, "")
		if e.p.HandleResponse(res, Flow{}) {
			t.Error("forwarded")
		}
	})
}

func TestRedirectMode(t *testing.T) {
	e := newTestEnv(t, Config{Mode: Redirect, Locations: bobLocations}, nil)
	t.Run("RFC3261 21.3.1 300 with every contact and its q", func(t *testing.T) {
		tx := e.serve(request(t, sip.INVITE, "sip:bob@example.test"))
		res := tx.last()
		if res == nil || res.StatusCode != 300 || len(res.Contact) != 3 || res.Contact[2].Params != ";q=0.5" || res.To.Tag() == "" {
			t.Fatalf("got %v", res)
		}
	})
	t.Run("RFC3261 21.3.3 302 with one contact", func(t *testing.T) {
		tx := e.serve(request(t, sip.INVITE, "sip:carol@example.test"))
		if res := tx.last(); res.StatusCode != 302 || res.Contact[0].URI.String() != "sip:carol@198.51.100.30:5062" {
			t.Fatalf("got %v", res)
		}
		if len(e.net.take()) != 0 {
			t.Error("a redirect server forwarded")
		}
	})
	t.Run("RFC3261 21.3.5 305 Use Proxy by rule", func(t *testing.T) {
		e := newTestEnv(t, Config{Rules: []Rule{{Domain: "x.test", Action: ActionRedirect, Code: 305, Targets: []string{"sip:edge.test"}}}}, nil)
		tx := e.serve(request(t, sip.INVITE, "sip:bob@x.test"))
		if res := tx.last(); res.StatusCode != 305 || res.Contact[0].URI.String() != "sip:edge.test" {
			t.Fatalf("got %v", res)
		}
	})
}

func TestIdentity(t *testing.T) {
	alice := sip.URI{Scheme: "sip", User: "alice", Host: "example.test"}
	mallory := sip.URI{Scheme: "sip", User: "mallory", Host: "example.test"}
	for _, tc := range []struct {
		name string
		id   *sip.URI
		want string
	}{
		{"authenticated as the From user", &alice, "100"},
		{"authenticated as another local user: 403", &mallory, "403"},
		{"not authenticated (no auth step): passes", nil, "100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, Config{Locations: bobLocations}, func(env *Env) {
				env.Identity = func(context.Context) (sip.URI, bool) {
					if tc.id == nil {
						return sip.URI{}, false
					}
					return *tc.id, true
				}
			})
			if tx := e.serve(request(t, sip.INVITE, "sip:carol@example.test")); tx.codes() != tc.want {
				t.Errorf("got %q, want %q", tx.codes(), tc.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad mode", Config{Mode: "loud"}, "routing.mode"},
		{"unknown gateway group", Config{Rules: []Rule{{Action: ActionForward, Gateways: "x"}}}, "routing.rules[0].gateways"},
		{"reject code", Config{Rules: []Rule{{Action: ActionReject, Code: 200}}}, "routing.rules[0].code"},
		{"missing action", Config{Rules: []Rule{{Domain: "x"}}}, "routing.rules[0].action"},
		{"bad trusted", Config{Trusted: []string{"nope"}}, "routing.trusted[0]"},
		{"bad location", Config{Locations: map[string][]string{"a@b": {"mailto:x"}}}, "routing.locations"},
		{"bad route", Config{Routes: map[string][]string{"h": {"sctp:1.2.3.4:5"}}}, "routing.routes"},
		{"bad gateway", Config{Gateways: map[string][]Gateway{"g": {{URI: "http://x"}}}}, "routing.gateways.g[0].uri"},
		{"305 needs one target", Config{Rules: []Rule{{Action: ActionRedirect, Code: 305}}}, "305"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
}

// RFC 3261 §10.3 step 5: the AOR is the To URI as "sip:" user@host, the
// user unescaped, the host in lower case, nothing else of the URI.
func TestAOR(t *testing.T) {
	for _, tc := range []struct{ uri, want string }{
		{"sip:alice@Example.TEST:5070;transport=tcp?subject=x", "sip:alice@example.test"},
		{"sips:bob@example.test", "sip:bob@example.test"},
		{"sip:%61lice@example.test", "sip:alice@example.test"},
		{"sip:example.test", "sip:example.test"},
		{"sip:carol@[2001:DB8::1]:5060", "sip:carol@[2001:db8::1]"},
	} {
		u, err := sip.ParseURI(tc.uri)
		if err != nil {
			t.Fatal(err)
		}
		if got := AOR(u); got != tc.want {
			t.Errorf("AOR(%s) = %q, want %q", tc.uri, got, tc.want)
		}
		if got, _ := (StaticLocator{tc.want: {{URI: u}}}).Lookup(context.Background(), u); len(got) != 1 {
			t.Errorf("StaticLocator did not find %s under %q", tc.uri, tc.want)
		}
	}
}

// A message to a peer without an open connection goes out on a connection
// dialed in the background, after sendStream has returned and its caller
// has reused the buffer (the pooled encoding buffers): the dial sends a
// copy.
func TestBackgroundDialSendsACopy(t *testing.T) {
	peer := netip.MustParseAddrPort("198.51.100.30:5060")
	var g *gatedNet
	e := newTestEnv(t, Config{}, func(env *Env) {
		g = &gatedNet{fakeNet: env.Network.(*fakeNet), gate: peer, entered: make(chan struct{}), open: make(chan struct{})}
		env.Network = g
	})
	req := request(t, sip.OPTIONS, "sip:carol@198.51.100.30;transport=tcp")
	b := req.AppendTo(nil)
	if err := e.p.sendStream(transport.TCP, peer, nil, b, nil); err != nil {
		t.Fatal(err)
	}
	<-g.entered // the dial is under way
	clear(b)
	close(g.open)
	e.p.Close()
	if sent := e.net.requests(t); len(sent) != 1 || sent[0].CallID != req.CallID {
		t.Errorf("the dial sent %s, want the OPTIONS", uris(sent))
	}
}
