package server

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hlas-voip/hlas/acc"
	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/registrar"
	"github.com/hlas-voip/hlas/security"
	"github.com/hlas-voip/hlas/sip/resolve"
	"github.com/hlas-voip/hlas/sip/transport"
)

// Config is the server's configuration. The YAML file given by --config maps
// onto it one to one (field names in lower case with underscores, as in the
// yaml tags); command-line flags override the file. The zero value of every
// field means its documented default.
type Config struct {
	// Listen lists the listeners as proto:host:port, proto one of udp, tcp,
	// tls, ws, wss (SIP over WebSocket, RFC 7118, for browser phones); IPv6
	// hosts in brackets ("udp:[::1]:5060").
	// Default: udp:0.0.0.0:5060 and tcp:0.0.0.0:5060.
	Listen []string `yaml:"listen"`
	// Domains are the SIP domains this server is responsible for. Requests
	// for them, and for the server's own addresses, are handled locally.
	Domains []string `yaml:"domain"`
	// DataDir is where the server keeps its state. Default ./hlas-data.
	DataDir string `yaml:"data"`
	// TLSCert and TLSKey are PEM files for tls and wss listeners.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`
	// MetricsListen is host:port for the Prometheus /metrics endpoint;
	// empty disables it.
	MetricsListen string `yaml:"metrics_listen"`
	// Debug holds switches for diagnosing a running server.
	Debug Debug `yaml:"debug"`
	// Runtime tunes the Go garbage collector: gc_percent, memory_limit.
	// Unset by default; see Runtime.
	Runtime Runtime `yaml:"runtime"`

	// MaxMessageSize bounds a message on any transport; larger requests get
	// 513 where a reply is possible. Default 65536.
	MaxMessageSize int `yaml:"max_message_size"`
	// IdleTimeout closes stream connections without traffic. Default 5m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MessageTimeout bounds the time a message may take to arrive on a
	// stream connection, from its first byte to its last; a connection
	// dribbling one (slowloris) is closed. Default 30s.
	MessageTimeout time.Duration `yaml:"message_timeout"`
	// MaxConnsPerSource bounds stream connections from one IP. Default 64.
	MaxConnsPerSource int `yaml:"max_conns_per_source"`
	// MaxConns bounds all stream connections. Default 10000.
	MaxConns int `yaml:"max_conns"`
	// Workers is the number of goroutines processing messages. Default
	// 4 per CPU.
	Workers int `yaml:"workers"`
	// QueueSize bounds messages waiting for a worker (split evenly among
	// the workers); beyond it requests get 503 with Retry-After. Default
	// 4096. MaxQueueDelay, not this bound, keeps the wait short: a request
	// that waited too long is refused cheaply when its turn comes.
	QueueSize int `yaml:"queue_size"`
	// MaxQueueDelay bounds how long a new request may wait for a worker:
	// one that waited longer is answered 503 with Retry-After, statelessly,
	// instead of being processed, so that under overload the excess is
	// refused within milliseconds and the requests accepted are answered
	// promptly. ACK, CANCEL, BYE, in-dialog requests (a To tag) and
	// responses are processed however late: they end or belong to what
	// was already accepted. Retransmissions of requests whose transaction
	// exists are absorbed as usual. Default 40ms; a large value (1h)
	// turns shedding off.
	MaxQueueDelay time.Duration `yaml:"max_queue_delay"`
	// MaxTransactions bounds the server transactions alive at once (each
	// waits up to 32 s after its final response to absorb retransmissions,
	// about 1 KiB apiece); beyond it new requests get 503 with Retry-After.
	// Default 1000000.
	MaxTransactions int `yaml:"max_transactions"`
	// ForceRPort sends every UDP response to the source port, as if the
	// request had carried rport (RFC 3581) — for clients behind NAT that
	// forget it. Off by default: RFC 3261 §18.2.2 sends to the sent-by port.
	ForceRPort bool `yaml:"force_rport"`
	// T1, T2 and T4 are the transaction timers of RFC 3261 §17.1.1.1.
	// Defaults 500ms, 4s and 5s.
	T1 time.Duration `yaml:"t1"`
	T2 time.Duration `yaml:"t2"`
	T4 time.Duration `yaml:"t4"`
	// ServerName is the Server header value. Default "hlas/<version>".
	ServerName string `yaml:"server_name"`
	// Routing is the proxy's configuration: mode (stateful, stateless,
	// redirect), Timer C, trusted peers, static locations and routes,
	// gateway groups and routing rules; see proxy.Config.
	Routing proxy.Config `yaml:"routing"`
	// Media is the relay of RTP for calls behind NAT: policy, engine,
	// ports, timeouts (see Media, docs/media.md).
	Media Media `yaml:"media"`
	// DNS configures RFC 3263 server location and ENUM for the proxy:
	// servers (default those of /etc/resolv.conf), timeout, attempts,
	// cache_size, blocklist_size, blocklist_for, enum_suffixes,
	// transports (default the listeners' transports); see resolve.Config.
	DNS resolve.Config `yaml:"dns"`
	// Store is where subscribers and registrations are kept: "" or
	// "sqlite" for the embedded SQLite database hlas.db in the data
	// directory, "sqlite:PATH" for another file, or a postgres:// URL.
	Store string `yaml:"store"`
	// Registrar configures the registrar (RFC 3261 §10.3): min_expires,
	// max_expires, default_expires, max_contacts, queue_size; see
	// registrar.Config.
	Registrar registrar.Config `yaml:"registrar"`
	// Auth configures digest authentication (RFC 3261 §22, RFC 7616):
	// open_domains, algorithms, nonce_ttl, max_nonces, secret_file; see
	// auth.Config.
	Auth auth.Config `yaml:"auth"`
	// Accounting configures call detail records (package acc): enabled
	// (default true), max_duration, messages, failed_registers,
	// max_calls, queue_size, retention (default 0: kept forever),
	// purge_interval; see acc.Config. Records go to Store.
	Accounting acc.Config `yaml:"accounting"`
	// NAT decides how UAs behind NATs are reached: contact (auto, flow or
	// contact; default auto), keepalive (default true),
	// keepalive_interval (default 30s), keepalive_failures (default 3);
	// see NAT and docs/nat.md.
	NAT NAT `yaml:"nat"`
	// STUN configures the STUN server (RFC 8489 Binding): enabled
	// (default true), listen (default port 3478 on each UDP SIP
	// listener's host; [none] for no dedicated socket), on_sip_ports
	// (default true), rate (default 20 per second per source), burst;
	// see STUNConfig and docs/stun.md.
	STUN STUNConfig `yaml:"stun"`
	// Capture copies every SIP message received and sent to a HEP v3
	// collector (Homer, sngrep): hep (udp:host:port; empty, the default,
	// is off), node_id, password, queue (default 4096); see CaptureConfig
	// and docs/capture.md.
	Capture CaptureConfig `yaml:"capture"`
	// Security is the defence at the edge: trusted networks, the flood
	// guard, the detector of scanners and password guessing, bans, and
	// the call limits against toll fraud; see security.Config and
	// docs/security.md.
	Security security.Config `yaml:"security"`
	// Identity is caller identity: P-Asserted-Identity and STIR/SHAKEN;
	// see Identity and docs/identity.md.
	Identity Identity `yaml:"identity"`
	// Events is presence and events: the server as notifier (RFC 6665)
	// and event state compositor (RFC 3903) for its users; see Events
	// and docs/events.md.
	Events Events `yaml:"events"`
	// XCAP is the XCAP server (RFC 4825) for buddy lists, list services
	// and presence rules; off unless xcap.listen is set. See XCAP and
	// docs/xcap.md.
	XCAP XCAP `yaml:"xcap"`
	// API is the REST API (docs/api.md): off unless api.listen is set
	// or api.enabled (then on 127.0.0.1:8088). See APIConfig.
	API APIConfig `yaml:"api"`
	// WebSocket tunes the ws and wss listeners: allowed_origins,
	// ping_interval, ping_timeout (docs/websocket.md). Their connections
	// count against max_connections and max_connections_per_source like
	// TCP's, and their messages against max_message_size.
	WebSocket transport.WebSocketConfig `yaml:"websocket"`
	// TLSClientCA is a PEM file of the authorities whose client
	// certificates tls listeners verify (mutual TLS): a peer that presents
	// one can be trusted by name (routing.trusted "cert:NAME"). Clients
	// without a certificate are still accepted. Default: none asked for.
	TLSClientCA string `yaml:"tls_client_ca"`
}

