package proxy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/handler"
	"github.com/hlas-voip/hlas/media"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/resolve"
	"github.com/hlas-voip/hlas/sip/transaction"
	"github.com/hlas-voip/hlas/sip/transport"
)

// Network is the transport seen by the proxy; *transport.Manager
// implements it.
type Network interface {
	// WriteTo sends an encoded message: over UDP from the socket bound to
	// local (any suitable one when local is zero), over TCP or TLS on the
	// connection open to remote or a new one (it may wait for a dial).
	// data is the caller's again once WriteTo returns (the proxy reuses
	// its encoding buffers): what is queued must be a copy.
	WriteTo(proto string, local, remote netip.AddrPort, data []byte) error
	// Lookup returns the open connection to remote, or nil.
	Lookup(proto string, remote netip.AddrPort) *transport.Conn
}

// Listener is one bound listener of the server: the proxy writes its
// address in Via and Record-Route and sends UDP from its socket.
type Listener struct {
	Proto string // UDP, TCP or TLS
	Addr  netip.AddrPort
}

// Env is what a Proxy needs from the server that runs it.
type Env struct {
	// Transactions is the server's transaction layer; the proxy's client
	// transactions live in it, so responses reach them the way they reach
	// any client transaction. Required.
	Transactions *transaction.Layer
	// Network sends requests and statelessly forwarded responses. Required.
	Network Network
	// IsSelf reports whether a URI's host (and port, when given) is this
	// server: its domains, host names and addresses. Nil compares with the
	// listeners only.
	IsSelf func(u *sip.URI) bool
	// Domains are the server's own domains: requests for them go to the
	// location service when no rule matches.
	Domains []string
	// Locator is the location service (the registrar). The configured
	// static locations are asked first.
	Locator Locator
	// Resolver finds the next hops of foreign URIs. Nil means a
	// StaticResolver with the configured routes and DNS.
	Resolver Resolver
	// DNS locates foreign hosts by RFC 3263 (NAPTR, SRV, A/AAAA) after the
	// configured routes and IP literals (names in its hosts file too), and
	// answers the ENUM rules. Nil means no lookups: a host name without a
	// configured route fails, and no ENUM.
	DNS *resolve.Resolver
	// Identity returns the user the authentication step before the proxy
	// authenticated for this request, if any; a request whose From claims
	// another local user is then refused with 403. Nil turns the check off.
	Identity func(ctx context.Context) (sip.URI, bool)
	// Accounting observes the requests forwarded statefully and their
	// responses, for call detail records. Nil: none.
	Accounting Accounting
	// Media relays the RTP of the calls the proxy forwards statefully, as
	// MediaPolicy says: each SDP passes through it. Nil: no relaying.
	Media media.Engine
	// MediaPolicy picks the calls Media relays; "" is MediaAuto.
	MediaPolicy MediaPolicy
	// TrackCalls keeps every call forwarded statefully with the proxy's
	// Record-Route in a table (Calls, Call, Hangup: the REST API's
	// /calls), one entry of a few hundred bytes per call from its
	// INVITE to its BYE. Off, only relayed calls are kept.
	TrackCalls bool
	// CallMaxAge is how long a tracked call is kept without its BYE
	// (the BYE took another path, or never came). Default
	// DefaultCallMaxAge.
	CallMaxAge time.Duration
	// FlowKey signs the flow tokens in the proxy's Record-Route (see
	// flowtoken.go), so that dialogs keep reaching phones behind NAT
	// across a restart and on every node sharing the key. Nil: a random
	// key per Proxy.
	FlowKey []byte
	// ServerName is the Server header of the responses the proxy makes.
	ServerName string
	// Logger receives the logs, with feature=proxy. Nil discards them.
	Logger *slog.Logger
	// Registerer gets the proxy's metrics (hlas_proxy_*). Nil skips them.
	Registerer prometheus.Registerer
}

