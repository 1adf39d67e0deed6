package security

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Defaults of the configuration.
const (
	DefaultPacketRate     = 300
	DefaultPacketBurst    = 600
	DefaultRequestRate    = 100
	DefaultRequestBurst   = 300
	DefaultFloodBanTime   = 10 * time.Minute
	DefaultFloodSources   = 200000
	DefaultProbeUsers     = 10
	DefaultProbeWindow    = time.Minute
	DefaultProbeGrace     = 2 * time.Second
	DefaultRefusals       = 20
	DefaultRefusalWindow  = time.Minute
	DefaultAuthFailures   = 5
	DefaultAuthWindow     = time.Minute
	DefaultAccountFails   = 20
	DefaultAccountWindow  = 5 * time.Minute
	DefaultAccountDelay   = 2 * time.Second
	DefaultDetectBanTime  = time.Hour
	DefaultDetectSources  = 100000
	DefaultDetectAccounts = 50000
	DefaultLimitsTracked  = 100000
)

// maxCount bounds the counts of the "N in T" rules: each keeps the times of
// its last N events.
const maxCount = 10000

// Transports are the transport names the flood guard knows, the keys of
// FloodConfig.PerTransport.
var transports = [...]string{"udp", "tcp", "tls", "ws", "wss"}

// DefaultTrusted is what Config.Trusted means when it is not set: the host
// itself.
func DefaultTrusted() []string { return []string{"127.0.0.0/8", "::1/128"} }

// DefaultUserAgents is what DetectConfig.UserAgents means when it is not
// set: substrings of the User-Agents of known SIP scanners. sipsak and sipp
// are not there: they are tools operators use.
func DefaultUserAgents() []string {
	return []string{
		"friendly-scanner", // sipvicious' default
		"sipvicious",
		"sipcli",
		"vaxsipuseragent",
		"sip-scan",
		"iwar",
		"sivus",
		"gulp",
		"smap",
		"sundayddr",
		"pplsip",
		"siparmyknife",
	}
}

// DefaultRefusalCodes is what DetectConfig.RefusalCodes means when it is
// not set: the answers a scanner walking numbers or extensions collects.
func DefaultRefusalCodes() []int { return []int{403, 404, 484, 485, 604} }

// Config is the `security` section of the server configuration.
type Config struct {
	// Trusted are the addresses (IP or CIDR) never limited, detected or
	// banned. Not set (nil): the host itself, 127.0.0.0/8 and ::1; an
	// explicit empty list trusts nobody.
	Trusted []string `yaml:"trusted"`
	// MaxBans bounds the bans held; beyond it the oldest automatic ban is
	// dropped. Default 100000.
	MaxBans int `yaml:"max_bans"`
	// Flood configures the flood guard.
	Flood FloodConfig `yaml:"flood"`
	// Detect configures the scanner and brute-force detector.
	Detect DetectConfig `yaml:"detect"`
	// Limits configures the call limits against toll fraud.
	Limits LimitsConfig `yaml:"limits"`
}

// WithDefaults returns c with its unset fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Trusted == nil {
		c.Trusted = DefaultTrusted()
	}
	if c.MaxBans == 0 {
		c.MaxBans = DefaultMaxBans
	}
	c.Flood = c.Flood.WithDefaults()
	c.Detect = c.Detect.WithDefaults()
	c.Limits = c.Limits.WithDefaults()
	return c
}

// Validate checks the configuration and names the offending field.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if _, err := c.TrustedPrefixes(); err != nil {
		return err
	}
	if c.MaxBans < 0 {
		return fmt.Errorf("security.max_bans %d: must not be negative", c.MaxBans)
	}
	if err := c.Flood.Validate(); err != nil {
		return err
	}
	if err := c.Detect.Validate(); err != nil {
		return err
	}
	return c.Limits.Validate()
}

