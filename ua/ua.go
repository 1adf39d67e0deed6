// Package ua is a SIP user agent (RFC 3261 §8, §12-15) on top of the
// transport, transaction and dialog layers: a UAC that registers with
// digest authentication and keeps the registration fresh, places calls
// (INVITE with an SDP offer, ACK, CANCEL, BYE, re-INVITE, UPDATE, INFO,
// PRACK for reliable provisional responses) and sends OPTIONS and MESSAGE;
// and a UAS that accepts calls through Config.OnCall and answers OPTIONS,
// MESSAGE, INFO, UPDATE and re-INVITE by itself. UA.CallWith and the
// offer handlers of a Call (Call.OnOffer) let a controller (package tpcc)
// choose the descriptions: an INVITE without an offer, the answer in the
// ACK, the answers to the peer's re-INVITEs and UPDATEs.
//
// The UA is a library: Config holds every setting, New binds the local
// listener, Close ends calls and waits for every goroutine the UA started.
// Incoming messages are parsed by the transport's reader and go through
// bounded queues to a fixed pool of workers, sharded by Call-ID so that
// the messages of one call are handled in arrival order; a full queue, or
// Config.MaxTransactions server transactions alive, answers 503 (RFC 3261
// §21.5.4). A worker never waits on the network: what a message makes the
// UA send after a name lookup or a dial (the ACK for a 2xx, PRACK, the BYE
// of an unwanted fork) goes to a goroutine of the call's own, which runs
// the call's sends in order; a response whose connection has closed is
// sent on a new one in the background. Timers (the 2xx and reliable
// 1xx retransmissions, registration refresh) run on Config.Clock, so tests
// drive them with a transaction.FakeClock.
package ua

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hlas-voip/hlas/internal/shard"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/dialog"
	"github.com/hlas-voip/hlas/sip/resolve"
	"github.com/hlas-voip/hlas/sip/transaction"
	"github.com/hlas-voip/hlas/sip/transport"
)

// Version is the user agent's release, written in User-Agent and Server
// as "hlas-ua/" + Version.
const Version = "0.1.0"

// Rel100 is the policy for reliable provisional responses (RFC 3262).
type Rel100 string

// Reliable provisional response policies.
const (
	// Rel100Supported (the default) advertises Supported: 100rel; as UAS
	// it sends reliable provisional responses only when the INVITE
	// requires them.
	Rel100Supported Rel100 = "supported"
	// Rel100Require puts Require: 100rel in INVITEs; as UAS it sends
	// reliable provisional responses whenever the INVITE supports them.
	Rel100Require Rel100 = "require"
	// Rel100Off neither advertises nor accepts 100rel: an INVITE that
	// requires it gets 420 (RFC 3261 §8.2.2.3).
	Rel100Off Rel100 = "off"
)