// Proxy is an RFC 3261 §16 proxy, in the mode its Config says: stateful,
// stateless or redirect. Its routing runs as handler-chain middleware
// (Preprocess, Route and the building blocks Route is made of), and the
// server hands it the messages that belong to no transaction
// (HandleACK, HandleResponse). It starts no goroutines: work happens on
// the server's workers and on transaction timers. Safe for concurrent use.
type Proxy struct {
	cfg     Config
	env     Env
	log     *slog.Logger
	met     *metrics
	clock   transaction.Clock
	t1      time.Duration
	salt    uint64
	flowKey []byte
	domains map[string]bool
	// rt is the part of the configuration Reload replaces; a request
	// loads it where it needs it, without a lock.
	rt atomic.Pointer[routing]
	// mediaPolicy is Env.MediaPolicy checked; mcalls the relayed calls.
	mediaPolicy MediaPolicy
	mcalls      mediaCalls
	ackRoute    handler.Handler // Route for HandleACK, where nothing is answered

	mu        sync.Mutex
	listeners []Listener
	pending   int
	orphans   map[string]*branch
	srcIP     map[netip.Addr]netip.Addr
	hosts     map[netip.Addr]string // hostOf

	bufs sync.Pool // *[]byte encoding buffers of the messages sent (sendMessage)
	macs sync.Pool // *macState of flowKey (appendMAC)

	dials   chan struct{}  // semaphore of background dials
	lookups chan struct{}  // semaphore of background Resolver calls
	async   sync.WaitGroup // background dials and lookups
	asyncMu sync.Mutex     // orders async.Add against Close's Wait
	closing bool           // Close has begun: no new background goroutine
	// stop is cancelled by Close: lookups under way give up rather
	// than hold the shutdown for up to resolveTimeout.
	stop       context.Context
	cancelStop context.CancelFunc
	// cacheOnly asks the DNS resolver for cached answers only
	// (resolve.CacheOnly), made once.
	cacheOnly context.Context

	// branchSeq numbers the client transactions of stateful forwarding,
	// after the request hash in their branch: a request resent as the
	// same bytes after its server transaction ended hashes the same, and
	// its new branch must not be that of the old client transaction,
	// which may still wait in Completed (Timer D).
	branchSeq atomic.Uint64
}

