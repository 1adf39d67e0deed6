package resolve

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultResolvConf    = "/etc/resolv.conf" // Config.ResolvConf
	DefaultHostsFile     = "/etc/hosts"       // Config.HostsFile
	DefaultTimeout       = 2 * time.Second    // Config.Timeout
	DefaultAttempts      = 2                  // Config.Attempts
	DefaultCacheSize     = 4096               // Config.CacheSize
	DefaultBlocklistSize = 256                // Config.BlocklistSize
	DefaultBlocklistFor  = 5 * time.Minute    // Config.BlocklistFor
	DefaultDeadServerFor = 30 * time.Second   // Config.DeadServerFor
	DefaultENUMSuffix    = "e164.arpa."       // Config.ENUMSuffixes: the ENUM tree of RFC 6116 §3.2
)

// HostsNone as Config.HostsFile reads no hosts file.
const HostsNone = "none"

// Bounds on how long an answer is cached, whatever its TTL says. RFC 2308 §5
// recommends capping negative answers at one to three hours.
const (
	maxPositiveTTL = 24 * time.Hour
	maxNegativeTTL = 3 * time.Hour
)

// Clock is the source of time of a Resolver: TTL and blocklist expiry are
// measured with it. transaction.RealClock and transaction.FakeClock satisfy
// it.
type Clock interface {
	Now() time.Time
}

// Rand is the random source of the weighted SRV selection of RFC 2782. A
// *rand.Rand of math/rand/v2 satisfies it; the Resolver serialises its calls,
// so it need not be safe for concurrent use.
type Rand interface {
	// IntN returns a number in [0, n).
	IntN(n int) int
}

// Config configures a Resolver. The zero value of every field means its
// documented default; a YAML file maps onto it with the tags shown.
type Config struct {
	// Servers are the DNS servers asked, as host:port (port 53 when
	// omitted), in order. Default: the nameservers of ResolvConf.
	Servers []string `yaml:"servers"`
	// ResolvConf is the file read for servers when Servers is empty.
	// Default /etc/resolv.conf; when it cannot be read, 127.0.0.1:53 and
	// [::1]:53 are used, as Go's own resolver does.
	ResolvConf string `yaml:"resolv_conf"`
	// HostsFile answers A and AAAA lookups of the names it lists before
	// the DNS is asked (hosts(5), re-read when it changes). Default
	// /etc/hosts; "none" reads none.
	HostsFile string `yaml:"hosts_file"`
	// Timeout bounds one query to one server. Default 2s.
	Timeout time.Duration `yaml:"timeout"`
	// Attempts is how many rounds over Servers a query makes before it
	// fails. Default 2.
	Attempts int `yaml:"attempts"`
	// DeadServerFor is how long a server that failed three exchanges in a
	// row (timeouts, network errors) is passed by before one query probes
	// it again (RFC 2308 §7.2, at most 5m): during a DNS outage lookups
	// fail at once instead of each waiting Timeout × Attempts. Default
	// 30s; negative never deems a server dead.
	DeadServerFor time.Duration `yaml:"dead_server_for"`
	// CacheSize bounds the cached answers (one per name and type), least
	// recently used evicted first. Default 4096; negative disables the
	// cache.
	CacheSize int `yaml:"cache_size"`
	// BlocklistSize bounds the targets remembered as failed (RFC 3263
	// §4.3), least recently used evicted first. Default 256; negative
	// disables the blocklist.
	BlocklistSize int `yaml:"blocklist_size"`
	// BlocklistFor is how long a failed target is avoided. Default 5m.
	BlocklistFor time.Duration `yaml:"blocklist_for"`
	// ENUMSuffixes are the ENUM trees tried in order (RFC 6116 §3.2).
	// Default ["e164.arpa."].
	ENUMSuffixes []string `yaml:"enum_suffixes"`
	// Transports are the transports targets may use, of UDP, TCP, TLS, WS
	// and WSS (any case); NAPTR and SRV records for others are skipped
	// (RFC 3263 §4.1). Default all five: a server should list the ones it
	// has listeners for.
	Transports []string `yaml:"transports"`
	// Rand orders SRV records of equal priority (RFC 2782). Default
	// math/rand/v2's top-level functions.
	Rand Rand `yaml:"-"`
	// Clock measures TTLs and blocklist expiry. Default the wall clock.
	Clock Clock `yaml:"-"`
}