// Config configures a UA. Zero fields take the defaults in their comments.
type Config struct {
	// Transport is "udp" (default), "tcp" or "tls": the listener's
	// protocol and the one requests use unless a URI says otherwise.
	Transport string
	// Listen is the local host:port. Default "127.0.0.1:0" (an ephemeral
	// port on loopback).
	Listen string
	// User is the address of record, "alice@example.test" or a sip: URI.
	User string
	// AuthUser is the digest username; default the user part of User.
	AuthUser string
	// Password answers digest challenges (RFC 3261 §22.4); empty means
	// challenges fail the request.
	Password string
	// DisplayName goes into From.
	DisplayName string
	// Server is the outbound proxy and registrar, host:port (RFC 3261
	// §8.1.2): every request outside a dialog goes there. Empty sends
	// requests to the host of their Request-URI.
	Server string
	// Expires is the registration lifetime asked for. Default 3600s.
	Expires time.Duration
	// Q is the q-value written on the Contact of REGISTER requests (RFC
	// 3261 §10.2.1.2, §20.10), "0" to "1" with up to three decimals: the
	// registrar's preference among the bindings of one AOR, used by a
	// proxy for sequential forking. Empty leaves it out (1.0).
	Q string
	// Advertise is the host:port written in Contact and in the Via
	// sent-by instead of the listener's address: the public address of a
	// NAT, or, in tests, an address behind one that the registrar cannot
	// reach. Empty writes the listener's address.
	Advertise string
	// T1, T2, T4 are the RFC 3261 §17.1.1.1 timers. Default 500ms, 4s, 5s.
	T1, T2, T4 time.Duration
	// TimerD is the INVITE client transaction's wait for retransmitted
	// final responses (default 32s, RFC 3261 §17.1.1.2).
	TimerD time.Duration
	// Rel100 is the 100rel policy. Default Rel100Supported.
	Rel100 Rel100
	// MediaPort is the audio port written in SDP. Default 40000.
	MediaPort int
	// Workers is the number of goroutines processing incoming messages.
	// Default 4.
	Workers int
	// QueueSize bounds the messages waiting for a worker. Default 1024.
	QueueSize int
	// MaxCalls bounds concurrent calls; beyond it an INVITE gets 486.
	// Default 1000.
	MaxCalls int
	// MaxTransactions bounds the server transactions alive at once; a new
	// request beyond it is answered 503 with Retry-After, statelessly
	// (RFC 3261 §21.5.4). Default 100000.
	MaxTransactions int
	// MaxForks bounds the dialogs one outgoing INVITE may create: early
	// dialogs from provisional responses with new To tags beyond it are
	// ignored, and a 2xx from a fork beyond it is ACKed and hung up
	// without being kept (RFC 3261 §13.2.2.4). Default 16.
	MaxForks int
	// Resolver looks up the A/AAAA records of host names in URIs. Default
	// net.DefaultResolver.
	Resolver Resolver
	// DNS, when set, locates next hops by RFC 3263 (NAPTR, SRV, A/AAAA),
	// and a request outside a dialog that meets a transport error, a
	// timeout or a 503 is sent again to the next target (§4.3). Names it
	// cannot find are looked up with Resolver.
	DNS *resolve.Resolver
	// ResolveTimeout bounds one host name lookup. Default 2s.
	ResolveTimeout time.Duration
	// TLSConfig is the listener's configuration for Transport "tls".
	TLSConfig *tls.Config
	// TLSClientConfig verifies TLS servers; nil means the system roots.
	TLSClientConfig *tls.Config
	// Clock drives every timer. Default the wall clock.
	Clock transaction.Clock
	// Logger receives logs with feature=ua. Nil discards them.
	Logger *slog.Logger
	// UserAgent is written in User-Agent and Server. Default
	// "hlas-ua/" + Version.
	UserAgent string

	// OnCall receives each new incoming call, in a goroutine of its own
	// (at most MaxCalls at once). It owns the call: it Rings, Answers or
	// Rejects it, and may wait for the call's Done channel before it
	// returns. A call OnCall returns without answering is rejected with
	// 500 (every INVITE gets a final response, RFC 3261 §13.3.1), unless
	// OnCall called Call.Keep to answer it later from elsewhere. Nil
	// answers incoming INVITEs 480.
	OnCall func(c *Call)
	// OnMessage is called for each incoming MESSAGE (RFC 3428) before it
	// is answered 200. It runs on a worker and must not block.
	OnMessage func(req *sip.Request)
	// OnRequest is called for each request received within a call's
	// dialog (BYE, INFO, UPDATE, re-INVITE, PRACK, ...) before it is
	// answered. It runs on a worker and must not block.
	OnRequest func(c *Call, req *sip.Request)
	// OnResponse is called for every response to a request the UA sent,
	// provisional ones included. It runs on a worker and must not block.
	OnResponse func(req *sip.Request, res *sip.Response)
}