// New checks cfg and builds a proxy.
func New(cfg Config, env Env) (*Proxy, error) {
	c, err := compile(cfg)
	if err != nil {
		return nil, err
	}
	if env.Network == nil {
		return nil, errors.New("proxy: Env.Network is nil")
	}
	cfg = cfg.withDefaults()
	if env.Transactions == nil {
		if cfg.Mode == Stateful {
			return nil, errors.New("proxy: a stateful proxy needs Env.Transactions")
		}
		env.Transactions = transaction.New(transaction.Config{})
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	tc := env.Transactions.Config()
	var salt [8]byte
	_, _ = rand.Read(salt[:])
	p := &Proxy{
		cfg:     cfg,
		env:     env,
		log:     env.Logger.With("feature", "proxy"),
		clock:   tc.Clock,
		t1:      tc.T1,
		salt:    binary.LittleEndian.Uint64(salt[:]),
		domains: map[string]bool{},
		orphans: map[string]*branch{},
		srcIP:   map[netip.Addr]netip.Addr{},
		hosts:   map[netip.Addr]string{},
		dials:   make(chan struct{}, maxDials),
		lookups: make(chan struct{}, maxLookups),
	}
	p.stop, p.cancelStop = context.WithCancel(context.Background())
	if p.mediaPolicy, err = parseMediaPolicy(env.MediaPolicy); err != nil {
		return nil, err
	}
	p.mcalls.m = map[string]*mcall{}
	p.cacheOnly = resolve.CacheOnly(context.Background())
	for _, d := range env.Domains {
		p.domains[strings.ToLower(d)] = true
	}
	p.flowKey = env.FlowKey
	if len(p.flowKey) == 0 {
		p.flowKey = make([]byte, 32)
		_, _ = rand.Read(p.flowKey)
	}
	rt, err := p.newRouting(cfg, c)
	if err != nil {
		return nil, err
	}
	p.rt.Store(rt)
	// The routing of ACKs outside transactions (HandleACK), built once.
	p.ackRoute = p.Route(handler.HandlerFunc(func(context.Context, handler.ServerTx, *sip.Request) {}))
	p.met = newMetrics(p)
	if env.Registerer != nil {
		if err := p.met.register(env.Registerer); err != nil {
			return nil, fmt.Errorf("proxy: metrics: %w", err)
		}
	}
	return p, nil
}

// routing is what Reload replaces as a whole: the trusted peers, static
// locations and routes, gateway groups and rules, and what is built of
// them. A request or call under way keeps the one it started with.
type routing struct {
	cfg      Config // the effective configuration, these fields included
	c        *compiled
	locator  Locator
	resolver Resolver
	rules    []handler.Middleware
}

// newRouting builds the routing of cfg, compiled as c.
func (p *Proxy) newRouting(cfg Config, c *compiled) (*routing, error) {
	rt := &routing{cfg: cfg, c: c, locator: c.locations, resolver: p.env.Resolver}
	if p.env.Locator != nil {
		rt.locator = chainLocator{c.locations, p.env.Locator}
	}
	if rt.resolver == nil {
		rt.resolver = &StaticResolver{Routes: c.routes, DNS: p.env.DNS}
	}
	for i, r := range cfg.Rules {
		if r.Action == ActionENUM {
			if p.env.DNS == nil {
				return nil, fmt.Errorf("routing.rules[%d]: action enum needs a DNS resolver", i)
			}
			rt.rules = append(rt.rules, p.ENUM(r.matcher()))
			continue
		}
		rt.rules = append(rt.rules, When(r.matcher(), p.action(c, i, r)))
	}
	return rt, nil
}

// Reload replaces the routing without a restart: trusted, locations,
// routes, gateways and rules are taken from cfg; its other fields (mode,
// timers, bounds) need a new Proxy and are ignored. Requests that arrive
// afterwards see the new routing; requests being forwarded and calls set
// up keep theirs (in-dialog requests follow their route sets, not the
// rules). On an error nothing changes.
func (p *Proxy) Reload(cfg Config) error {
	c, err := compile(cfg)
	if err != nil {
		return err
	}
	next := p.cfg
	next.Trusted, next.Locations, next.Routes = cfg.Trusted, cfg.Locations, cfg.Routes
	next.Gateways, next.Rules = cfg.Gateways, cfg.Rules
	rt, err := p.newRouting(next, c)
	if err != nil {
		return err
	}
	p.rt.Store(rt)
	return nil
}

// Config returns the effective configuration, with the routing of the
// last Reload.
func (p *Proxy) Config() Config { return p.rt.Load().cfg }

// Mode returns the proxy's mode.
func (p *Proxy) Mode() Mode { return p.cfg.Mode }

// SetListeners tells the proxy the server's bound listeners; the server
// calls it once they are bound, before the first request.
func (p *Proxy) SetListeners(ls []Listener) {
	p.mu.Lock()
	p.listeners = append([]Listener(nil), ls...)
	p.mu.Unlock()
}

// Pending returns the number of response contexts alive (requests being
// proxied statefully).
func (p *Proxy) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pending
}

// IsLocalDomain reports whether host is one of the server's domains or
// addresses.
func (p *Proxy) IsLocalDomain(u *sip.URI) bool {
	if p.domains[strings.ToLower(u.Hostname())] {
		return true
	}
	h := sip.URI{Scheme: u.Scheme, Host: u.Host}
	return p.isSelf(&h)
}