// wallClock is the default Clock.
type wallClock struct{}

// Now returns time.Now().
func (wallClock) Now() time.Time { return time.Now() }

// globalRand is the default Rand: math/rand/v2's top-level source.
type globalRand struct{}

// IntN returns rand.IntN(n).
func (globalRand) IntN(n int) int { return rand.IntN(n) }

// withDefaults returns c with its zero fields set to their defaults and the
// server list read from ResolvConf when empty.
func (c Config) withDefaults() (Config, error) {
	if c.ResolvConf == "" {
		c.ResolvConf = DefaultResolvConf
	}
	if c.HostsFile == "" {
		c.HostsFile = DefaultHostsFile
	}
	if len(c.Servers) == 0 {
		cc, err := dns.ClientConfigFromFile(c.ResolvConf)
		if err == nil && len(cc.Servers) > 0 {
			for _, s := range cc.Servers {
				c.Servers = append(c.Servers, net.JoinHostPort(s, cc.Port))
			}
		} else {
			c.Servers = []string{"127.0.0.1:53", "[::1]:53"}
		}
	} else {
		servers := make([]string, len(c.Servers))
		for i, s := range c.Servers {
			servers[i] = withPort(s)
		}
		c.Servers = servers
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Attempts == 0 {
		c.Attempts = DefaultAttempts
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.BlocklistSize == 0 {
		c.BlocklistSize = DefaultBlocklistSize
	}
	if c.BlocklistFor == 0 {
		c.BlocklistFor = DefaultBlocklistFor
	}
	if c.DeadServerFor == 0 {
		c.DeadServerFor = DefaultDeadServerFor
	}
	if len(c.ENUMSuffixes) == 0 {
		c.ENUMSuffixes = []string{DefaultENUMSuffix}
	} else {
		sfx := make([]string, len(c.ENUMSuffixes))
		for i, s := range c.ENUMSuffixes {
			sfx[i] = dns.Fqdn(strings.ToLower(strings.Trim(s, ".")))
		}
		c.ENUMSuffixes = sfx
	}
	if len(c.Transports) == 0 {
		c.Transports = []string{UDP, TCP, TLS, WS, WSS}
	}
	if c.Rand == nil {
		c.Rand = globalRand{}
	}
	if c.Clock == nil {
		c.Clock = wallClock{}
	}
	return c, c.validate()
}

// withPort appends :53 to a server given without a port.
func withPort(s string) string {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s
	}
	return net.JoinHostPort(strings.Trim(s, "[]"), "53")
}

// validate checks a configuration with its defaults applied and names the
// offending field.
func (c Config) validate() error {
	for _, s := range c.Servers {
		host, port, err := net.SplitHostPort(s)
		n, perr := strconv.Atoi(port)
		if err != nil || host == "" || perr != nil || n < 1 || n > 65535 || strings.ContainsAny(host, " /") {
			return fmt.Errorf("resolve: config servers %q: want host:port", s)
		}
	}
	if c.Timeout < 0 {
		return fmt.Errorf("resolve: config timeout %v: must be positive", c.Timeout)
	}
	if c.Attempts < 0 {
		return fmt.Errorf("resolve: config attempts %d: must be positive", c.Attempts)
	}
	if c.BlocklistFor < 0 {
		return fmt.Errorf("resolve: config blocklist_for %v: must be positive", c.BlocklistFor)
	}
	if c.DeadServerFor > maxDeadServerFor {
		return fmt.Errorf("resolve: config dead_server_for %v: at most %v (RFC 2308 §7.2)", c.DeadServerFor, maxDeadServerFor)
	}
	for _, s := range c.ENUMSuffixes {
		if _, ok := dns.IsDomainName(s); !ok || s == "." {
			return fmt.Errorf("resolve: config enum_suffixes %q: not a domain name", s)
		}
	}
	for _, t := range c.Transports {
		if normalizeTransport(t) == "" {
			return fmt.Errorf("resolve: config transports %q: want udp, tcp, tls, ws or wss", t)
		}
	}
	return nil
}

// Validate checks the configuration as New would, defaults applied, and
// names the offending field.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}