func (c Config) withDefaults() Config {
	if c.Transport == "" {
		c.Transport = "udp"
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:0"
	}
	if c.Expires <= 0 {
		c.Expires = time.Hour
	}
	if c.Rel100 == "" {
		c.Rel100 = Rel100Supported
	}
	if c.MediaPort <= 0 {
		c.MediaPort = 40000
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 1024
	}
	if c.MaxCalls <= 0 {
		c.MaxCalls = 1000
	}
	if c.MaxTransactions <= 0 {
		c.MaxTransactions = 100000
	}
	if c.MaxForks <= 0 {
		c.MaxForks = 16
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	if c.ResolveTimeout <= 0 {
		c.ResolveTimeout = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.UserAgent == "" {
		c.UserAgent = "hlas-ua/" + Version
	}
	return c
}

// Resolver looks up host names; *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Stats counts what a UA holds; a UA at rest holds nothing.
type Stats struct {
	Transactions transaction.Stats
	Dialogs      int
	Calls        int
}

// UA is a SIP user agent. Its methods are safe for concurrent use.
type UA struct {
	cfg   Config
	log   *slog.Logger
	tm    *transport.Manager
	layer *transaction.Layer
	dlgs  *dialog.Table

	proto   string // UDP, TCP or TLS
	local   netip.AddrPort
	aor     sip.URI
	from    sip.Address // without tag
	contact sip.Address
	server  *sip.URI // outbound proxy, or nil

	queues []chan inbound // one per worker, sharded by Call-ID
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts workers, OnCall goroutines, call senders, redials and
	// the registration refresher; see spawn.
	wg      sync.WaitGroup
	redials chan struct{} // semaphore of background redials

	mu       sync.Mutex
	closed   bool
	calls    map[*Call]struct{}
	byDialog map[dialog.ID]*Call
	reg      *registration
}

// New checks cfg, binds the listener and starts the workers.
func New(cfg Config) (*UA, error) {
	cfg = cfg.withDefaults()
	proto := strings.ToUpper(cfg.Transport)
	switch proto {
	case transport.UDP, transport.TCP:
	case transport.TLS:
		if cfg.TLSConfig == nil {
			return nil, errors.New("ua: Transport tls needs TLSConfig")
		}
	default:
		return nil, fmt.Errorf("ua: Transport %q: want udp, tcp or tls", cfg.Transport)
	}
	aor, err := parseTarget(cfg.User, "")
	if err != nil || aor.User == "" {
		return nil, fmt.Errorf("ua: User %q: want user@host", cfg.User)
	}
	if cfg.Q != "" {
		if q, err := strconv.ParseFloat(cfg.Q, 64); err != nil || q < 0 || q > 1 {
			return nil, fmt.Errorf("ua: Q %q: want a number from 0 to 1", cfg.Q)
		}
	}
	layer := transaction.New(transaction.Config{T1: cfg.T1, T2: cfg.T2, T4: cfg.T4, TimerD: cfg.TimerD,
		MaxServer: cfg.MaxTransactions, Clock: cfg.Clock, Logger: cfg.Logger})
	// The layer fills in the timers and the clock (RFC 3261 §17.1.1.1);
	// the UA's own retransmissions (2xx, reliable 1xx) run on the same.
	tc := layer.Config()
	cfg.T1, cfg.T2, cfg.Clock = tc.T1, tc.T2, tc.Clock
	u := &UA{
		cfg:      cfg,
		log:      cfg.Logger.With("feature", "ua"),
		layer:    layer,
		redials:  make(chan struct{}, maxRedials),
		dlgs:     dialog.NewTable(),
		proto:    proto,
		aor:      aor,
		calls:    map[*Call]struct{}{},
		byDialog: map[dialog.ID]*Call{},
	}
	if cfg.Server != "" {
		su, err := parseTarget(cfg.Server, "")
		if err != nil {
			return nil, fmt.Errorf("ua: Server %q: %w", cfg.Server, err)
		}
		su.User = ""
		u.server = &su
	}
	u.ctx, u.cancel = context.WithCancel(context.Background())
	for range cfg.Workers {
		u.queues = append(u.queues, make(chan inbound, max(cfg.QueueSize/cfg.Workers, 1)))
	}
	u.tm = transport.New(transport.Config{TLSConfig: cfg.TLSConfig, TLSClientConfig: cfg.TLSClientConfig, Logger: cfg.Logger},
		transport.HandlerFunc(u.enqueue))
	a, err := u.tm.Listen(proto, cfg.Listen)
	if err != nil {
		u.tm.Close()
		u.cancel()
		return nil, fmt.Errorf("ua: listen %s %s: %w", proto, cfg.Listen, err)
	}
	u.local = addrPortOf(a)
	host := u.local.Addr()
	if host.IsUnspecified() {
		host = u.outboundIP()
	}
	u.from = sip.Address{URI: sip.URI{Scheme: aor.Scheme, User: aor.User, Host: aor.Host, Port: aor.Port}}
	if cfg.DisplayName != "" {
		u.from.Display = sip.QuoteDisplay(cfg.DisplayName)
	}
	cu := sip.URI{Scheme: sip.SchemeSIP, User: aor.User, Host: hostString(host), Port: int(u.local.Port())}
	if cfg.Advertise != "" {
		h, p, err := net.SplitHostPort(cfg.Advertise)
		port, perr := strconv.Atoi(p)
		if err != nil || perr != nil || h == "" || port <= 0 || port > 65535 {
			u.tm.Close()
			u.cancel()
			return nil, fmt.Errorf("ua: Advertise %q: want host:port", cfg.Advertise)
		}
		if a, err := netip.ParseAddr(h); err == nil {
			h = hostString(a)
		}
		cu.Host, cu.Port = h, port
	}
	if proto == transport.TLS {
		cu.Scheme = sip.SchemeSIPS
	} else if proto == transport.TCP {
		cu.Params = ";transport=tcp"
	}
	u.contact = sip.Address{URI: cu}
	for _, q := range u.queues {
		u.wg.Add(1)
		go u.work(q)
	}
	u.log.Info("listening", "proto", proto, "addr", u.local.String(), "aor", aor.String())
	return u, nil
}

// outboundIP picks the local address that routes to the server (no packet
// is sent), or 127.0.0.1.
func (u *UA) outboundIP() netip.Addr {
	if u.server != nil {
		port := u.server.Port
		if port == 0 {
			port = 5060
		}
		if c, err := net.Dial("udp", net.JoinHostPort(u.server.Hostname(), strconv.Itoa(port))); err == nil {
			defer c.Close()
			if ap := addrPortOf(c.LocalAddr()); ap.IsValid() {
				return ap.Addr()
			}
		}
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1})
}

func hostString(a netip.Addr) string {
	if a.Is6() && !a.Is4In6() {
		return "[" + a.String() + "]"
	}
	return a.Unmap().String()
}

// Addr returns the bound listener address.
func (u *UA) Addr() netip.AddrPort { return u.local }

// Transport returns the listener's protocol: UDP, TCP or TLS.
func (u *UA) Transport() string { return u.proto }

// Contact returns the Contact address the UA writes.
func (u *UA) Contact() sip.Address { return u.contact }

// AOR returns the address of record.
func (u *UA) AOR() sip.URI { return u.aor }

// Stats returns what the UA holds now.
func (u *UA) Stats() Stats {
	u.mu.Lock()
	n := len(u.calls)
	u.mu.Unlock()
	return Stats{Transactions: u.layer.Stats(), Dialogs: u.dlgs.Len(), Calls: n}
}

// Close hangs up every call (BYE for established ones, CANCEL or 480
// for pending ones, without waiting for answers), stops the registration
// refresh, closes the listener and waits for every goroutine the UA
// started. Timers of transactions still running stay on the clock and
// fail harmlessly when they fire.
func (u *UA) Close() error {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		u.wg.Wait()
		return nil
	}
	u.closed = true
	calls := make([]*Call, 0, len(u.calls))
	for c := range u.calls {
		calls = append(calls, c)
	}
	reg := u.reg
	u.mu.Unlock()
	if reg != nil {
		reg.stop()
	}
	for _, c := range calls {
		c.abort(ErrClosed)
	}
	u.cancel()
	// Manager.Close returns once its readers, the only callers of
	// enqueue, have: no send on a queue can race with its close.
	err := u.tm.Close()
	for _, q := range u.queues {
		close(q)
	}
	u.wg.Wait()
	u.log.Info("closed")
	return err
}