// isSelf reports whether u's host[:port] is this server.
func (p *Proxy) isSelf(u *sip.URI) bool {
	if p.env.IsSelf != nil {
		return p.env.IsSelf(u)
	}
	host := strings.Trim(u.Host, "[]")
	a, ok := sip.ParseIP(host)
	if !ok {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.listeners {
		if l.Addr.Addr().Unmap() == a.Unmap() && (u.Port == 0 || int(l.Addr.Port()) == u.Port) {
			return true
		}
	}
	return false
}

// debugging reports whether debug logs are wanted. A Debug call on the
// hot path boxes its arguments (and runs their String methods) before the
// handler can refuse them, so such calls are guarded by it.
func (p *Proxy) debugging() bool { return p.log.Enabled(context.Background(), slog.LevelDebug) }

// --- context values ---

type routedKey struct{}

// Routed reports whether Preprocess removed a Route entry of this proxy
// from the request: it follows a route set the proxy recorded (an
// in-dialog request) or one preloaded with the proxy as outbound proxy.
func Routed(ctx context.Context) bool {
	v, _ := ctx.Value(routedKey{}).(bool)
	return v
}

// --- the server transaction, seen by the proxy ---

// FlowTx is a server transaction that knows the flow its request came on.
// The server's transactions implement it; without it the proxy knows only
// Source and Transport.
type FlowTx interface {
	Flow() Flow
}

// CancelTx is a server transaction that can tell the proxy about a CANCEL
// (RFC 3261 §9.2, §16.10): f replaces the transaction's own 487, and runs
// at once when the CANCEL came before OnCancel was called.
type CancelTx interface {
	OnCancel(f func())
}

func flowOf(tx handler.ServerTx) Flow {
	if ft, ok := tx.(FlowTx); ok {
		return ft.Flow()
	}
	return Flow{Proto: strings.ToUpper(tx.Transport()), Remote: tx.Source()}
}

// --- responses the proxy makes ---

// newResponse builds a response of the proxy's own, with a To tag except
// for 100 (RFC 3261 §8.2.6.2) and the Server header.
func (p *Proxy) newResponse(req *sip.Request, code int, reason string) *sip.Response {
	res := sip.NewResponse(req, code, reason)
	res.AddToTag()
	if p.env.ServerName != "" {
		res.Add("Server", p.env.ServerName)
	}
	return res
}

func (p *Proxy) reply(tx handler.ServerTx, req *sip.Request, code int, reason string) {
	if req.Method == sip.ACK {
		return
	}
	p.met.replies.WithLabelValues(codeLabel(code)).Inc()
	_ = tx.RespondStateless(p.newResponse(req, code, reason))
}

// --- branch identifiers and loop detection ---

// branchPrefix starts every branch this proxy writes: the magic cookie
// and "hlp". The rest is the request's hash (requestHash, what loop
// detection compares), a dot, and 0 for a stateless forward (the same
// for every retransmission, §16.11) or the number of the client
// transaction for a stateful one (Proxy.branchSeq).
const branchPrefix = sip.MagicCookie + "hlp"

// requestHash hashes what identifies a request as received (RFC 3261
// §16.6 step 8, §16.11): the top Via (sent-by and branch; the whole Via
// for a branch without the magic cookie), the Request-URI, Call-ID, From
// tag and CSeq number. The To tag and the Proxy-Require and
// Proxy-Authorization fields are left out so that a CANCEL and the ACK of a
// non-2xx response hash like their INVITE, as a stateless proxy needs
// (§16.11); the top Via's branch tells transactions apart. It is FNV-1a
// (hash/fnv's New64a) over the per-Proxy salt and those values, computed
// without allocating; branches carry it in base 36 (appendBranch).
func (p *Proxy) requestHash(req *sip.Request, top *sip.Via) uint64 {
	h := fnv64(fnvOffset64)
	var salt [8]byte
	binary.LittleEndian.PutUint64(salt[:], p.salt)
	h.write(salt[:])
	var buf [256]byte // the Request-URI, numbers: on the stack
	if top != nil {
		b := top.Branch()
		h.writeLower(top.Host)
		h.write(strconv.AppendInt(buf[:0], int64(top.Port), 10))
		h.writeByte(0)
		h.writeString(b)
		if !strings.HasPrefix(b, sip.MagicCookie) {
			h.write(top.AppendTo(buf[:0]))
		}
	}
	h.writeByte(0)
	h.write(req.URI.AppendTo(buf[:0]))
	h.writeByte(0)
	h.writeString(req.CallID)
	h.writeByte(0)
	h.writeString(req.From.Tag())
	h.writeByte(0)
	h.write(strconv.AppendUint(buf[:0], uint64(req.CSeq.Seq), 10))
	return uint64(h)
}

// fnv64 is a running FNV-1a hash, 64 bits (hash/fnv's New64a without the
// interface and the allocations around it).
type fnv64 uint64

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

func (h *fnv64) writeByte(c byte) { *h = (*h ^ fnv64(c)) * fnvPrime64 }

func (h *fnv64) write(b []byte) {
	for _, c := range b {
		h.writeByte(c)
	}
}

func (h *fnv64) writeString(s string) {
	for i := 0; i < len(s); i++ {
		h.writeByte(s[i])
	}
}

// writeLower hashes s in ASCII lower case (host names are ASCII).
func (h *fnv64) writeLower(s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h.writeByte(c)
	}
}

