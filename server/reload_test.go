package server

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/security"
	"github.com/hlas-voip/hlas/ua"
)

const reloadT1 = 100 * time.Millisecond

// reloadPhone is a phone that answers every call and counts them.
type reloadPhone struct {
	ua    *ua.UA
	calls chan *ua.Call
}

func newReloadPhone(t *testing.T, user, outbound string) *reloadPhone {
	t.Helper()
	p := &reloadPhone{calls: make(chan *ua.Call, 4)}
	u, err := ua.New(ua.Config{
		User: user, Server: outbound, T1: reloadT1, T2: 8 * reloadT1, T4: 10 * reloadT1, TimerD: 10 * reloadT1,
		OnCall: func(c *ua.Call) {
			p.calls <- c
			_ = c.Answer(c.Context())
			<-c.Done() // returning early would answer the call 500
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	p.ua = u
	return p
}

// gateway is a gateway group of one: the phone.
func (p *reloadPhone) gateway() []proxy.Gateway {
	u := p.ua.Contact().URI
	return []proxy.Gateway{{URI: "sip:" + u.Host + ":" + strconv.Itoa(u.Port)}}
}

func (p *reloadPhone) wantCall(t *testing.T, name string) *ua.Call {
	t.Helper()
	select {
	case c := <-p.calls:
		return c
	case <-time.After(10 * time.Second):
		t.Fatalf("%s got no call", name)
		return nil
	}
}

// A reload of the gateways sends the next call elsewhere, while a call set
// up before it is still ended with BYE along its recorded route.
func TestReloadRoutingKeepsCalls(t *testing.T) {
	ctx := context.Background()
	a := newReloadPhone(t, "gw-a@carrier.test", "")
	b := newReloadPhone(t, "gw-b@carrier.test", "")
	cfg := Config{
		Listen: []string{"udp:127.0.0.1:0"}, Domains: []string{"example.test"},
		T1: reloadT1, T2: 8 * reloadT1, T4: 10 * reloadT1,
		Auth: auth.Config{OpenDomains: []string{"*"}},
		Routing: proxy.Config{
			TimerC:   time.Second,
			Gateways: map[string][]proxy.Gateway{"pstn": a.gateway()},
			Rules:    []proxy.Rule{{Prefix: "+", Action: proxy.ActionForward, Gateways: "pstn"}},
		},
	}
	s := startServer(t, cfg)
	alice := newReloadPhone(t, "alice@example.test", s.Addrs()[0].Addr.String())

	first, err := alice.ua.Call(ctx, "sip:+100@example.test")
	if err != nil {
		t.Fatalf("call before the reload: %v", err)
	}
	atA := a.wantCall(t, "gateway a")

	next := cfg
	next.Listen = []string{"udp:127.0.0.1:0"}
	next.DataDir, next.DNS = s.cfg.DataDir, s.cfg.DNS
	next.Routing.Gateways = map[string][]proxy.Gateway{"pstn": b.gateway()}
	rep, err := s.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if keys := changeKeys(rep.Applied); keys != "routing.gateways" {
		t.Errorf("applied %q, want routing.gateways", keys)
	}
	if len(rep.NeedsRestart) != 0 {
		t.Errorf("needs restart: %+v", rep.NeedsRestart)
	}

	second, err := alice.ua.Call(ctx, "sip:+200@example.test")
	if err != nil {
		t.Fatalf("call after the reload: %v", err)
	}
	b.wantCall(t, "gateway b")
	select {
	case c := <-a.calls:
		t.Fatalf("gateway a got the call after the reload: %s", c.Request().URI.String())
	default:
	}

	if err := first.Hangup(ctx); err != nil {
		t.Fatalf("BYE of the call set up before the reload: %v", err)
	}
	select {
	case <-atA.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("gateway a's call did not end")
	}
	if err := second.Hangup(ctx); err != nil {
		t.Fatalf("BYE of the call after the reload: %v", err)
	}
}

func changeKeys(cs []Change) string {
	var ks []string
	for _, c := range cs {
		ks = append(ks, c.Key)
	}
	return strings.Join(ks, ",")
}

// newReloadServer is a server, not started, with a logger at a level the
// test can watch.
func newReloadServer(t *testing.T, cfg Config) (*Server, *slog.LevelVar, *syncBuffer) {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if len(cfg.DNS.Servers) == 0 {
		cfg.DNS = testDNS(t)
	}
	if cfg.Listen == nil {
		cfg.Listen = []string{"udp:127.0.0.1:0"}
	}
	lv := new(slog.LevelVar)
	lv.Set(LogLevel(cfg.LogLevel))
	out := &syncBuffer{}
	s, err := New(cfg, slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: lv})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	s.SetLogLevelVar(lv)
	return s, lv, out
}

// reloadBase is a configuration the reload tests change one key of.
func reloadBase(t *testing.T) Config {
	return Config{
		Listen: []string{"udp:127.0.0.1:0"}, DataDir: t.TempDir(), DNS: testDNS(t),
		Security: security.Config{Trusted: []string{"10.0.0.0/8"}},
	}
}

func TestReloadLogLevel(t *testing.T) {
	cfg := reloadBase(t)
	s, lv, out := newReloadServer(t, cfg)
	if lv.Level() != slog.LevelInfo {
		t.Fatalf("level %v before the reload", lv.Level())
	}
	cfg.LogLevel = "debug"
	rep, err := s.Reload(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Applied) != 1 || rep.Applied[0] != (Change{Key: "log_level", Old: "info", New: "debug"}) {
		t.Errorf("applied %+v", rep.Applied)
	}
	if lv.Level() != slog.LevelDebug {
		t.Errorf("level %v after the reload, want debug", lv.Level())
	}
	if !strings.Contains(out.String(), `level=INFO msg="config reloaded" feature=server key=log_level old=info new=debug`) {
		t.Errorf("no INFO line for the change in:\n%s", out)
	}

	// Without the level variable, the change is not applied but reported.
	s2 := newTestServer(t, reloadBase(t))
	c2 := s2.cfg
	c2.LogLevel = "error"
	rep, err = s2.Reload(c2)
	if err != nil {
		t.Fatal(err)
	}
	if keys := changeKeys(rep.NeedsRestart); keys != "log_level" || len(rep.Applied) != 0 {
		t.Errorf("without SetLogLevelVar: applied %+v, needs restart %q", rep.Applied, keys)
	}
}

func TestReloadTrustedNetworks(t *testing.T) {
	cfg := reloadBase(t)
	s, _, _ := newReloadServer(t, cfg)
	inOld, inNew := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("192.0.2.7")
	peer := netip.MustParseAddr("203.0.113.9")
	if !s.edge.trusted(inOld) || s.edge.trusted(inNew) || s.proxy.TrustedAddr(peer) {
		t.Fatal("trust before the reload is not the configured one")
	}
	cfg.Security.Trusted = []string{"192.0.2.0/24"}
	cfg.Routing.Trusted = []string{"udp:203.0.113.9"}
	rep, err := s.Reload(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if keys := changeKeys(rep.Applied); keys != "routing.trusted,security.trusted" {
		t.Errorf("applied %q", keys)
	}
	if s.edge.trusted(inOld) || !s.edge.trusted(inNew) {
		t.Error("security.trusted not replaced")
	}
	// The proxy's trusted peers are trusted by the edge too.
	if !s.proxy.TrustedAddr(peer) || !s.edge.trusted(peer) {
		t.Error("routing.trusted not applied")
	}
}

func TestReloadLimits(t *testing.T) {
	cfg := reloadBase(t)
	s, _, _ := newReloadServer(t, cfg)
	if !s.edge.lim.Off() {
		t.Fatal("limits on before the reload")
	}
	cfg.Security.Limits.CallsPerMinute = 10
	rep, err := s.Reload(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if keys := changeKeys(rep.Applied); keys != "security.limits.calls_per_minute" {
		t.Errorf("applied %q", keys)
	}
	if got := s.edge.lim.Config().CallsPerMinute; got != 10 {
		t.Errorf("calls_per_minute in force %d, want 10", got)
	}
	// concurrent_calls counts calls in the accounting; this server has
	// it, so the limit applies.
	cfg.Security.Limits.ConcurrentCalls = 2
	if _, err := s.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if got := s.edge.lim.Config().ConcurrentCalls; got != 2 {
		t.Errorf("concurrent_calls in force %d, want 2", got)
	}
}

// A listener (or any key that cannot change live) is reported and left
// alone; the server keeps its sockets, and the next reload reports it
// again.
func TestReloadNeedsRestart(t *testing.T) {
	cfg := reloadBase(t)
	s, _, out := newReloadServer(t, cfg)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	before := s.Addrs()
	next := cfg
	next.Listen = []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"}
	next.MaxConns = 77
	next.Store = "postgres://hlas:secret@db.test/hlas"
	next.Routing.Rules = []proxy.Rule{{Prefix: "9", Action: proxy.ActionReject, Code: 403}}
	for range 2 {
		rep, err := s.Reload(next)
		if err != nil {
			t.Fatal(err)
		}
		if keys := changeKeys(rep.NeedsRestart); keys != "listen,max_conns,store" {
			t.Errorf("needs restart %q, want listen,max_conns,store", keys)
		}
		for _, c := range rep.NeedsRestart {
			if strings.Contains(c.New, "secret") {
				t.Errorf("the store's password is in the report: %+v", c)
			}
		}
	}
	if got := s.Addrs(); len(got) != len(before) || got[0] != before[0] {
		t.Errorf("listeners %v after the reload, were %v", got, before)
	}
	if got := s.reload.running.MaxConns; got != 10000 {
		t.Errorf("max_conns in force %d, want the default 10000", got)
	}
	if !strings.Contains(out.String(), `level=WARN msg="config change needs a restart" feature=server key=listen`) {
		t.Errorf("no WARN line for listen in:\n%s", out)
	}
	if got := len(s.proxy.Config().Rules); got != 1 {
		t.Errorf("%d rules in force, want the one reloaded", got)
	}
}

// An invalid configuration changes nothing.
func TestReloadInvalidKeepsConfig(t *testing.T) {
	cfg := reloadBase(t)
	cfg.Routing.Rules = []proxy.Rule{{Prefix: "9", Action: proxy.ActionReject, Code: 403}}
	s, lv, out := newReloadServer(t, cfg)
	bad := func(mod func(*Config)) Config {
		c := cfg
		c.Routing.Rules = []proxy.Rule{{Prefix: "8", Action: proxy.ActionReject, Code: 404}}
		c.Security.Trusted = []string{"192.0.2.0/24"}
		c.LogLevel = "debug"
		mod(&c)
		return c
	}
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad rule", bad(func(c *Config) { c.Routing.Rules[0].Code = 200 }), "routing.rules[0].code"},
		{"bad log level", bad(func(c *Config) { c.LogLevel = "loud" }), "log_level"},
		{"bad trusted network", bad(func(c *Config) { c.Security.Trusted = []string{"not-an-ip"} }), "security.trusted"},
		{"bad limit", bad(func(c *Config) { c.Security.Limits.CallsPerMinute = -1 }), "security.limits"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Reload(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Reload = %v, want an error naming %s", err, tc.want)
			}
			if r := s.proxy.Config().Rules; len(r) != 1 || r[0].Prefix != "9" {
				t.Errorf("rules changed: %+v", r)
			}
			if s.edge.trusted(netip.MustParseAddr("192.0.2.7")) {
				t.Error("trusted networks changed")
			}
			if lv.Level() != slog.LevelInfo {
				t.Errorf("log level changed to %v", lv.Level())
			}
		})
	}
	if !strings.Contains(out.String(), `level=ERROR msg="config reload failed, the running configuration is kept"`) {
		t.Errorf("no ERROR line for the failed reload in:\n%s", out)
	}
}

func TestReloadFromSource(t *testing.T) {
	cfg := reloadBase(t)
	s, lv, _ := newReloadServer(t, cfg)
	if _, err := s.ReloadFromSource(); err == nil {
		t.Error("ReloadFromSource without a loader succeeded")
	}
	var next Config
	var loadErr error
	s.SetConfigLoader(func() (Config, error) { return next, loadErr })
	next, loadErr = cfg, errors.New("config hlas.yaml: line 3: field rulez not found")
	if _, err := s.ReloadFromSource(); err == nil || err != loadErr {
		t.Errorf("ReloadFromSource = %v, want the loader's error", err)
	}
	next, loadErr = cfg, nil
	next.LogLevel = "warn"
	rep, err := s.ReloadFromSource()
	if err != nil {
		t.Fatal(err)
	}
	if keys := changeKeys(rep.Applied); keys != "log_level" || lv.Level() != slog.LevelWarn {
		t.Errorf("applied %q, level %v", keys, lv.Level())
	}
}

// Limits set by a reload apply to the next calls, also on a server that
// started without any.
func TestReloadLimitsApplyToCalls(t *testing.T) {
	cfg := reloadBase(t)
	s, _, _ := newReloadServer(t, cfg)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	to := s.addr(t, "UDP", false)
	invite := func() int {
		t.Helper()
		res := udpExchange(t, to, request("INVITE", "sip:900@elsewhere.test", "127.0.0.1:5999", ""), 5*time.Second)
		if res == nil {
			t.Fatal("no answer to the INVITE")
		}
		return res.StatusCode
	}
	for i := range 2 {
		if code := invite(); code != 404 {
			t.Fatalf("INVITE %d before the reload: %d, want 404 (no rule, no limit)", i, code)
		}
	}
	cfg.Security.Limits.SourceCallsPerMinute = 1
	if _, err := s.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if code := invite(); code != 404 {
		t.Fatalf("first INVITE after the reload: %d, want 404", code)
	}
	if code := invite(); code != 403 {
		t.Fatalf("second INVITE in the minute: %d, want 403 from the source limit", code)
	}
}