// ErrClosed is returned by a UA after Close.
var ErrClosed = errors.New("ua: closed")

// spawn runs f in a goroutine counted in u.wg, unless the UA is closed.
// Adding under u.mu while not closed orders every Add before Close's Wait.
func (u *UA) spawn(f func()) bool {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return false
	}
	u.wg.Add(1)
	u.mu.Unlock()
	go func() {
		defer u.wg.Done()
		f()
	}()
	return true
}

// inbound is a parsed message waiting for a worker.
type inbound struct {
	p   *transport.Packet
	msg sip.Message
	err error
}

// enqueue is the transport's handler; it never blocks. It parses the
// message and queues it for the worker of its Call-ID. A full queue
// answers requests 503 with Retry-After and drops everything else.
func (u *UA) enqueue(p *transport.Packet) {
	msg, err := sip.Parse(p.Data)
	q := u.queues[0]
	if msg != nil {
		q = u.queues[shard.Of(msg.Head().CallID, len(u.queues))]
	}
	select {
	case q <- inbound{p, msg, err}:
		return
	default:
	}
	req, ok := msg.(*sip.Request)
	if err != nil || !ok || req.Method == sip.ACK || len(req.Via) == 0 {
		return
	}
	stampVia(req, p)
	u.overloaded(req, p)
}