// TrustedPrefixes parses Trusted (DefaultTrusted when nil): an address
// stands for itself alone.
func (c Config) TrustedPrefixes() ([]netip.Prefix, error) {
	list := c.Trusted
	if list == nil {
		list = DefaultTrusted()
	}
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		p, err := parsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("security.trusted %q: want an IP address or CIDR prefix", s)
		}
		out = append(out, p)
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, err
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, err
		}
		a = a.WithZone("")
		p = netip.PrefixFrom(a, a.BitLen())
	}
	q, _, _, ok := normPrefix(p)
	if !ok {
		return q, errors.New("bad prefix")
	}
	return q, nil
}

// TrustFunc returns a test of membership in prefixes, for NewGuard and
// NewDetector (IPv4-mapped addresses count as IPv4).
func TrustFunc(prefixes []netip.Prefix) func(netip.Addr) bool {
	ps := slices.Clone(prefixes)
	return func(ip netip.Addr) bool {
		ip = ip.Unmap().WithZone("")
		for _, p := range ps {
			if p.Contains(ip) {
				return true
			}
		}
		return false
	}
}

// on reads an Enabled switch: unset means on.
func on(b *bool) bool { return b == nil || *b }

// Limit is a token bucket: Rate tokens a second, at most Burst held.
type Limit struct {
	// Rate is the sustained rate, per second.
	Rate float64 `yaml:"rate"`
	// Burst is the size of the bucket: how many may come at once after a
	// quiet spell.
	Burst int `yaml:"burst"`
}

func (l Limit) or(d Limit) Limit {
	if l.Rate == 0 {
		l.Rate = d.Rate
	}
	if l.Burst == 0 {
		l.Burst = d.Burst
	}
	return l
}

func (l Limit) validate(field string) error {
	if !(l.Rate > 0 && l.Rate <= 1e9) {
		return fmt.Errorf("%s.rate %g: want more than 0 (and at most 1e9)", field, l.Rate)
	}
	if l.Burst < 1 || l.Burst > 1e9 {
		return fmt.Errorf("%s.burst %d: want 1..1000000000", field, l.Burst)
	}
	return nil
}

// FloodLimits are the two buckets of a source on one transport.
type FloodLimits struct {
	// Packets counts every datagram or stream message.
	Packets Limit `yaml:"packets"`
	// Requests counts SIP requests: every one the transport delivers,
	// retransmissions, ACKs and requests inside dialogs included.
	Requests Limit `yaml:"requests"`
}

// FloodConfig is the `security.flood` section: per-source token buckets
// checked before parsing (packets) and after (requests). A source over
// either is banned for BanTime.
type FloodConfig struct {
	// Enabled turns the buckets on; default true. Off, bans (from the
	// detector or an operator) are still enforced.
	Enabled *bool `yaml:"enabled"`
	// Packets limits all datagrams and stream messages of one source (an
	// IPv4 address or an IPv6 /64) on one transport. Default rate 300,
	// burst 600.
	Packets Limit `yaml:"packets"`
	// Requests limits the SIP requests of one source on one transport
	// (every one received, retransmissions and ACKs included).
	// Default rate 100, burst 300.
	Requests Limit `yaml:"requests"`
	// PerTransport overrides Packets and Requests for one transport (udp,
	// tcp, tls, ws, wss); a zero rate or burst there takes the general
	// value.
	PerTransport map[string]FloodLimits `yaml:"per_transport"`
	// BanTime is how long a source over its limit is banned. Default 10m.
	BanTime time.Duration `yaml:"ban_time"`
	// MaxSources bounds the sources tracked (idle ones are forgotten);
	// beyond it new sources pass untracked and are counted. Default 200000.
	MaxSources int `yaml:"max_sources"`
}

