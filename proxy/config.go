package proxy

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hlas-voip/hlas/sip"
)

// Mode is how the proxy forwards requests.
type Mode string

// Modes of operation.
const (
	// Stateful keeps a response context per request (RFC 3261 §16): it
	// forks, picks the best response, cancels branches and runs Timer C.
	// The default.
	Stateful Mode = "stateful"
	// Stateless forwards each request to one target without transaction
	// state (RFC 3261 §16.11), and responses by their Via: for load
	// balancers and edge proxies.
	Stateless Mode = "stateless"
	// Redirect answers every request it would forward with the target set
	// as 302 (one contact) or 300 (several) (RFC 3261 §8.3): a redirect
	// server.
	Redirect Mode = "redirect"
)

// Action is what a routing rule does with the requests it matches.
type Action string

// Rule actions.
const (
	// ActionLocal looks the Request-URI up in the location service and
	// forks to the contacts found (RFC 3261 §16.5). Requests for the
	// server's own domains get it when no rule matches.
	ActionLocal Action = "local"
	// ActionForward sends the request to a gateway group in order of
	// priority (weighted among equal priorities), failing over to the next
	// gateway on a timeout, a 408 or a 5xx.
	ActionForward Action = "forward"
	// ActionResolve forwards the request to where its Request-URI points
	// (RFC 3263 through the Resolver: configured routes, IP literals, DNS).
	ActionResolve Action = "resolve"
	// ActionRedirect answers with a 3xx: the rule's targets, else the
	// location service's contacts; 305 Use Proxy with the proxy in targets.
	ActionRedirect Action = "redirect"
	// ActionReject answers with the rule's code (4xx-6xx).
	ActionReject Action = "reject"
	// ActionENUM looks the Request-URI's E.164 number up in ENUM (RFC
	// 6116) and sends the request to the URIs found; a number without a
	// record goes on to the next rule.
	ActionENUM Action = "enum"
)

// Defaults of Config.
const (
	// DefaultTimerC is Timer C (RFC 3261 §16.6 step 11: "MUST be larger
	// than 3 minutes").
	DefaultTimerC = 3*time.Minute + 10*time.Second
	// DefaultMaxBranches bounds the targets one request forks to.
	DefaultMaxBranches = 16
	// DefaultMaxPending bounds the response contexts alive at once.
	DefaultMaxPending = 100000
)

// Config is the routing configuration, the "routing" section of the server
// YAML file. The zero value is a stateful proxy for the server's own domains
// (location service) that answers 404 for everything else.
//
//	routing:
//	  mode: stateful            # stateful | stateless | redirect
//	  timer_c: 3m10s
//	  trusted:                  # peers that pass without a challenge (docs/trust.md)
//	    - "tls:192.0.2.0/24"
//	    - "cert:gw.carrier.example"
//	  locations:                # static bindings, before a registrar has any
//	    alice@example.test: [ "sip:alice@192.0.2.10:5060" ]
//	  routes:                   # host → next hops, for the resolve action
//	    peer.example.net: [ "udp:192.0.2.20:5060" ]
//	  gateways:
//	    pstn:
//	      - { uri: "sip:192.0.2.30:5060", priority: 1, weight: 2 }
//	      - { uri: "sip:192.0.2.31:5060;transport=tcp", priority: 2 }
//	  rules:
//	    - { prefix: "900", action: reject, code: 403, reason: "Premium Barred" }
//	    - { prefix: "+", action: enum }   # ENUM first; no record: next rule
//	    - { prefix: "+", action: forward, gateways: pstn, strip: 1 }
//	    - { domain: old.example.test, action: redirect }
//	    - { domain: "*", action: resolve }
type Config struct {
	// Mode is stateful (default), stateless or redirect.
	Mode Mode `yaml:"mode"`
	// TimerC bounds how long an INVITE branch may stay in the proceeding
	// state (RFC 3261 §16.6 step 11, §16.8); each provisional response
	// restarts it. Default 3m10s.
	TimerC time.Duration `yaml:"timer_c"`
	// RecordRoute keeps the proxy on the path of dialogs it forwards
	// (RFC 3261 §16.6 step 4). Default true.
	RecordRoute *bool `yaml:"record_route"`
	// MaxBranches bounds the targets a request forks to. Default 16.
	MaxBranches int `yaml:"max_branches"`
	// MaxPending bounds the requests being proxied statefully at once;
	// beyond it new ones get 503 with Retry-After. Default 100000.
	MaxPending int `yaml:"max_pending"`
	// Trusted lists the peers whose requests pass without authentication
	// and whose From and P-Asserted-Identity are believed (docs/trust.md):
	// "192.0.2.0/24" (any transport and port), "udp:192.0.2.10",
	// "tcp:192.0.2.10:5060", "tls:[2001:db8::1]:5061",
	// "cert:gw.carrier.example" (a TLS peer whose verified certificate
	// names it), "cert:*.carrier.example". Each gateway is trusted too, from
	// its address, over the transport its URI names (and for UDP on the
	// port it names).
	Trusted []string `yaml:"trusted"`
	// Locations are static bindings, address of record ("user@domain") to
	// contacts ("sip:user@host:port;q=0.5"), used by the location service
	// when no registrar is plugged in.
	Locations map[string][]string `yaml:"locations"`
	// Routes maps a host (or host:port) to its next hops
	// ("udp:192.0.2.1:5060", "tcp:[2001:db8::1]:5060") for the resolve
	// action, ahead of DNS.
	Routes map[string][]string `yaml:"routes"`
	// Gateways are named gateway groups for the forward action.
	Gateways map[string][]Gateway `yaml:"gateways"`
	// Rules are tried in order for requests outside a dialog; the first
	// that matches decides. Requests no rule matches go to the location
	// service when the Request-URI is one of the server's domains, and get
	// 404 otherwise.
	Rules []Rule `yaml:"rules"`
}