// overloaded answers a request 503 with Retry-After, statelessly (RFC
// 3261 §21.5.4).
func (u *UA) overloaded(req *sip.Request, p *transport.Packet) {
	res := u.newResponse(req, 503, "")
	res.Add("Retry-After", "5")
	_ = (&responseSender{u: u, p: p}).Send(res)
}

func (u *UA) work(q chan inbound) {
	defer u.wg.Done()
	for in := range q {
		u.process(in)
	}
}

// process passes one message to the transaction layer and then the UA
// core.
func (u *UA) process(in inbound) {
	p, msg, err := in.p, in.msg, in.err
	if err != nil || p.Oversize || p.BadFraming != "" {
		req, _ := msg.(*sip.Request)
		if req != nil && len(req.Via) > 0 && req.Method != sip.ACK {
			stampVia(req, p)
			code := 400
			if p.Oversize {
				code = 513
			}
			_ = (&responseSender{u: u, p: p}).Send(u.newResponse(req, code, ""))
		}
		u.log.Debug("dropped unparsable message", "from", p.Remote.String(), "err", err)
		return
	}
	switch m := msg.(type) {
	case *sip.Response:
		if !u.layer.HandleResponse(m) {
			u.strayResponse(m)
		}
	case *sip.Request:
		stampVia(m, p)
		s := &responseSender{u: u, p: p}
		stx, disp := u.layer.HandleRequest(m, s)
		switch disp {
		case transaction.NewRequest:
			u.handleRequest(stx, m, p)
		case transaction.PassACK:
			u.handleACK(m)
		case transaction.Overloaded:
			u.log.Debug("server transactions at MaxTransactions", "method", m.Method, "from", p.Remote.String())
			u.overloaded(m, p)
		}
	}
}

// strayResponse handles a response no client transaction wants: a 2xx to
// an INVITE retransmitted after the transaction ended is ACKed again
// (RFC 3261 §13.2.2.4).
func (u *UA) strayResponse(res *sip.Response) {
	if res.CSeq.Method != sip.INVITE || res.StatusCode/100 != 2 {
		return
	}
	u.mu.Lock()
	c := u.byDialog[dialog.IDForResponse(res)]
	u.mu.Unlock()
	if c != nil {
		c.resendACK(res)
	}
}

// newResponse builds a response with a To tag (except 100) and Server.
func (u *UA) newResponse(req *sip.Request, code int, reason string) *sip.Response {
	res := sip.NewResponse(req, code, reason)
	res.AddToTag()
	res.Add("Server", u.cfg.UserAgent)
	return res
}

// allowed is the Allow header value (RFC 3261 §20.5).
const allowed = "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, INFO, UPDATE, PRACK"

func (u *UA) supported() string {
	if u.cfg.Rel100 == Rel100Off {
		return "replaces"
	}
	return "100rel, replaces"
}

// capabilities adds Allow, Accept and Supported (RFC 3261 §11.2).
func (u *UA) capabilities(h *sip.Header) {
	u.capabilitiesWith(h, u.supported())
}

// capabilitiesWith is capabilities with Supported as given (an INVITE
// without an offer does not offer 100rel: CallWith).
func (u *UA) capabilitiesWith(h *sip.Header, supported string) {
	h.Add("Allow", allowed)
	h.Add("Accept", ContentTypeSDP+", text/plain")
	h.Add("Supported", supported)
}

// handleRequest is the UAS core (RFC 3261 §8.2) for a new server
// transaction.
func (u *UA) handleRequest(stx *transaction.ServerTx, req *sip.Request, p *transport.Packet) {
	reply := func(code int, reason string, f func(*sip.Response)) {
		res := u.newResponse(req, code, reason)
		if f != nil {
			f(res)
		}
		_ = stx.Respond(res)
	}
	if !sip.IsKnownMethod(req.Method) {
		reply(501, "", func(r *sip.Response) { r.Add("Allow", allowed) })
		return
	}
	// §8.2.2.3: option tags we do not support.
	var unsupported []string
	for _, tag := range req.Values("Require") {
		if !(strings.EqualFold(tag, "100rel") && u.cfg.Rel100 != Rel100Off) {
			unsupported = append(unsupported, tag)
		}
	}
	if len(unsupported) > 0 && req.Method != sip.CANCEL {
		reply(420, "", func(r *sip.Response) { r.Add("Unsupported", strings.Join(unsupported, ", ")) })
		return
	}
	if req.To.Tag() != "" {
		u.mu.Lock()
		c := u.byDialog[dialog.IDForRequest(req)]
		u.mu.Unlock()
		if c == nil {
			if req.Method == sip.OPTIONS {
				reply(200, "", func(r *sip.Response) { u.capabilities(&r.Header) })
				return
			}
			// §12.2.2: a request for a dialog we do not know.
			reply(481, "", nil)
			return
		}
		c.handleRequest(stx, req, p)
		return
	}
	switch req.Method {
	case sip.INVITE:
		u.incomingCall(stx, req, p)
	case sip.OPTIONS:
		reply(200, "", func(r *sip.Response) { u.capabilities(&r.Header) })
	case sip.MESSAGE:
		if f := u.cfg.OnMessage; f != nil {
			f(req)
		}
		reply(200, "", nil)
	case sip.BYE, sip.PRACK, sip.UPDATE, sip.INFO:
		reply(481, "", nil)
	default:
		reply(405, "", func(r *sip.Response) { r.Add("Allow", allowed) })
	}
}