// hashOf returns the hash of the request as received: over its top Via.
func (p *Proxy) hashOf(req *sip.Request) uint64 {
	if len(req.Via) == 0 {
		return p.requestHash(req, nil)
	}
	return p.requestHash(req, &req.Via[0])
}

// appendBranch appends the branch of a request with hash, numbered n (0
// for a stateless forward): branchPrefix, the hash and n in base 36,
// separated by a dot.
func appendBranch(b []byte, hash, n uint64) []byte {
	b = append(b, branchPrefix...)
	b = strconv.AppendUint(b, hash, 36)
	b = append(b, '.')
	return strconv.AppendUint(b, n, 36)
}

// viaBranch returns the parameters of the proxy's Via for a request with
// hash, numbered n, and the branch within them: one string, so one
// allocation.
func viaBranch(hash, n uint64) (params sip.Params, branch string) {
	const key = ";branch="
	var buf [64]byte
	s := string(appendBranch(append(buf[:0], key...), hash, n))
	return sip.Params(s), s[len(key):]
}

// ownVia reports whether v was written by this proxy, and its hash.
func (p *Proxy) ownVia(v *sip.Via) (hash string, ok bool) {
	b := v.Branch()
	if !strings.HasPrefix(b, branchPrefix) {
		return "", false
	}
	if !p.isSelf(&sip.URI{Scheme: sip.SchemeSIP, Host: v.Host, Port: v.Port}) {
		return "", false
	}
	rest := b[len(branchPrefix):]
	if i := strings.IndexByte(rest, '.'); i >= 0 {
		rest = rest[:i]
	}
	return rest, true
}

// looped implements RFC 3261 §16.3 step 4: a Via of ours further down
// whose branch hash equals the hash of this request computed over the Via
// that was on top when we forwarded it is a loop; a different hash (a new
// Request-URI, say) is a spiral and allowed.
func (p *Proxy) looped(req *sip.Request) bool {
	for i := 0; i+1 < len(req.Via); i++ {
		hash, ok := p.ownVia(&req.Via[i])
		if !ok {
			continue
		}
		var buf [16]byte // a uint64 in base 36
		if string(strconv.AppendUint(buf[:0], p.requestHash(req, &req.Via[i+1]), 36)) == hash {
			return true
		}
	}
	return false
}

// --- addresses ---

// listenerFor picks the listener for proto whose family reaches ip.
func (p *Proxy) listenerFor(proto string, ip netip.Addr) (Listener, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var fallback *Listener
	for i, l := range p.listeners {
		if l.Proto != proto {
			continue
		}
		la := l.Addr.Addr()
		if la.Unmap().Is4() == ip.Unmap().Is4() {
			return l, true
		}
		if la.Is6() && la.IsUnspecified() && fallback == nil {
			fallback = &p.listeners[i]
		}
	}
	if fallback != nil {
		return *fallback, true
	}
	return Listener{}, false
}

// maxSrcCache bounds the cache of source addresses by destination.
const maxSrcCache = 4096