// Debug holds diagnostics that are off by default because they expose
// internals or cost CPU when used.
type Debug struct {
	// PProf serves Go's profiles (net/http/pprof) under /debug/pprof/ on
	// the metrics listener, so an operator can take a CPU or allocation
	// profile of a loaded server. Needs metrics_listen. Default off: a
	// profile reveals internals and costs CPU while it runs.
	PProf bool `yaml:"pprof"`
}

// Runtime tunes the Go runtime's garbage collector for the whole process
// (runtime/debug). Start applies a knob only when it is set and the
// matching environment variable (GOGC, GOMEMLIMIT) is not: the environment
// wins. Close restores what Start changed.
type Runtime struct {
	// GCPercent is the collector's target heap growth in percent, as GOGC:
	// a higher value trades memory for less GC CPU. -1 turns the collector
	// off except under MemoryLimit, which it then requires. Default 0: not
	// set (Go's 100, which measured cheaper per call than 400 under a sipp
	// load: BENCHMARKS.md).
	GCPercent int `yaml:"gc_percent"`
	// MemoryLimit is the soft memory limit, as GOMEMLIMIT: a byte count
	// with an optional unit B, KiB, MiB, GiB or TiB ("2GiB", "1500MiB",
	// "1073741824"). The collector works harder as the heap nears it.
	// Default "": not set (no limit).
	MemoryLimit string `yaml:"memory_limit"`
}