// handleACK routes an ACK for a 2xx to the call whose 2xx it acknowledges.
func (u *UA) handleACK(ack *sip.Request) {
	u.mu.Lock()
	c := u.byDialog[dialog.IDForRequest(ack)]
	u.mu.Unlock()
	if c != nil {
		c.receiveACK(ack)
	}
}

func (u *UA) bindDialog(c *Call, d *dialog.Dialog) {
	u.mu.Lock()
	u.byDialog[d.ID()] = c
	u.mu.Unlock()
	u.dlgs.Add(d)
}

func (u *UA) unbindDialog(d *dialog.Dialog) {
	u.mu.Lock()
	delete(u.byDialog, d.ID())
	u.mu.Unlock()
	u.dlgs.Remove(d.ID())
}

func (u *UA) removeCall(c *Call) {
	u.mu.Lock()
	delete(u.calls, c)
	u.mu.Unlock()
}

// --- sending ---

// hop is where a request goes: a protocol and an address, or an open
// connection.
type hop struct {
	proto  string
	remote netip.AddrPort
	host   string // for TLS server name checks
}

// sender implements transaction.Sender for requests: UDP from the
// listener, or a stream connection reused while open (RFC 3261 §18.1.1).
type sender struct {
	u   *UA
	hop hop
	d   *dialog.Dialog // records a dialed connection on the dialog

	mu   sync.Mutex
	conn *transport.Conn
}

func (u *UA) newSender(h hop, conn *transport.Conn, d *dialog.Dialog) *sender {
	return &sender{u: u, hop: h, conn: conn, d: d}
}

// Send writes one message.
func (s *sender) Send(m sip.Message) error {
	buf := m.AppendTo(make([]byte, 0, 1024))
	if s.hop.proto == transport.UDP {
		return s.u.tm.WriteTo(transport.UDP, s.u.local, s.hop.remote, buf)
	}
	c, err := s.connection()
	if err != nil {
		return err
	}
	// Send queues for the connection's writer: a peer that does not read
	// costs its connection, never the caller.
	if err = c.Send(buf); errors.Is(err, transport.ErrConnClosed) {
		s.mu.Lock()
		if s.conn == c {
			s.conn = nil
		}
		s.mu.Unlock()
		if c, err = s.connection(); err == nil {
			err = c.Send(buf)
		}
	}
	return err
}

// dialTimeout bounds one outbound dial of a sender, TLS handshake
// included.
const dialTimeout = 5 * time.Second

// connection returns the open connection, dialing one when needed. It
// dials without holding s.mu, so that Conn never waits for a dial; the
// transport makes concurrent dials to one address share one connection.
func (s *sender) connection() (*transport.Conn, error) {
	s.mu.Lock()
	if c := s.conn; c != nil {
		select {
		case <-c.Done():
			s.conn = nil
		default:
			s.mu.Unlock()
			return c, nil
		}
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.u.ctx, dialTimeout)
	defer cancel()
	c, err := s.u.tm.Dial(ctx, s.hop.proto, s.u.local, s.hop.remote, s.hop.host)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.conn = c
	s.mu.Unlock()
	if s.d != nil {
		s.d.SetConn(c)
	}
	return c, nil
}

// Conn returns the connection in use, or nil.
func (s *sender) Conn() *transport.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}

// Reliable implements transaction.Sender.
func (s *sender) Reliable() bool { return s.hop.proto != transport.UDP }