// Gateway is one member of a gateway group.
type Gateway struct {
	// URI is where requests go: "sip:192.0.2.1:5060;transport=tcp". The
	// Request-URI keeps its user part and takes the gateway's host, port
	// and parameters.
	URI string `yaml:"uri"`
	// Priority orders the gateways: lower first. Default 0.
	Priority int `yaml:"priority"`
	// Weight shares the requests among gateways of equal priority. Default 1.
	Weight int `yaml:"weight"`
}

// Rule is one routing rule: a match on the Request-URI and an action.
type Rule struct {
	// Domain matches the Request-URI host, case-insensitively; "*" or
	// empty matches any.
	Domain string `yaml:"domain"`
	// Prefix matches the start of the Request-URI user part (a telephone
	// number); empty matches any.
	Prefix string `yaml:"prefix"`
	// Action is local, forward, resolve, enum, redirect or reject.
	Action Action `yaml:"action"`
	// Gateways names the gateway group of a forward action.
	Gateways string `yaml:"gateways"`
	// Strip removes this many leading characters of the user part before
	// a forward.
	Strip int `yaml:"strip"`
	// Timeout is how long a forward (resolve) waits for any response from
	// a gateway (a DNS target) before it tries the next one. Default: the
	// transaction timeout (64*T1).
	Timeout time.Duration `yaml:"timeout"`
	// Targets are the contacts of a redirect ("sip:bob@192.0.2.9"); empty
	// means the location service's contacts for the Request-URI.
	Targets []string `yaml:"targets"`
	// Code is the status of a reject (400-699) or a redirect (300-399;
	// default 302 for one contact, 300 for several; 305 for Use Proxy).
	Code int `yaml:"code"`
	// Reason is the reason phrase; default the standard one.
	Reason string `yaml:"reason"`
}

// recordRoute reports whether Record-Route is on.
func (c Config) recordRoute() bool { return c.RecordRoute == nil || *c.RecordRoute }

func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = Stateful
	}
	if c.TimerC <= 0 {
		c.TimerC = DefaultTimerC
	}
	if c.MaxBranches <= 0 {
		c.MaxBranches = DefaultMaxBranches
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	return c
}

// Validate checks the configuration; errors name the field as written in
// the YAML file ("routing.rules[2].gateways").
func (c Config) Validate() error {
	_, err := compile(c)
	return err
}

// compiled is a Config parsed into the values the proxy works with.
type compiled struct {
	trusted   []trustRule // routing.trusted, then the gateways' implied rules
	certRules bool        // some trusted rule is a cert: one
	locations StaticLocator
	routes    map[string][]Hop
	gateways  map[string][]GatewayTarget
	redirects map[int][]Target // rule index → parsed targets
}