// WithDefaults returns c with its unset fields set to their defaults.
func (c FloodConfig) WithDefaults() FloodConfig {
	c.Packets = c.Packets.or(Limit{DefaultPacketRate, DefaultPacketBurst})
	c.Requests = c.Requests.or(Limit{DefaultRequestRate, DefaultRequestBurst})
	if c.PerTransport != nil {
		m := make(map[string]FloodLimits, len(c.PerTransport))
		for k, v := range c.PerTransport {
			m[strings.ToLower(k)] = FloodLimits{v.Packets.or(c.Packets), v.Requests.or(c.Requests)}
		}
		c.PerTransport = m
	}
	if c.BanTime == 0 {
		c.BanTime = DefaultFloodBanTime
	}
	if c.MaxSources == 0 {
		c.MaxSources = DefaultFloodSources
	}
	return c
}

// Validate checks the section (defaults applied) and names the offending
// field.
func (c FloodConfig) Validate() error {
	c = c.WithDefaults()
	if err := c.Packets.validate("security.flood.packets"); err != nil {
		return err
	}
	if err := c.Requests.validate("security.flood.requests"); err != nil {
		return err
	}
	keys := make([]string, 0, len(c.PerTransport))
	for k := range c.PerTransport {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(transports[:], k) {
			return fmt.Errorf("security.flood.per_transport %q: want udp, tcp, tls, ws or wss", k)
		}
		v := c.PerTransport[k]
		if err := v.Packets.validate("security.flood.per_transport." + k + ".packets"); err != nil {
			return err
		}
		if err := v.Requests.validate("security.flood.per_transport." + k + ".requests"); err != nil {
			return err
		}
	}
	if c.BanTime < time.Second {
		return fmt.Errorf("security.flood.ban_time %s: want at least 1s", c.BanTime)
	}
	if c.MaxSources < 1 {
		return fmt.Errorf("security.flood.max_sources %d: want at least 1", c.MaxSources)
	}
	return nil
}

// DetectConfig is the `security.detect` section: scanners and password
// guessing. Each "N in T" rule counts events of one source (an IPv4
// address or an IPv6 /64); a count of -1 turns that rule off.
type DetectConfig struct {
	// Enabled turns detection on; default true.
	Enabled *bool `yaml:"enabled"`
	// UserAgents are case-insensitive substrings of User-Agent headers
	// that ban a source at the first request. Not set (nil):
	// DefaultUserAgents; an explicit empty list: none.
	UserAgents []string `yaml:"user_agents"`
	// ProbeUsers distinct users challenged from one source and not
	// answered with credentials within ProbeGrace, within ProbeWindow, ban
	// it (extension scanning, svwar). Defaults 10, 1m.
	ProbeUsers  int           `yaml:"probe_users"`
	ProbeWindow time.Duration `yaml:"probe_window"`
	// ProbeGrace is how long a challenged user has to come back with
	// credentials before it counts as probed: phones answer a challenge at
	// once, so an office of phones behind one NAT is not a scanner.
	// Default 2s.
	ProbeGrace time.Duration `yaml:"probe_grace"`
	// Refusals answers with one of RefusalCodes to one source within
	// RefusalWindow ban it (number scanning). A successful authentication
	// from the source starts the count again: a PBX whose calls a carrier
	// refuses is not a scanner. Defaults 20, 1m.
	Refusals      int           `yaml:"refusals"`
	RefusalWindow time.Duration `yaml:"refusal_window"`
	// RefusalCodes are the status codes Refusals counts. Default 403, 404,
	// 484, 485, 604.
	RefusalCodes []int `yaml:"refusal_codes"`
	// AuthFailures wrong credentials from one source within AuthWindow ban
	// it (password guessing, svcrack). A success from the source starts
	// the count again, so one misconfigured phone among working ones
	// behind a NAT does not ban the office. Defaults 5, 1m.
	AuthFailures int           `yaml:"auth_failures"`
	AuthWindow   time.Duration `yaml:"auth_window"`
	// AccountFailures wrong credentials for one account, from any sources,
	// within AccountWindow slow that account's challenges by AccountDelay
	// until AccountWindow has passed since the last of them. Nobody is
	// locked out: the owner still gets in, a little later. Defaults 20,
	// 5m, 2s.
	AccountFailures int           `yaml:"account_failures"`
	AccountWindow   time.Duration `yaml:"account_window"`
	AccountDelay    time.Duration `yaml:"account_delay"`
	// BanTime is how long a detected source is banned. Default 1h.
	BanTime time.Duration `yaml:"ban_time"`
	// MaxSources bounds the sources tracked; beyond it the idle, then
	// arbitrary ones are forgotten. Default 100000.
	MaxSources int `yaml:"max_sources"`
	// MaxAccounts bounds the accounts tracked for AccountFailures.
	// Default 50000.
	MaxAccounts int `yaml:"max_accounts"`
}