// responseSender implements transaction.Sender for responses (RFC 3261
// §18.2.2): on the connection the request came on while it is open, else
// on a new connection dialed in the background (see redial) to the
// received address and sent-by port of the top Via; over UDP from the
// socket the request arrived on to the received address and rport or
// sent-by port.
type responseSender struct {
	u *UA
	p *transport.Packet
}

// Send writes one response.
func (s *responseSender) Send(m sip.Message) error {
	res, ok := m.(*sip.Response)
	if !ok {
		return errors.New("ua: response sender given a request")
	}
	buf := res.AppendTo(make([]byte, 0, 1024))
	p := s.p
	if p.Conn != nil {
		if err := p.Conn.Send(buf); err == nil {
			return nil
		}
		def := 5060
		if p.Proto == transport.TLS {
			def = 5061
		}
		return s.u.redial(p.Proto, responseTarget(res, p, def), buf)
	}
	return s.u.tm.WriteTo(transport.UDP, p.Local, responseTarget(res, p, 5060), buf)
}

// Reliable implements transaction.Sender.
func (s *responseSender) Reliable() bool { return s.p.Proto != transport.UDP }

// maxRedials bounds the connections being reopened for responses at once.
const maxRedials = 32

// redial sends b over a new stream connection to dst in a goroutine of
// its own, so that no worker waits for a dial; with maxRedials dials under
// way already the response is dropped (RFC 3261 §18.2.2: the server SHOULD
// open a connection, not MUST), and the client's retransmission or timer
// takes over.
func (u *UA) redial(proto string, dst netip.AddrPort, b []byte) error {
	select {
	case u.redials <- struct{}{}:
	default:
		return errors.New("ua: too many connections being reopened")
	}
	ok := u.spawn(func() {
		defer func() { <-u.redials }()
		if err := u.tm.WriteTo(proto, netip.AddrPort{}, dst, b); err != nil {
			u.log.Debug("send response on a new connection", "to", dst.String(), "err", err)
		}
	})
	if !ok {
		<-u.redials
		return ErrClosed
	}
	return nil
}

// responseTarget picks the destination of a response (RFC 3261 §18.2.2).
func responseTarget(res *sip.Response, p *transport.Packet, defPort int) netip.AddrPort {
	var top *sip.Via
	if len(res.Via) > 0 {
		top = &res.Via[0]
	}
	return sip.ResponseTarget(top, p.Remote, false, defPort)
}

// stampVia records the request's source in its top Via (RFC 3261 §18.2.1).
func stampVia(req *sip.Request, p *transport.Packet) { req.StampVia(p.Remote) }

// resolveHop finds the first place a request to uri goes (see locate).
func (u *UA) resolveHop(ctx context.Context, uri sip.URI) (hop, error) {
	hs, err := u.locate(ctx, uri)
	if err != nil {
		return hop{}, err
	}
	return hs.h, nil
}

// resolveAddr finds where a request to uri goes by RFC 3263 reduced to
// A/AAAA: the URI's transport parameter or sips picks the protocol, the
// host is an IP literal or resolved within Config.ResolveTimeout, the port
// defaults to 5060 or 5061.
func (u *UA) resolveAddr(ctx context.Context, uri sip.URI) (hop, error) {
	proto := u.proto
	if t, ok := uri.Params.Get("transport"); ok {
		switch p := strings.ToUpper(t); p {
		case transport.UDP, transport.TCP, transport.TLS:
			proto = p
		}
	}
	if uri.Scheme == sip.SchemeSIPS {
		proto = transport.TLS
	}
	if proto == transport.UDP && u.proto != transport.UDP {
		proto = u.proto // no UDP socket to send from
	}
	host := uri.Hostname()
	if maddr, ok := uri.Params.Get("maddr"); ok && maddr != "" {
		host = strings.Trim(maddr, "[]")
	}
	port := uri.Port
	if port == 0 {
		port = 5060
		if proto == transport.TLS {
			port = 5061
		}
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		lctx, cancel := context.WithTimeout(ctx, u.cfg.ResolveTimeout)
		ips, lerr := u.cfg.Resolver.LookupNetIP(lctx, "ip", host)
		cancel()
		if lerr == nil && len(ips) == 0 {
			lerr = errors.New("no address")
		}
		if lerr != nil {
			return hop{}, fmt.Errorf("ua: resolve %s: %w", host, lerr)
		}
		addr = ips[0]
		for _, ip := range ips {
			if ip.Is4() == u.local.Addr().Is4() {
				addr = ip
				break
			}
		}
	}
	return hop{proto: proto, remote: netip.AddrPortFrom(addr.Unmap(), uint16(port)), host: host}, nil
}