func compile(c Config) (*compiled, error) {
	out := &compiled{
		locations: StaticLocator{},
		routes:    map[string][]Hop{},
		gateways:  map[string][]GatewayTarget{},
		redirects: map[int][]Target{},
	}
	switch c.Mode {
	case "", Stateful, Stateless, Redirect:
	default:
		return nil, fmt.Errorf("routing.mode %q: want stateful, stateless or redirect", c.Mode)
	}
	if c.TimerC < 0 {
		return nil, fmt.Errorf("routing.timer_c %s: negative", c.TimerC)
	}
	if c.MaxBranches < 0 || c.MaxPending < 0 {
		return nil, fmt.Errorf("routing.max_branches and routing.max_pending must not be negative")
	}
	for i, s := range c.Trusted {
		r, err := parseTrustRule(s)
		if err != nil {
			return nil, fmt.Errorf("routing.trusted[%d] %q: %w", i, s, err)
		}
		out.trusted = append(out.trusted, r)
		out.certRules = out.certRules || r.name != ""
	}
	aors := make([]string, 0, len(c.Locations))
	for aor := range c.Locations {
		aors = append(aors, aor)
	}
	sort.Strings(aors)
	for _, aor := range aors {
		u, err := parseSIP(aor)
		if err != nil || u.User == "" {
			return nil, fmt.Errorf("routing.locations %q: want user@domain", aor)
		}
		if _, ok := out.locations[AOR(u)]; !ok {
			out.locations[AOR(u)] = []Target{}
		}
		for i, s := range c.Locations[aor] {
			t, err := parseContact(s)
			if err != nil {
				return nil, fmt.Errorf("routing.locations[%q][%d] %q: %w", aor, i, s, err)
			}
			out.locations[AOR(u)] = append(out.locations[AOR(u)], t)
		}
	}
	for host, list := range c.Routes {
		key := strings.ToLower(host)
		if key == "" {
			return nil, fmt.Errorf("routing.routes: empty host")
		}
		for i, s := range list {
			h, err := ParseHop(s)
			if err != nil {
				return nil, fmt.Errorf("routing.routes[%q][%d]: %w", host, i, err)
			}
			out.routes[key] = append(out.routes[key], h)
		}
	}
	for name, gws := range c.Gateways {
		if len(gws) == 0 {
			return nil, fmt.Errorf("routing.gateways.%s: empty group", name)
		}
		for i, g := range gws {
			u, err := parseSIP(g.URI)
			if err != nil {
				return nil, fmt.Errorf("routing.gateways.%s[%d].uri %q: %w", name, i, g.URI, err)
			}
			if g.Weight < 0 || g.Priority < 0 {
				return nil, fmt.Errorf("routing.gateways.%s[%d]: negative priority or weight", name, i)
			}
			w := g.Weight
			if w == 0 {
				w = 1
			}
			out.gateways[name] = append(out.gateways[name], GatewayTarget{URI: u, Priority: g.Priority, Weight: w})
		}
	}
	// The gateways' rules in a fixed order (the map's is random), after
	// the configured ones.
	names := make([]string, 0, len(c.Gateways))
	for name := range out.gateways {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, g := range out.gateways[name] {
			if r, ok := gatewayTrustRule(g.URI); ok {
				out.trusted = append(out.trusted, r)
			}
		}
	}
	for i, r := range c.Rules {
		where := "routing.rules[" + strconv.Itoa(i) + "]"
		if r.Strip < 0 || r.Timeout < 0 {
			return nil, fmt.Errorf("%s: negative strip or timeout", where)
		}
		switch r.Action {
		case ActionLocal, ActionResolve, ActionENUM:
		case ActionForward:
			if _, ok := out.gateways[r.Gateways]; !ok {
				return nil, fmt.Errorf("%s.gateways %q: no such gateway group", where, r.Gateways)
			}
		case ActionRedirect:
			if r.Code != 0 && (r.Code < 300 || r.Code > 399) {
				return nil, fmt.Errorf("%s.code %d: a redirect wants 300-399", where, r.Code)
			}
			for j, s := range r.Targets {
				t, err := parseContact(s)
				if err != nil {
					return nil, fmt.Errorf("%s.targets[%d] %q: %w", where, j, s, err)
				}
				out.redirects[i] = append(out.redirects[i], t)
			}
			if r.Code == 305 && len(r.Targets) != 1 {
				return nil, fmt.Errorf("%s: 305 Use Proxy wants exactly one target, the proxy", where)
			}
		case ActionReject:
			if r.Code < 400 || r.Code > 699 {
				return nil, fmt.Errorf("%s.code %d: a reject wants 400-699", where, r.Code)
			}
		case "":
			return nil, fmt.Errorf("%s.action: missing (local, forward, resolve, enum, redirect or reject)", where)
		default:
			return nil, fmt.Errorf("%s.action %q: want local, forward, resolve, enum, redirect or reject", where, r.Action)
		}
	}
	return out, nil
}

// parsePrefix reads an address or CIDR prefix; an IPv4-mapped IPv6 one
// becomes IPv4, as the addresses it is compared with are unmapped.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, err
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// parseSIP parses "sip:...", "sips:..." or a bare "user@host".
func parseSIP(s string) (sip.URI, error) {
	s = strings.TrimSpace(s)
	l := strings.ToLower(s)
	if !strings.HasPrefix(l, "sip:") && !strings.HasPrefix(l, "sips:") {
		s = "sip:" + s
	}
	u, err := sip.ParseURI(s)
	if err != nil {
		return u, err
	}
	if !u.IsSIP() {
		return u, fmt.Errorf("not a sip or sips URI")
	}
	return u, nil
}

// parseContact parses a contact as written in the configuration:
// "sip:bob@192.0.2.1:5060;q=0.5" or "<sip:...>;q=0.5".
func parseContact(s string) (Target, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "<") {
		// A q parameter on a bare URI belongs to the contact, not the URI.
		uri, q := s, ""
		if i := strings.Index(strings.ToLower(s), ";q="); i >= 0 {
			uri, q = s[:i], s[i:]
		}
		s = "<" + uri + ">" + q
	}
	a, err := sip.ParseAddress(s)
	if err != nil {
		return Target{}, err
	}
	if !a.URI.IsSIP() {
		return Target{}, fmt.Errorf("not a sip or sips URI")
	}
	t := Target{URI: a.URI, Q: 1}
	if q, ok := a.Params.Get("q"); ok {
		f, err := strconv.ParseFloat(q, 64)
		if err != nil || f < 0 || f > 1 {
			return Target{}, fmt.Errorf("q %q: want 0 to 1", q)
		}
		t.Q = f
	}
	return t, nil
}
