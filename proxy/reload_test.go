package proxy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/hlas-voip/hlas/sip"
)

// A reload changes where the next request goes and who is trusted; the
// chain built before it (as the server builds its own, once) follows.
func TestReloadRouting(t *testing.T) {
	gw := func(addr string) Config {
		return Config{
			Gateways: map[string][]Gateway{"pstn": {{URI: "sip:" + addr}}},
			Rules:    []Rule{{Prefix: "+", Action: ActionForward, Gateways: "pstn", Strip: 1}},
		}
	}
	e := newTestEnv(t, gw("203.0.113.50:5060"), nil)
	e.serve(request(t, sip.INVITE, "sip:+4420@example.test"))
	if got := uris(e.net.requests(t)); got != "INVITE sip:4420@203.0.113.50:5060" {
		t.Fatalf("before the reload sent %q", got)
	}
	if !e.p.TrustedAddr(netip.MustParseAddr("203.0.113.50")) {
		t.Error("the gateway is not trusted before the reload")
	}

	next := gw("203.0.113.60:5060")
	next.Trusted = []string{"198.51.100.0/24"}
	next.Mode = Stateless // not reloadable: ignored
	if err := e.p.Reload(next); err != nil {
		t.Fatal(err)
	}
	req := request(t, sip.INVITE, "sip:+4421@example.test")
	req.CallID = "call-2@198.51.100.7"
	e.serve(req)
	if got := uris(e.net.requests(t)); got != "INVITE sip:4421@203.0.113.60:5060" {
		t.Errorf("after the reload sent %q", got)
	}
	if e.p.TrustedAddr(netip.MustParseAddr("203.0.113.50")) {
		t.Error("the old gateway is still trusted")
	}
	for _, a := range []string{"203.0.113.60", "198.51.100.9"} {
		if !e.p.TrustedAddr(netip.MustParseAddr(a)) {
			t.Errorf("%s is not trusted after the reload", a)
		}
	}
	if c := e.p.Config(); c.Mode != Stateful || c.Gateways["pstn"][0].URI != "sip:203.0.113.60:5060" {
		t.Errorf("Config after the reload: mode %q, gateways %v", c.Mode, c.Gateways)
	}
}

// A configuration that does not compile changes nothing.
func TestReloadInvalidKeepsRouting(t *testing.T) {
	cfg := Config{Rules: []Rule{{Prefix: "900", Action: ActionReject, Code: 403}}}
	e := newTestEnv(t, cfg, nil)
	bad := []Config{
		{Rules: []Rule{{Action: ActionForward, Gateways: "nowhere"}}},
		{Rules: []Rule{{Prefix: "+", Action: ActionENUM}}}, // no DNS resolver in this env
	}
	for _, b := range bad {
		if err := e.p.Reload(b); err == nil || !strings.Contains(err.Error(), "routing.rules[0]") {
			t.Errorf("Reload(%+v) = %v, want an error naming routing.rules[0]", b.Rules, err)
		}
	}
	if got := e.serve(request(t, sip.INVITE, "sip:900123@example.test")).codes(); got != "403" {
		t.Errorf("after failed reloads the caller got %q, want the old rule's 403", got)
	}
}

// Requests routed while the routing is replaced see the old rules or the
// new ones, whole (run with -race).
func TestReloadWhileRouting(t *testing.T) {
	rules := func(code int) Config {
		return Config{
			Trusted: []string{"198.51.100.0/24"},
			Rules:   []Rule{{Prefix: "9", Action: ActionReject, Code: code}},
		}
	}
	e := newTestEnv(t, rules(403), nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			if err := e.p.Reload(rules([2]int{403, 480}[i%2])); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := 0; ; i++ {
		req := request(t, sip.INVITE, "sip:900@example.test")
		req.CallID = "reload-" + strings.Repeat("x", i%7) + string(rune('a'+i%26))
		if got := e.serve(req).codes(); got != "403" && got != "480" {
			t.Fatalf("request %d got %q", i, got)
		}
		if !e.p.TrustedAddr(netip.MustParseAddr("198.51.100.7")) {
			t.Fatal("trust lost during reloads")
		}
		select {
		case <-done:
			return
		default:
		}
	}
}