// WithDefaults returns c with its unset fields set to their defaults.
func (c DetectConfig) WithDefaults() DetectConfig {
	if c.UserAgents == nil {
		c.UserAgents = DefaultUserAgents()
	}
	if c.RefusalCodes == nil {
		c.RefusalCodes = DefaultRefusalCodes()
	}
	setInt(&c.ProbeUsers, DefaultProbeUsers)
	setDur(&c.ProbeWindow, DefaultProbeWindow)
	setDur(&c.ProbeGrace, DefaultProbeGrace)
	setInt(&c.Refusals, DefaultRefusals)
	setDur(&c.RefusalWindow, DefaultRefusalWindow)
	setInt(&c.AuthFailures, DefaultAuthFailures)
	setDur(&c.AuthWindow, DefaultAuthWindow)
	setInt(&c.AccountFailures, DefaultAccountFails)
	setDur(&c.AccountWindow, DefaultAccountWindow)
	setDur(&c.AccountDelay, DefaultAccountDelay)
	setDur(&c.BanTime, DefaultDetectBanTime)
	setInt(&c.MaxSources, DefaultDetectSources)
	setInt(&c.MaxAccounts, DefaultDetectAccounts)
	return c
}

func setInt(p *int, d int) {
	if *p == 0 {
		*p = d
	}
}

func setDur(p *time.Duration, d time.Duration) {
	if *p == 0 {
		*p = d
	}
}