// Listener is one parsed Listen entry.
type Listener struct {
	Proto string // "udp", "tcp", "tls", "ws" or "wss"
	Addr  string // host:port as given to net.Listen
}

// DefaultMaxQueueDelay is used when Config.MaxQueueDelay is zero. It
// leaves room, within 50 ms, for the work after the wait (a REGISTER's
// store commit, say).
const DefaultMaxQueueDelay = 40 * time.Millisecond

// DefaultListen is used when Config.Listen is empty.
var DefaultListen = []string{"udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"}

// LoadFile reads a YAML configuration file into c. Unknown keys are errors,
// so a typo does not silently fall back to a default.
func (c *Config) LoadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if len(c.Listen) == 0 {
		c.Listen = DefaultListen
	}
	if c.DataDir == "" {
		c.DataDir = "./hlas-data"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 65536
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 5 * time.Minute
	}
	if c.MaxConnsPerSource == 0 {
		c.MaxConnsPerSource = 64
	}
	if c.MaxConns == 0 {
		c.MaxConns = 10000
	}
	if c.MaxTransactions == 0 {
		c.MaxTransactions = 1000000
	}
	if c.QueueSize == 0 {
		c.QueueSize = 4096
	}
	if c.MaxQueueDelay == 0 {
		c.MaxQueueDelay = DefaultMaxQueueDelay
	}
	if c.Workers == 0 {
		c.Workers = 4 * runtime.GOMAXPROCS(0)
	}
	if c.ServerName == "" {
		c.ServerName = "hlas/" + Version
	}
	return c
}

// Listeners parses and validates Listen.
func (c Config) Listeners() ([]Listener, error) {
	var out []Listener
	for _, entry := range c.Listen {
		for _, e := range strings.Split(entry, ",") {
			e = strings.TrimSpace(e)
			if e == "" {
				continue
			}
			l, err := ParseListener(e)
			if err != nil {
				return nil, err
			}
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("config listen: no listeners")
	}
	return out, nil
}

// ParseListener parses "proto:host:port".
func ParseListener(s string) (Listener, error) {
	proto, hostport, ok := strings.Cut(s, ":")
	proto = strings.ToLower(proto)
	if !ok || (proto != "udp" && proto != "tcp" && proto != "tls" && proto != "ws" && proto != "wss") {
		return Listener{}, fmt.Errorf("config listen %q: want proto:host:port with proto udp, tcp, tls, ws or wss", s)
	}
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return Listener{}, fmt.Errorf("config listen %q: %w", s, err)
	}
	if ap.Addr().Zone() != "" {
		return Listener{}, fmt.Errorf("config listen %q: zones are not supported", s)
	}
	return Listener{Proto: proto, Addr: ap.String()}, nil
}

