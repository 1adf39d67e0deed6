package security

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestConfigYAML(t *testing.T) {
	const doc = `
trusted: [10.0.0.0/8, 192.0.2.1, "2001:db8::/32"]
max_bans: 5000
flood:
  packets: {rate: 500, burst: 1000}
  per_transport:
    udp: {requests: {rate: 50}}
  ban_time: 5m
detect:
  user_agents: [evil]
  probe_users: 15
  probe_grace: 3s
  auth_failures: -1
  account_delay: 1s
limits:
  calls_per_minute: 10
  costly:
    - prefixes: ["+1900", "00"]
      per_hour: 3
`
	var c Config
	if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c = c.WithDefaults()
	if c.MaxBans != 5000 || c.Flood.Packets != (Limit{500, 1000}) || c.Flood.Requests != (Limit{DefaultRequestRate, DefaultRequestBurst}) || c.Flood.BanTime != 5*time.Minute {
		t.Fatalf("flood = %+v", c.Flood)
	}
	// A per-transport limit takes what it does not say from the general one.
	if got := c.Flood.PerTransport["udp"]; got.Requests != (Limit{50, DefaultRequestBurst}) || got.Packets != (Limit{500, 1000}) {
		t.Fatalf("udp = %+v", got)
	}
	d := c.Detect
	if !slices.Equal(d.UserAgents, []string{"evil"}) || d.ProbeUsers != 15 || d.ProbeGrace != 3*time.Second || d.AuthFailures != -1 ||
		d.AccountDelay != time.Second || d.ProbeWindow != DefaultProbeWindow || d.BanTime != DefaultDetectBanTime {
		t.Fatalf("detect = %+v", d)
	}
	if c.Limits.CallsPerMinute != 10 || len(c.Limits.Costly) != 1 || c.Limits.Costly[0].PerHour != 3 {
		t.Fatalf("limits = %+v", c.Limits)
	}
	ps, err := c.TrustedPrefixes()
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{prefix("10.0.0.0/8"), prefix("192.0.2.1/32"), prefix("2001:db8::/32")}
	if !slices.Equal(ps, want) {
		t.Fatalf("trusted = %v, want %v", ps, want)
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.WithDefaults()
	if !slices.Equal(c.Trusted, DefaultTrusted()) || c.MaxBans != DefaultMaxBans {
		t.Fatalf("%+v", c)
	}
	if c.Flood.Packets != (Limit{300, 600}) || c.Flood.Requests != (Limit{100, 300}) || c.Flood.BanTime != 10*time.Minute || c.Flood.MaxSources != 200000 {
		t.Fatalf("flood = %+v", c.Flood)
	}
	d := c.Detect
	if d.ProbeUsers != 10 || d.ProbeWindow != time.Minute || d.ProbeGrace != 2*time.Second || d.Refusals != 20 || d.AuthFailures != 5 ||
		d.AuthWindow != time.Minute || d.AccountFailures != 20 || d.AccountWindow != 5*time.Minute || d.AccountDelay != 2*time.Second ||
		d.BanTime != time.Hour || !slices.Equal(d.UserAgents, DefaultUserAgents()) {
		t.Fatalf("detect = %+v", d)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, ua := range DefaultUserAgents() {
		if strings.Contains(ua, "sipsak") || strings.Contains(ua, "sipp") {
			t.Errorf("default user agents list a tool: %q", ua)
		}
	}
}

func TestConfigTrusted(t *testing.T) {
	// Not set: the host itself. Set empty: nobody.
	ps, err := Config{}.TrustedPrefixes()
	if err != nil || !slices.Equal(ps, []netip.Prefix{prefix("127.0.0.0/8"), prefix("::1/128")}) {
		t.Fatalf("nil: %v %v", ps, err)
	}
	var c Config
	if err := yaml.Unmarshal([]byte("trusted: []"), &c); err != nil {
		t.Fatal(err)
	}
	if ps, err := c.TrustedPrefixes(); err != nil || len(ps) != 0 {
		t.Fatalf("empty: %v %v", ps, err)
	}
	if c.WithDefaults().Trusted == nil || len(c.WithDefaults().Trusted) != 0 {
		t.Fatal("WithDefaults filled an explicit empty list")
	}
	// Normalised: host bits masked, mapped IPv4 as IPv4, zones dropped.
	c = Config{Trusted: []string{"10.1.2.3/8", "::ffff:192.0.2.0/120", " fe80::1%eth0 "}}
	ps, err = c.TrustedPrefixes()
	if err != nil || !slices.Equal(ps, []netip.Prefix{prefix("10.0.0.0/8"), prefix("192.0.2.0/24"), prefix("fe80::1/128")}) {
		t.Fatalf("%v %v", ps, err)
	}
	trust := TrustFunc(ps)
	for _, tc := range []struct {
		ip   string
		want bool
	}{{"10.9.9.9", true}, {"::ffff:10.9.9.9", true}, {"192.0.2.99", true}, {"fe80::1%eth1", true}, {"11.0.0.1", false}, {"fe80::2", false}} {
		if trust(addr(tc.ip)) != tc.want {
			t.Errorf("trust(%s) = %v", tc.ip, !tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
		want string
	}{
		{"trusted", Config{Trusted: []string{"10.0.0.0/33"}}, "security.trusted"},
		{"trusted word", Config{Trusted: []string{"localhost"}}, "security.trusted"},
		{"max bans", Config{MaxBans: -1}, "security.max_bans"},
		{"packet rate", Config{Flood: FloodConfig{Packets: Limit{Rate: -5}}}, "security.flood.packets.rate"},
		{"request burst", Config{Flood: FloodConfig{Requests: Limit{Burst: -1}}}, "security.flood.requests.burst"},
		{"transport", Config{Flood: FloodConfig{PerTransport: map[string]FloodLimits{"sctp": {}}}}, "security.flood.per_transport \"sctp\""},
		{"transport rate", Config{Flood: FloodConfig{PerTransport: map[string]FloodLimits{"tls": {Packets: Limit{Rate: -1}}}}}, "security.flood.per_transport.tls.packets.rate"},
		{"flood ban", Config{Flood: FloodConfig{BanTime: time.Millisecond}}, "security.flood.ban_time"},
		{"flood sources", Config{Flood: FloodConfig{MaxSources: -1}}, "security.flood.max_sources"},
		{"ua", Config{Detect: DetectConfig{UserAgents: []string{"x", " "}}}, "security.detect.user_agents[1]"},
		{"probe users", Config{Detect: DetectConfig{ProbeUsers: -2}}, "security.detect.probe_users"},
		{"refusals", Config{Detect: DetectConfig{Refusals: maxCount + 1}}, "security.detect.refusals"},
		{"refusal code", Config{Detect: DetectConfig{RefusalCodes: []int{200}}}, "security.detect.refusal_codes"},
		{"grace", Config{Detect: DetectConfig{ProbeGrace: 2 * time.Minute}}, "security.detect.probe_grace"},
		{"auth window", Config{Detect: DetectConfig{AuthWindow: -time.Second}}, "security.detect.auth_window"},
		{"account delay", Config{Detect: DetectConfig{AccountDelay: time.Hour}}, "security.detect.account_delay"},
		{"detect sources", Config{Detect: DetectConfig{MaxSources: -1}}, "security.detect.max_sources"},
		{"concurrent", Config{Limits: LimitsConfig{ConcurrentCalls: -1}}, "security.limits.concurrent_calls"},
		{"per minute", Config{Limits: LimitsConfig{CallsPerMinute: -1}}, "security.limits.calls_per_minute"},
		{"costly prefix", Config{Limits: LimitsConfig{Costly: []CostlyRule{{Prefixes: []string{"+1900", "19x"}}}}}, "security.limits.costly[0].prefixes \"19x\""},
		{"costly empty", Config{Limits: LimitsConfig{Costly: []CostlyRule{{PerHour: 1}}}}, "security.limits.costly[0].prefixes"},
		{"costly per hour", Config{Limits: LimitsConfig{Costly: []CostlyRule{{Prefixes: []string{"00"}, PerHour: -1}}}}, "security.limits.costly[0].per_hour"},
		{"costly plus", Config{Limits: LimitsConfig{Costly: []CostlyRule{{Prefixes: []string{"+"}}}}}, "security.limits.costly[0].prefixes"},
		// Found by `hlas config check` before `hlas serve` refuses it.
		{"too many costly rules", Config{Limits: LimitsConfig{Costly: manyCostly(maxCostlyRules + 1)}}, "security.limits.costly: at most 64"},
	} {
		err := tc.c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one naming %s", tc.name, err, tc.want)
		}
	}
}

func FuzzTrusted(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "::1", "fe80::1%eth0", "::ffff:1.2.3.4/100", "1.2.3.4/0", "/", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := Config{Trusted: []string{s}}.TrustedPrefixes()
		if err != nil {
			return
		}
		p := ps[0]
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			t.Fatalf("%q gave %v", s, p)
		}
		// What it trusts, it trusts in either form.
		if !TrustFunc(ps)(p.Addr()) {
			t.Fatalf("%q: %v does not trust its own address", s, p)
		}
	})
}

func FuzzUserAgent(f *testing.F) {
	for _, s := range []string{"friendly-scanner", "FRIENDLY-SCANNER", "Linphone", "xsipclix", "sm", "\xff\x00"} {
		f.Add(s)
	}
	m := newUAMatcher(DefaultUserAgents())
	f.Fuzz(func(t *testing.T, s string) {
		want := false
		ls := []byte(s)
		for i := range ls {
			ls[i] = lowerByte(ls[i])
		}
		for _, p := range m.pats {
			if strings.Contains(string(ls), p) {
				want = true
			}
		}
		i := m.match(s)
		if (i >= 0) != want {
			t.Fatalf("match(%q) = %d, want found=%v", s, i, want)
		}
		if i >= 0 && !strings.Contains(string(ls), m.pats[i]) {
			t.Fatalf("match(%q) = %q, not in it", s, m.pats[i])
		}
	})
}

// manyCostly returns n valid costly-destination rules.
func manyCostly(n int) []CostlyRule {
	out := make([]CostlyRule, n)
	for i := range out {
		out[i] = CostlyRule{Prefixes: []string{"+" + strconv.Itoa(100+i)}, PerHour: 1}
	}
	return out
}