// Validate checks the section (defaults applied) and names the offending
// field.
func (c DetectConfig) Validate() error {
	c = c.WithDefaults()
	for i, ua := range c.UserAgents {
		if strings.TrimSpace(ua) == "" {
			return fmt.Errorf("security.detect.user_agents[%d]: empty", i)
		}
	}
	for _, code := range c.RefusalCodes {
		if code < 300 || code > 699 {
			return fmt.Errorf("security.detect.refusal_codes %d: want a final non-2xx status code", code)
		}
	}
	rules := []struct {
		name   string
		n      int
		window time.Duration
	}{
		{"probe_users", c.ProbeUsers, c.ProbeWindow},
		{"refusals", c.Refusals, c.RefusalWindow},
		{"auth_failures", c.AuthFailures, c.AuthWindow},
		{"account_failures", c.AccountFailures, c.AccountWindow},
	}
	for _, r := range rules {
		if r.n < -1 || r.n > maxCount {
			return fmt.Errorf("security.detect.%s %d: want 1..%d, or -1 for off", r.name, r.n, maxCount)
		}
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{
		{"probe_window", c.ProbeWindow}, {"refusal_window", c.RefusalWindow},
		{"auth_window", c.AuthWindow}, {"account_window", c.AccountWindow},
		{"ban_time", c.BanTime},
	} {
		if d.d < time.Second {
			return fmt.Errorf("security.detect.%s %s: want at least 1s", d.name, d.d)
		}
	}
	if c.ProbeGrace < 0 || c.ProbeGrace >= c.ProbeWindow {
		return fmt.Errorf("security.detect.probe_grace %s: want 0 up to probe_window (%s)", c.ProbeGrace, c.ProbeWindow)
	}
	if c.AccountDelay < 0 || c.AccountDelay > time.Minute {
		return fmt.Errorf("security.detect.account_delay %s: want 0..1m", c.AccountDelay)
	}
	if c.MaxSources < 1 {
		return fmt.Errorf("security.detect.max_sources %d: want at least 1", c.MaxSources)
	}
	if c.MaxAccounts < 1 {
		return fmt.Errorf("security.detect.max_accounts %d: want at least 1", c.MaxAccounts)
	}
	return nil
}

// CostlyRule limits the calls of each user to numbers that start with one
// of Prefixes.
type CostlyRule struct {
	// Prefixes are dialled-number prefixes: an optional leading '+' and
	// digits ("+1900", "00", "0900"). Visual separators in dialled numbers
	// (-.() and spaces) are ignored; "+44" does not match "0044".
	Prefixes []string `yaml:"prefixes"`
	// PerHour is how many such calls a user may make in any hour; 0 bars
	// them.
	PerHour int `yaml:"per_hour"`
}

// LimitsConfig is the `security.limits` section, against toll fraud. All
// limits are off by default (0 means unlimited). The server applies them to
// new calls (initial INVITEs) of its users, not to trusted peers.
type LimitsConfig struct {
	// ConcurrentCalls is the most calls one user may have up at once;
	// beyond it 486. Default 0: unlimited.
	ConcurrentCalls int `yaml:"concurrent_calls"`
	// CallsPerMinute is the most calls one user may start in any minute;
	// beyond it 403. Default 0: unlimited.
	CallsPerMinute int `yaml:"calls_per_minute"`
	// SourceCallsPerMinute is the most unauthenticated calls one source
	// (an IPv4 address or IPv6 /64) may start in any minute; beyond it
	// 403. Authenticated calls are counted per user instead, so offices
	// behind one NAT are not throttled together. Default 0: unlimited.
	SourceCallsPerMinute int `yaml:"source_calls_per_minute"`
	// Costly limits calls to expensive destinations, per user (per source
	// for unauthenticated calls); beyond a limit 403.
	Costly []CostlyRule `yaml:"costly"`
	// MaxTracked bounds the users and sources whose calls are counted.
	// Default 100000.
	MaxTracked int `yaml:"max_tracked"`
}

// WithDefaults returns c with its unset fields set to their defaults.
func (c LimitsConfig) WithDefaults() LimitsConfig {
	setInt(&c.MaxTracked, DefaultLimitsTracked)
	return c
}

// Validate checks the section (defaults applied) and names the offending
// field.
func (c LimitsConfig) Validate() error {
	c = c.WithDefaults()
	switch {
	case c.ConcurrentCalls < 0:
		return fmt.Errorf("security.limits.concurrent_calls %d: must not be negative", c.ConcurrentCalls)
	case c.CallsPerMinute < 0 || c.CallsPerMinute > maxCount:
		return fmt.Errorf("security.limits.calls_per_minute %d: want 0..%d", c.CallsPerMinute, maxCount)
	case c.SourceCallsPerMinute < 0 || c.SourceCallsPerMinute > maxCount:
		return fmt.Errorf("security.limits.source_calls_per_minute %d: want 0..%d", c.SourceCallsPerMinute, maxCount)
	case c.MaxTracked < 1:
		return fmt.Errorf("security.limits.max_tracked %d: want at least 1", c.MaxTracked)
	case len(c.Costly) > maxCostlyRules:
		return fmt.Errorf("security.limits.costly: at most %d rules", maxCostlyRules)
	}
	for i, r := range c.Costly {
		if r.PerHour < 0 || r.PerHour > maxCount {
			return fmt.Errorf("security.limits.costly[%d].per_hour %d: want 0..%d", i, r.PerHour, maxCount)
		}
		if len(r.Prefixes) == 0 {
			return fmt.Errorf("security.limits.costly[%d].prefixes: empty", i)
		}
		for _, p := range r.Prefixes {
			if _, ok := normNumber(p); !ok {
				return fmt.Errorf("security.limits.costly[%d].prefixes %q: want '+' or digits followed by digits", i, p)
			}
		}
	}
	return nil
}