// sourceIP is the local address the system routes to dst from, for Via
// and Record-Route when the listener is bound to a wildcard address.
func (p *Proxy) sourceIP(dst netip.Addr) netip.Addr {
	dst = dst.Unmap()
	p.mu.Lock()
	ip, ok := p.srcIP[dst]
	p.mu.Unlock()
	if ok {
		return ip
	}
	ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	if dst.Is6() {
		ip = netip.IPv6Loopback()
	}
	if c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9))); err == nil {
		if a, ok := c.LocalAddr().(*net.UDPAddr); ok {
			ip = a.AddrPort().Addr().Unmap()
		}
		c.Close()
	}
	p.mu.Lock()
	if len(p.srcIP) >= maxSrcCache {
		clear(p.srcIP)
	}
	p.srcIP[dst] = ip
	p.mu.Unlock()
	return ip
}

func hostString(a netip.Addr) string {
	if a.Is6() && !a.Is4In6() {
		return "[" + a.String() + "]"
	}
	return a.Unmap().String()
}

// maxHostCache bounds the cache of local addresses as text.
const maxHostCache = 256

// hostOf is hostString(a) for a local address (a listener's, the source
// address towards a peer, a connection's local one), written once, not for
// every Via and Record-Route: there are few of them.
func (p *Proxy) hostOf(a netip.Addr) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if h, ok := p.hosts[a]; ok {
		return h
	}
	if len(p.hosts) >= maxHostCache {
		clear(p.hosts)
	}
	h := hostString(a)
	p.hosts[a] = h
	return h
}

// side is one interface of the proxy: what it writes in Via and
// Record-Route, and the socket it sends from.
type side struct {
	proto string
	local netip.AddrPort // UDP socket to send from
	ip    netip.Addr     // the address host names: what a peer reaches us on
	host  string
	port  int
}

// outSide is the interface a request to remote over proto leaves from.
func (p *Proxy) outSide(proto string, remote netip.AddrPort, flow Flow) (side, error) {
	l, ok := p.listenerFor(proto, remote.Addr())
	if !ok {
		return side{}, fmt.Errorf("proxy: no %s listener for %s", proto, remote)
	}
	s := side{proto: proto, local: l.Addr, port: int(l.Addr.Port())}
	ip := l.Addr.Addr()
	if flow.Proto == proto && flow.Local.IsValid() && proto == transport.UDP {
		s.local = flow.Local
	}
	if flow.Conn != nil {
		ip = flow.Conn.LocalAddr().Addr()
	}
	if !ip.IsValid() || ip.IsUnspecified() {
		ip = p.sourceIP(remote.Addr())
	}
	s.ip, s.host = ip.Unmap(), p.hostOf(ip)
	return s, nil
}

// inSide is the interface a request came in on; ok is false when unknown.
func (p *Proxy) inSide(in Flow) (side, bool) {
	if in.IsZero() || in.Proto == "" {
		return side{}, false
	}
	ip := in.Local.Addr()
	port := int(in.Local.Port())
	if l, ok := p.listenerFor(in.Proto, in.Remote.Addr()); ok {
		port = int(l.Addr.Port())
		if !ip.IsValid() {
			ip = l.Addr.Addr()
		}
	}
	if !ip.IsValid() || ip.IsUnspecified() {
		ip = p.sourceIP(in.Remote.Addr())
	}
	if port == 0 {
		return side{}, false
	}
	return side{proto: in.Proto, ip: ip.Unmap(), host: p.hostOf(ip), port: port}, true
}

// uri is the SIP URI of an interface, for Record-Route.
func (s side) uri(r2 bool) sip.URI {
	var params sip.Params // constants: no concatenation per request
	switch s.proto {
	case transport.TCP:
		params = ";lr;transport=tcp"
		if r2 {
			params = ";lr;transport=tcp;r2=on"
		}
	case transport.TLS:
		params = ";lr;transport=tls"
		if r2 {
			params = ";lr;transport=tls;r2=on"
		}
	case transport.WS, transport.WSS:
		// RFC 7118 §5.2 names one transport parameter for both.
		params = ";lr;transport=ws"
		if r2 {
			params = ";lr;transport=ws;r2=on"
		}
	default:
		params = ";lr"
		if r2 {
			params = ";lr;r2=on"
		}
	}
	return sip.URI{Scheme: sip.SchemeSIP, Host: s.host, Port: s.port, Params: params}
}