// hopsOutside locates the next hops of a request outside a dialog: the
// outbound proxy when configured, else the first Route, else the
// Request-URI (RFC 3261 §8.1.2).
func (u *UA) hopsOutside(ctx context.Context, req *sip.Request) (*hops, error) {
	if u.server != nil {
		return u.locate(ctx, *u.server)
	}
	if len(req.Route) > 0 {
		return u.locate(ctx, req.Route[0].URI)
	}
	return u.locate(ctx, req.URI)
}

// dialogSender returns the sender for requests in d: its connection while
// open (RFC 5923 §2), else the next hop from the route set or remote
// target (RFC 3261 §12.2.1.1, §8.1.2).
func (u *UA) dialogSender(ctx context.Context, d *dialog.Dialog, req *sip.Request) (*sender, error) {
	if c := d.Conn(); c != nil {
		return u.newSender(hop{proto: c.Proto(), remote: c.RemoteAddr()}, c, d), nil
	}
	var next sip.URI
	rs := d.RouteSet()
	switch {
	case len(rs) > 0 && rs[0].URI.Params.Has("lr"):
		next = rs[0].URI
	default:
		next = req.URI // no route set, or a strict router in the Request-URI
	}
	h, err := u.resolveHop(ctx, next)
	if err != nil {
		return nil, err
	}
	var conn *transport.Conn
	if h.proto != transport.UDP {
		conn = u.tm.Lookup(h.proto, h.remote)
	}
	return u.newSender(h, conn, d), nil
}

// via returns a top Via for a request over proto, with a new branch and
// rport (RFC 3261 §8.1.1.7, RFC 3581 §3).
func (u *UA) via(proto string) sip.Via {
	return sip.Via{Transport: proto, Host: u.contact.URI.Host, Port: u.contact.URI.Port,
		Params: sip.Params(";branch=" + sip.NewBranchID() + ";rport")}
}

// stamp finishes a request before it is sent: Via, Contact where the
// method needs one, and User-Agent.
func (u *UA) stamp(req *sip.Request, proto string) {
	req.Via = []sip.Via{u.via(proto)}
	if req.MaxForwards < 0 {
		req.MaxForwards = 70
	}
	switch req.Method {
	case sip.INVITE, sip.UPDATE, sip.REGISTER, sip.SUBSCRIBE, sip.REFER, sip.NOTIFY:
		if len(req.Contact) == 0 {
			req.Contact = []sip.Address{u.contact}
		}
	}
	if !req.Has("User-Agent") {
		req.Add("User-Agent", u.cfg.UserAgent)
	}
}

// --- helpers ---

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// addrPortOf converts the listener's and the probe socket's address (UDP
// or TCP; a TLS listener reports a TCP address).
func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// parseTarget turns "sip:bob@host", "bob@host:port", "host:port" or
// "tel:+1..." into a URI; a bare user@host gets the sip scheme.
func parseTarget(s, defaultHost string) (sip.URI, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return sip.URI{}, errors.New("empty address")
	}
	if strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">") {
		s = s[1 : len(s)-1]
	}
	lower := strings.ToLower(s)
	if !strings.HasPrefix(lower, "sip:") && !strings.HasPrefix(lower, "sips:") && !strings.HasPrefix(lower, "tel:") {
		if !strings.Contains(s, "@") && defaultHost != "" && !strings.ContainsAny(s, ".:[") {
			s = s + "@" + defaultHost
		}
		s = "sip:" + s
	}
	return sip.ParseURI(s)
}

// ParseTarget turns what a person types ("bob@example.test",
// "sip:bob@127.0.0.1:5062", "127.0.0.1:5062") into a URI.
func ParseTarget(s string) (sip.URI, error) { return parseTarget(s, "") }

// StatusError is a final response >= 300 to a request (RFC 3261 §8.1.3).
type StatusError struct {
	Code     int
	Reason   string
	Response *sip.Response
}

// Error implements error.
func (e *StatusError) Error() string { return fmt.Sprintf("ua: %d %s", e.Code, e.Reason) }

func statusError(res *sip.Response) error {
	return &StatusError{Code: res.StatusCode, Reason: res.Reason, Response: res}
}