// Validate checks the configuration and names the offending field.
func (c Config) Validate() error {
	c = c.withDefaults()
	ls, err := c.Listeners()
	if err != nil {
		return err
	}
	for _, l := range ls {
		if (l.Proto == "tls" || l.Proto == "wss") && (c.TLSCert == "" || c.TLSKey == "") {
			return fmt.Errorf("config listen %s:%s: %s listeners need tls_cert and tls_key", l.Proto, l.Addr, l.Proto)
		}
	}
	if err := (transport.Config{WebSocket: c.WebSocket}).Validate(); err != nil {
		return fmt.Errorf("config websocket: %w", err)
	}
	if err := c.Media.validate(); err != nil {
		return err
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	if c.MaxMessageSize < 1024 || c.MaxMessageSize > 1<<24 {
		return fmt.Errorf("config max_message_size %d: want 1024..16777216", c.MaxMessageSize)
	}
	if c.Workers < 0 || c.QueueSize < 0 || c.MaxConns < 0 || c.MaxConnsPerSource < 0 || c.MaxTransactions < 0 {
		return errors.New("config: workers, queue_size, max_conns, max_conns_per_source and max_transactions must not be negative")
	}
	if c.MessageTimeout < 0 {
		return errors.New("config message_timeout: must not be negative")
	}
	if c.MaxQueueDelay < time.Millisecond {
		return fmt.Errorf("config max_queue_delay %s: want at least 1ms", c.MaxQueueDelay)
	}
	if err := c.Runtime.validate(); err != nil {
		return err
	}
	for _, d := range c.Domains {
		if d == "" || strings.ContainsAny(d, " :;@<>") {
			return fmt.Errorf("config domain %q: not a host name", d)
		}
	}
	if err := c.Routing.Validate(); err != nil {
		return fmt.Errorf("config %w", err)
	}
	if err := c.DNS.Validate(); err != nil {
		return fmt.Errorf("config dns: %w", err)
	}
	if err := c.Registrar.Validate(); err != nil {
		return fmt.Errorf("config %w", err)
	}
	if err := c.Auth.Validate(); err != nil {
		return fmt.Errorf("config %w", err)
	}
	if err := c.Accounting.Validate(); err != nil {
		return fmt.Errorf("config %w", err)
	}
	if err := c.NAT.validate(); err != nil {
		return err
	}
	if err := c.STUN.validate(); err != nil {
		return err
	}
	if err := c.Capture.validate(); err != nil {
		return err
	}
	if err := c.Security.Validate(); err != nil {
		return fmt.Errorf("config %w", err)
	}
	if c.Security.Limits.ConcurrentCalls > 0 && !c.Accounting.On() {
		return errors.New("config security.limits.concurrent_calls: needs accounting (it counts the calls)")
	}
	if err := c.Identity.validate(); err != nil {
		return err
	}
	if err := c.Events.Subscriptions.Validate(); err != nil {
		return fmt.Errorf("config events.subscriptions: %w", err)
	}
	if err := c.Events.Publish.Validate(); err != nil {
		return fmt.Errorf("config events.publish: %w", err)
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		return errors.New("config tls_client_ca: needs tls_cert and tls_key")
	}
	if c.Store != "" && c.Store != "sqlite" && !strings.HasPrefix(c.Store, "sqlite:") &&
		!strings.HasPrefix(c.Store, "postgres://") && !strings.HasPrefix(c.Store, "postgresql://") {
		return errors.New("config store: want sqlite, sqlite:PATH or a postgres:// URL")
	}
	if err := c.API.validate(&c); err != nil {
		return err
	}
	if c.Debug.PProf && c.MetricsListen == "" {
		return errors.New("config debug.pprof: needs metrics_listen")
	}
	if c.MetricsListen != "" {
		if _, _, err := splitHostPort(c.MetricsListen); err != nil {
			return fmt.Errorf("config metrics_listen %q: %w", c.MetricsListen, err)
		}
	}
	return nil
}

func splitHostPort(s string) (string, int, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", 0, errors.New("want host:port")
	}
	p, err := strconv.Atoi(s[i+1:])
	if err != nil || p < 0 || p > 65535 {
		return "", 0, errors.New("bad port")
	}
	return strings.Trim(s[:i], "[]"), p, nil
}

func (r Runtime) validate() error {
	if r.GCPercent < -1 {
		return fmt.Errorf("config runtime.gc_percent %d: want -1 (off), 0 (not set) or more", r.GCPercent)
	}
	if r.MemoryLimit != "" {
		if _, err := parseBytes(r.MemoryLimit); err != nil {
			return fmt.Errorf("config runtime.memory_limit %q: %w", r.MemoryLimit, err)
		}
	}
	if r.GCPercent == -1 && r.MemoryLimit == "" {
		return errors.New("config runtime.gc_percent -1: turning the collector off needs runtime.memory_limit")
	}
	return nil
}

// parseBytes parses a byte count with an optional unit, as GOMEMLIMIT
// does: B, KiB, MiB, GiB or TiB (powers of 1024). It must be positive.
func parseBytes(s string) (int64, error) {
	num := strings.TrimSpace(s)
	unit := int64(1)
	for _, u := range [...]struct {
		suffix string
		n      int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(num, u.suffix) {
			num, unit = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.n
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("want a positive byte count with an optional unit B, KiB, MiB, GiB or TiB")
	}
	if n > math.MaxInt64/unit {
		return 0, errors.New("too large")
	}
	return n * unit, nil
}
