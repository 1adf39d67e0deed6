// Package server wires transports, message parsing and the handler chain
// into a running SIP server, and owns its configuration and lifecycle.
package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hlas-voip/hlas/acc"
	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/capture/hep"
	"github.com/hlas-voip/hlas/internal/shard"
	"github.com/hlas-voip/hlas/media"
	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/registrar"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
	"github.com/hlas-voip/hlas/sip/transport"
	"github.com/hlas-voip/hlas/store"
	"github.com/hlas-voip/hlas/stund"
	"github.com/hlas-voip/hlas/xcap"
)

// Version is the hlas release.
const Version = "0.1.0"

// Server is a running SIP server: listeners, a bounded worker pool, and the
// handler chain that answers requests.
type Server struct {
	cfg     Config
	log     *slog.Logger
	tm      *transport.Manager
	batches sync.Pool // *eventBatch: NOTIFY batches with their buffers (events.go)
	// resBufs holds *sip.ResponseBuffer: the memory of responses handled
	// where they are read (enqueue), given back once handled.
	resBufs sync.Pool
	handler Handler
	proxy   *proxy.Proxy
	reg     *prometheus.Registry
	// wsFlows removes bindings over closed WebSockets; nil without ws or
	// wss listeners.
	wsFlows *wsFlows
	// media relays the RTP of calls (media section); nil: none.
	media    media.Engine
	mediaEnd mediaEnder
	met      *metrics

	txl     *transaction.Layer
	queues  []chan work // one per worker; a call's messages share one
	workers sync.WaitGroup
	redials chan struct{}  // semaphore of background redials
	async   sync.WaitGroup // background redials
	// asyncMu orders async.Add against shutdown's async.Wait: the CDR
	// writer may release a response (and a redial) while the server
	// stops; noAsync says no redial may start any more.
	asyncMu sync.Mutex
	noAsync bool
	bufs    sync.Pool
	seed    maphash.Seed // of stateless To tags
	flowKey []byte       // signs the proxy's flow tokens; derived from the auth secret

	// now reads the monotonic clock that stamps messages as they arrive
	// (work.at), for MaxQueueDelay; tests replace it before Start.
	now func() time.Duration
	// writeTo sends an encoded message without a connection: the
	// transport's WriteTo, or a recorder in tests that run without sockets.
	writeTo func(proto string, local, remote netip.AddrPort, b []byte) error
	// gcPercent and memLimit are what Start replaced (Config.Runtime), so
	// that Close can put them back.
	gcPercent, memLimit *int64

	// supported lists the option tags hlas implements (Supported header);
	// a Require or Proxy-Require naming anything else gets 420: path
	// (RFC 3327) and outbound (RFC 5626), which the registrar implements.
	supported []string

	// store keeps subscribers and bindings; registrar answers REGISTER and
	// is the location service; auth checks digest credentials.
	store     store.Store
	registrar *registrar.Registrar
	auth      *auth.Authenticator
	// acc makes call detail records (nil when accounting is off); it
	// writes them to store.
	acc *acc.Accounting
	// nat pings bindings behind NATs (server/nat.go); nil when off.
	nat *natKeeper
	// stun answers STUN Binding requests (server/stun.go); nil when off.
	stun *stund.Server
	// capture sends every message to a HEP collector (server/capture.go);
	// nil when off.
	capture *hep.Sender
	// edge is the flood guard, the bans, the detector of scanners and the
	// call limits (server/security.go); bansVersion the store's ban
	// version it loaded at start.
	edge        *edge
	bansVersion int64
	// ident adds and checks caller identity (server/identity.go).
	ident *identity
	// events is the notifier and the publications (server/events.go); nil
	// when events.enabled is false. dialogs sees the proxied calls for the
	// dialog package (server/event_dialog.go).
	events  *events
	dialogs *dialogWatch

	// api is the REST API's listener (api.go), nil when off; apiEvents
	// feeds its event stream (apievents.go), nil when the API is off.
	api       *apiServer
	apiEvents *apiEvents
	// orig is click-to-call (originate.go), nil when the API is off; set
	// after the workers, which read it, have started.
	orig atomic.Pointer[originator]

	// reload is the state of Reload (server/reload.go).
	reload reloadState

	mu    sync.Mutex
	addrs []Addr
	// bound is addrs once Start has bound them all, read without mu:
	// workers ask for it (a subscription's Contact) while Close holds mu
	// waiting for them.
	bound atomic.Pointer[[]Addr]
	self  selfAddrs
	http  *http.Server

	// The XCAP server (xcap.go), nil when off.
	xcap     *xcap.Server
	xcapLn   net.Listener
	xcapHTTP *http.Server
	httpLn   net.Listener
	started  bool
	closed   bool
}

// Addr is a bound listener.
type Addr struct {
	Proto string // UDP, TCP or TLS
	Addr  netip.AddrPort
}

// New checks cfg and builds a server; Start binds its listeners.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:  cfg,
		log:  log.With("feature", "server"),
		reg:  prometheus.NewRegistry(),
		seed: maphash.MakeSeed(),
		txl: transaction.New(transaction.Config{
			T1: cfg.T1, T2: cfg.T2, T4: cfg.T4, MaxServer: cfg.MaxTransactions,
			Logger: log.With("feature", "transaction"),
		}),
	}
	s.now = monotonicClock()
	if ls, err := cfg.Listeners(); err == nil {
		for _, l := range ls {
			if l.Proto == "ws" || l.Proto == "wss" {
				s.wsFlows = newWSFlows(s)
				break
			}
		}
	}
	s.redials = make(chan struct{}, maxRedials)
	per := max(cfg.QueueSize/cfg.Workers, 1)
	s.queues = make([]chan work, cfg.Workers)
	for i := range s.queues {
		s.queues[i] = make(chan work, per)
	}
	s.bufs.New = func() any { b := make([]byte, 0, 2048); return &b }
	s.met = newMetrics(s.reg, s.queued, s.txl)
	// The Go runtime's and the process's own figures (go_*, process_*),
	// which operators' dashboards expect beside ours.
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	tcfg := transport.Config{
		MaxMessageSize:    cfg.MaxMessageSize,
		IdleTimeout:       cfg.IdleTimeout,
		MaxConns:          cfg.MaxConns,
		MaxConnsPerSource: cfg.MaxConnsPerSource,
		MessageTimeout:    cfg.MessageTimeout,
		WebSocket:         cfg.WebSocket,
		Logger:            log,
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("config tls_cert/tls_key: %w", err)
		}
		tcfg.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if cfg.TLSClientCA != "" {
			pool, err := loadPool(cfg.TLSClientCA)
			if err != nil {
				return nil, fmt.Errorf("config tls_client_ca: %w", err)
			}
			// Mutual TLS where the peer offers a certificate; phones
			// without one still connect (and authenticate by digest).
			tcfg.TLSConfig.ClientAuth = tls.VerifyClientCertIfGiven
			tcfg.TLSConfig.ClientCAs = pool
		}
	}
	if cfg.API.On() {
		s.apiEvents = newAPIEvents(s, cfg.API.EventsBuffer)
	}
	edge, err := newEdge(s, cfg.Security, log)
	if err != nil {
		return nil, fmt.Errorf("config %w", err)
	}
	s.edge = edge
	tcfg.Admit = edge.admit
	s.newSTUN(&tcfg, log)
	if err := s.newCapture(&tcfg, log); err != nil {
		return nil, err
	}
	s.tm = transport.New(tcfg, transport.HandlerFunc(s.enqueue))
	s.writeTo = s.tm.WriteTo
	s.reg.MustRegister(s.tm)

	s.supported = []string{"path", "outbound"}
	if err := s.openRegistrar(log); err != nil {
		return nil, err
	}
	{
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s.bansVersion, err = s.edge.load(ctx, s.store)
		cancel()
		if err != nil {
			s.closeRegistrar()
			return nil, fmt.Errorf("store: bans: %w", err)
		}
	}

	ls, err := cfg.Listeners()
	if err != nil {
		s.closeRegistrar()
		return nil, err
	}
	dnsr, err := newResolver(cfg.DNS, ls, s.reg)
	if err != nil {
		s.closeRegistrar()
		return nil, fmt.Errorf("config dns: %w", err)
	}
	if err := s.openAccounting(log); err != nil {
		s.closeRegistrar()
		return nil, err
	}
	if s.media, err = s.openMedia(log); err != nil {
		s.closeRegistrar()
		return nil, err
	}
	acct := s.accounting()
	if cfg.Events.on() {
		// The dialog event package watches the calls on their way to the
		// accounting (server/event_dialog.go).
		s.dialogs = newDialogWatch(s, acct)
		acct = s.dialogs
	}
	if s.apiEvents != nil {
		acct = &callWatch{ae: s.apiEvents, next: acct, withAcc: s.acc != nil}
	}
	px, err := proxy.New(cfg.Routing, proxy.Env{
		Media: s.media, MediaPolicy: cfg.Media.Relay,
		DNS: dnsr, FlowKey: s.flowKey,
		Locator: locator{s}, Identity: auth.URIFromContext,
		Transactions: s.txl, Network: s.tm, Domains: cfg.Domains, ServerName: cfg.ServerName,
		IsSelf: func(u *sip.URI) bool { return s.self.isSelf(u) },
		Logger: log, Registerer: s.reg, Accounting: acct,
		// The API lists and hangs up the calls the proxy tracks.
		TrackCalls: cfg.API.On(), CallMaxAge: cfg.Accounting.MaxDuration,
	})
	if err != nil {
		if s.media != nil {
			_ = s.media.Close()
		}
		s.closeRegistrar()
		return nil, err
	}
	s.proxy = px
	if s.events, err = s.openEvents(log); err != nil {
		px.Close()
		if s.media != nil {
			_ = s.media.Close()
		}
		s.closeRegistrar()
		return nil, fmt.Errorf("config events: %w", err)
	}
	if s.xcap, err = s.openXCAP(log); err != nil {
		s.events.close()
		px.Close()
		if s.media != nil {
			_ = s.media.Close()
		}
		s.closeRegistrar()
		return nil, fmt.Errorf("config xcap: %w", err)
	}
	if s.ident, err = newIdentity(s, cfg.Identity, log); err != nil {
		px.Close()
		if s.media != nil {
			_ = s.media.Close()
		}
		s.closeRegistrar()
		return nil, err
	}
	s.nat = newNATKeeper(s, log)
	s.mediaEnd.px.Store(px)

	// The handler chain, in the order requests meet it.
	s.handler = Chain(notFound(s),
		s.sanity,           // 505, 400 CSeq mismatch, 501, 416
		s.accRegister,      // records of failed REGISTERs (accounting.failed_registers)
		s.proxy.Preprocess, // RFC 3261 §16.4: strict-route fix-up, our own Route entries removed
		// REGISTER for our domains: authentication (401, 400, 403; §22.2,
		// §10.3 steps 3-4), then the registrar (420, 400, 404, 423, 200; §10.3)
		s.auth.Middleware(s.registerTarget),
		s.registrar.Middleware,
		s.eventsInDialog,   // SUBSCRIBE in the notifier's dialogs: refresh, unsubscribe (RFC 6665)
		s.localUAS,         // requests to the server itself: 420, OPTIONS, 405, 501
		s.accCalls,         // records of INVITEs answered here without forwarding (server/acc.go)
		s.proxyCheck,       // requests to route on: 483, 420 Proxy-Require
		s.proxyAuth,        // requests from our users: 407 (§22.3); trusted peers pass
		s.accIdentity,      // the authenticated user, for those records
		s.callLimits,       // toll fraud: concurrent calls, call rates, costly prefixes (486, 403)
		s.ident.Middleware, // P-Asserted-Identity; STIR/SHAKEN signing and verification (428, 436-438)
		s.eventsStep,       // SUBSCRIBE and PUBLISH for our users: notifier and compositor (489, 423, 412, 403)
		s.proxy.Route,      // 482 loops, 403 caller-ID spoofing, in-dialog routing, rules, location service
	)
	return s, nil
}

// Registry returns the server's Prometheus registry.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Start binds every listener and starts the workers. It returns once the
// server is ready to answer.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("server: already started")
	}
	s.started = true
	s.applyRuntime()
	ls, err := s.cfg.Listeners()
	if err != nil {
		return err
	}
	if err := s.startCapture(); err != nil {
		s.shutdownLocked()
		return err
	}
	// Packets that arrive while the other listeners bind wait in the queue:
	// workers start only once the server knows all its own addresses.
	for _, l := range ls {
		a, err := s.tm.Listen(l.Proto, l.Addr)
		if err != nil {
			s.shutdownLocked()
			return fmt.Errorf("listen %s:%s: %w", l.Proto, l.Addr, err)
		}
		ap := addrPort(a)
		s.addrs = append(s.addrs, Addr{Proto: strings.ToUpper(l.Proto), Addr: ap})
	}
	bound := append([]Addr(nil), s.addrs...)
	s.bound.Store(&bound)
	s.self = newSelfAddrs(s.cfg.Domains, s.addrs)
	pls := make([]proxy.Listener, len(s.addrs))
	for i, a := range s.addrs {
		pls[i] = proxy.Listener{Proto: a.Proto, Addr: a.Addr}
	}
	s.proxy.SetListeners(pls)
	if err := s.startSTUN(ls); err != nil {
		s.shutdownLocked()
		return err
	}
	s.registrar.Start()
	s.edge.start(s.store, s.bansVersion)
	s.events.start()
	s.nat.start()
	for _, q := range s.queues {
		s.workers.Add(1)
		go s.work(q)
	}
	if err := s.startXCAP(); err != nil {
		s.shutdownLocked()
		return err
	}
	if err := s.startAPI(); err != nil {
		s.shutdownLocked()
		return err
	}
	if s.cfg.MetricsListen != "" {
		ln, err := net.Listen("tcp", s.cfg.MetricsListen)
		if err != nil {
			s.shutdownLocked()
			return fmt.Errorf("metrics_listen %s: %w", s.cfg.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
		if s.cfg.Debug.PProf {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		s.httpLn = ln
		s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = s.http.Serve(ln) }()
		s.log.Info("metrics", "addr", ln.Addr().String())
	}
	return nil
}

// Addrs returns the bound listeners (none before Start). It takes no
// lock that Close holds, so a worker may call it while the server shuts
// down.
func (s *Server) Addrs() []Addr {
	if b := s.bound.Load(); b != nil {
		return append([]Addr(nil), (*b)...)
	}
	return nil
}

// MetricsAddr returns the bound metrics address, or "".
func (s *Server) MetricsAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// Run starts the server and serves until ctx is done, then shuts down.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	return s.Close()
}

// Close stops the listeners, lets the workers finish what is queued, and
// waits for every goroutine the server started.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shutdownLocked()
}

func (s *Server) shutdownLocked() error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.closeAPI()
	s.closeOriginator()
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.http.Shutdown(ctx)
		cancel()
	}
	if s.xcapHTTP != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.xcapHTTP.Shutdown(ctx)
		cancel()
	}
	s.nat.close()
	// After the transport has closed no reader calls enqueue any more, so
	// the queue can be closed and drained.
	err := errors.Join(s.tm.Close(), s.closeSTUN(), s.closeCapture())
	for _, q := range s.queues {
		close(q)
	}
	s.workers.Wait()
	s.asyncMu.Lock()
	s.noAsync = true // the transport is closed: a redial could not send
	s.asyncMu.Unlock()
	s.async.Wait()
	s.proxy.Close()
	if s.media != nil {
		_ = s.media.Close()
	}
	s.edge.close()
	s.events.close()
	s.closeRegistrar()
	s.restoreRuntime()
	s.log.Info("stopped")
	return err
}

func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort()
	case *net.TCPAddr:
		return a.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// work is one received message, parsed in the reader goroutine so that
// it can be routed to the worker that owns its call.
type work struct {
	p   *transport.Packet
	msg sip.Message
	err error
	at  time.Duration // when it arrived, on Server.now's clock
	// For a response: matched says the reader looked up its client
	// transaction, ctx is what it found (nil: none).
	matched bool
	ctx     *transaction.ClientTx
}

// enqueue is the transport's handler: it never blocks. It parses the
// message (cheap next to queueing) and queues it for the worker chosen by
// its Call-ID, so the messages of one call are processed in arrival order
// (a CANCEL never overtakes its INVITE). It stamps the arrival time, with
// which the worker refuses what waited longer than MaxQueueDelay. When the
// queue is full a request is answered 503 with Retry-After right here, and
// anything else is dropped and counted.
func (s *Server) enqueue(p *transport.Packet) {
	at := s.now()
	rb, _ := s.resBufs.Get().(*sip.ResponseBuffer)
	if rb == nil {
		rb = new(sip.ResponseBuffer)
	}
	msg, err := sip.ParseInto(p.Data, rb)
	if !rb.Holds(msg) { // a request, or no message: rb is still free
		rb.Reset()
		s.resBufs.Put(rb)
	}
	if req, ok := msg.(*sip.Request); ok && !s.edge.request(p, req) {
		return // a flood or a scanner: no answer
	}
	w := work{p: p, msg: msg, err: err, at: at}
	if res, ok := msg.(*sip.Response); ok && err == nil && !p.Oversize && p.BadFraming == "" {
		// A response to one of the server's own requests whose handler
		// never blocks (a NOTIFY's) is run here: the hand-off to a worker
		// would cost more than the handler (ClientOptions.Inline). Such
		// a handler keeps nothing of the response, so its memory is
		// used again for the next.
		w.matched, w.ctx = true, s.txl.Match(res)
		if w.ctx != nil && w.ctx.Inline() {
			s.met.responsesIn.Inc()
			w.ctx.Receive(res)
			rb.Reset()
			s.resBufs.Put(rb)
			return
		}
	}
	q := s.queues[0]
	if msg != nil {
		q = s.queues[shard.Of(msg.Head().CallID, len(s.queues))]
	}
	select {
	case q <- w:
		return
	default:
	}
	s.met.overload.Inc()
	req, ok := msg.(*sip.Request)
	if err != nil || !ok || req.Method == sip.ACK || len(req.Via) == 0 {
		return
	}
	s.stampVia(req, p)
	_ = s.send(p, s.unavailable(req))
}

// retryAfter is the Retry-After of the server's 503s, in seconds (RFC 3261
// §21.5.4, §20.33).
const retryAfter = "5"

// unavailable builds the 503 with Retry-After that refuses a request when
// the server is overloaded.
func (s *Server) unavailable(req *sip.Request) *sip.Response {
	res := s.response(req, 503, "")
	res.Add("Retry-After", retryAfter)
	return res
}

// sheddable reports whether a request that waited longer than
// MaxQueueDelay is refused with 503 rather than processed: a request that
// starts something new, outside a dialog. ACK and CANCEL end
// transactions, BYE ends a call, and in-dialog requests (a To tag) belong
// to calls and subscriptions already accepted; refusing them would waste
// the work done for those (RFC 6357 §4 prefers them under overload).
func sheddable(req *sip.Request) bool {
	switch req.Method {
	case sip.ACK, sip.CANCEL, sip.BYE:
		return false
	}
	return req.To.Tag() == ""
}

// monotonicClock returns a clock of the time elapsed since it was made:
// one read of the monotonic clock, cheap enough to stamp every message.
func monotonicClock() func() time.Duration {
	epoch := time.Now()
	return func() time.Duration { return time.Since(epoch) }
}

func (s *Server) queued() float64 {
	n := 0
	for _, q := range s.queues {
		n += len(q)
	}
	return float64(n)
}

func (s *Server) work(q chan work) {
	defer s.workers.Done()
	ctx := context.Background()
	for w := range q {
		s.process(ctx, w)
	}
}

// process runs one message: requests through the transaction layer and the
// handler chain, responses to their client transaction. A new request that
// waited longer than MaxQueueDelay for its worker is refused with 503
// (sheddable); so are all new requests while the transaction table is full.
func (s *Server) process(ctx context.Context, w work) {
	p, msg, err := w.p, w.msg, w.err
	waited := s.now() - w.at
	s.met.queueDelay.Observe(waited.Seconds())
	if err != nil || p.Oversize || p.BadFraming != "" {
		s.reject(p, msg, err)
		return
	}
	switch m := msg.(type) {
	case *sip.Response:
		// Never shed: a response completes a transaction.
		s.met.responsesIn.Inc()
		if !w.matched {
			w.ctx = s.txl.Match(m)
		}
		if w.ctx != nil {
			w.ctx.Receive(m)
		} else if !s.proxy.HandleResponse(m, packetFlow(p)) {
			// A response matching no client transaction and not the
			// proxy's to forward statelessly (RFC 3261 §16.7, §16.11) is
			// stray (§18.1.2): dropped.
			s.met.dropped.WithLabelValues("stray_response").Inc()
		}
	case *sip.Request:
		s.met.requestReceived(m.Method)
		s.stampVia(m, p)
		if p.Proto == transport.UDP && len(p.Data) > s.cfg.MaxMessageSize {
			s.reply(p, m, 513, "")
			return
		}
		late := waited > s.cfg.MaxQueueDelay && sheddable(m)
		if s.proxy.Mode() == proxy.Stateless {
			// RFC 3261 §16.11: no transaction state at all.
			if m.Method == sip.ACK {
				if !s.ackOfStateless(m) {
					s.proxy.HandleACK(ctx, m, packetFlow(p))
				}
				return
			}
			if late {
				s.met.queueDelayed.Inc()
				_ = s.send(p, s.unavailable(m))
				return
			}
			s.serve(ctx, &statelessTx{srv: s, p: p}, m)
			return
		}
		// A late request still goes through the transaction layer: a
		// retransmission of one being processed (or answered) is absorbed
		// as usual, and must not get a 503 contradicting its answer.
		tx, disp := s.txl.HandleRequest(m, s.senderFor(p, m.Via))
		switch disp {
		case transaction.NewRequest:
			if late {
				// Refused statelessly: the transaction leaves the table
				// with the 503, so the table does not fill with refusals
				// (RespondStateless).
				s.met.queueDelayed.Inc()
				_ = tx.RespondStateless(s.unavailable(m))
				return
			}
			s.serve(ctx, &serverTx{srv: s, tx: tx, p: p}, m)
		case transaction.Overloaded:
			// max_transactions reached (retransmissions of live ones
			// still match): 503, statelessly.
			s.met.overload.Inc()
			_ = s.send(p, s.unavailable(m))
		case transaction.PassACK:
			// The ACK to a 2xx belongs to no transaction: the proxy
			// forwards it along the route set (RFC 3261 §16.7 step 10).
			// The ACK to a final response we sent statelessly (a 407
			// challenge, say) ends here.
			if !s.ackOfStateless(m) {
				s.proxy.HandleACK(ctx, m, packetFlow(p))
			}
		}
	}
}

// serve runs the handler chain. A panic in a handler is a bug, not a
// reason to take the server down: it is logged with its stack and the
// request gets 500 (if nothing answered it yet).
func (s *Server) serve(ctx context.Context, tx ServerTx, req *sip.Request) {
	defer func() {
		if r := recover(); r != nil {
			s.met.dropped.WithLabelValues("handler_panic").Inc()
			s.log.Error("handler panic", "method", req.Method, "call_id", req.CallID, "panic", r, "stack", string(debug.Stack()))
			_ = tx.RespondStateless(s.response(req, 500, ""))
		}
	}()
	s.handler.ServeSIP(ctx, tx, req)
}

// reject answers a message that could not be accepted: 513 when too large,
// 400 with a Warning saying what is wrong when the request still has a
// usable top Via, and otherwise drops it and counts why.
func (s *Server) reject(p *transport.Packet, msg sip.Message, err error) {
	req, _ := msg.(*sip.Request)
	if req == nil || len(req.Via) == 0 || req.Method == sip.ACK {
		reason := "unparsable"
		if _, isResp := msg.(*sip.Response); isResp {
			reason = "bad_response"
		} else if req != nil {
			reason = "no_via"
		}
		s.met.dropped.WithLabelValues(reason).Inc()
		s.log.Debug("dropped", "from", p.Remote, "proto", p.Proto, "why", errText(err, p))
		return
	}
	s.met.requestReceived(req.Method)
	s.stampVia(req, p)
	if p.Oversize {
		s.reply(p, req, 513, "")
		return
	}
	why := errText(err, p)
	res := s.response(req, 400, "")
	res.Add("Warning", `399 hlas "`+warnEscape(why)+`"`)
	s.log.Debug("bad request", "from", p.Remote, "proto", p.Proto, "why", why)
	_ = s.send(p, res)
}

func errText(err error, p *transport.Packet) string {
	if p.BadFraming != "" {
		return p.BadFraming
	}
	var pe *sip.ParseError
	if errors.As(err, &pe) {
		return pe.Reason
	}
	if err != nil {
		return err.Error()
	}
	if p.Oversize {
		return "message too large"
	}
	return "malformed message"
}

func warnEscape(s string) string {
	if !strings.ContainsAny(s, `"\`) {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

// stampVia records the request's source in its top Via (RFC 3261 §18.2.1).
func (s *Server) stampVia(req *sip.Request, p *transport.Packet) { req.StampVia(p.Remote) }

// response builds a response with the Server header and, except for 100, a
// To tag (RFC 3261 §8.2.6.2). Without dialog state the tag is derived from
// the request, so retransmissions of a request get the same tag.
func (s *Server) response(req *sip.Request, code int, reason string) *sip.Response {
	res := sip.NewResponse(req, code, reason)
	if code > 100 && !res.To.IsZero() && res.To.Tag() == "" {
		res.To.Params = res.To.Params.Set("tag", s.statelessTag(req))
	}
	res.Add("Server", s.cfg.ServerName)
	return res
}

// ackOfStateless reports whether ack acknowledges a non-2xx final
// response this server sent without a transaction: it has the same
// Call-ID, From tag and branch as the INVITE (RFC 3261 §17.1.1.3), so its
// To tag is the one statelessTag gave that response. Such an ACK is
// hop-by-hop and must not be forwarded (RFC 3261 §16.11, as Kamailio's sl
// module filters the ACKs of its own replies).
func (s *Server) ackOfStateless(ack *sip.Request) bool {
	tag := ack.To.Tag()
	if tag == "" {
		return false
	}
	n, err := strconv.ParseUint(tag, 36, 64)
	return err == nil && n == s.statelessHash(ack)
}

// statelessTag derives the To tag of a response from the request, keyed
// with a random secret, so that retransmissions get the same tag without
// any state and tags cannot be predicted (RFC 3261 §19.3).
func (s *Server) statelessTag(req *sip.Request) string {
	return strconv.FormatUint(s.statelessHash(req), 36)
}

// statelessHash hashes the Call-ID, the From tag and the top Via branch
// with the server's own random seed (hash/maphash: unpredictable without
// the seed, and without allocating): every ACK a 2xx gets is checked
// against it.
func (s *Server) statelessHash(req *sip.Request) uint64 {
	var h maphash.Hash
	h.SetSeed(s.seed)
	h.WriteString(req.CallID)
	h.WriteByte(0)
	h.WriteString(req.From.Tag())
	h.WriteByte(0)
	h.WriteString(branchOf(req))
	return h.Sum64()
}

func branchOf(req *sip.Request) string {
	if len(req.Via) > 0 {
		return req.Via[0].Branch()
	}
	return ""
}

// reply sends a response with the default reason phrase.
func (s *Server) reply(p *transport.Packet, req *sip.Request, code int, reason string) {
	_ = s.send(p, s.response(req, code, reason))
}

// send writes a stateless response back the way its request came.
func (s *Server) send(p *transport.Packet, res *sip.Response) error {
	return s.senderFor(p, res.Via).Send(res)
}

// senderFor fixes where the responses to a request go, per RFC 3261
// §18.2.2 and RFC 3581: on the connection the request came on while it is
// open (else a new connection to the received address and the sent-by
// port); over UDP to the received address (or sent-by host) and to the
// rport (with a value), or else the sent-by port, default 5060, from the
// socket the request arrived on. vias is the request's (stamped) Via list.
func (s *Server) senderFor(p *transport.Packet, vias []sip.Via) *packetSender {
	ps := &packetSender{s: s, proto: p.Proto, local: p.Local, remote: p.Remote, conn: p.Conn}
	var top *sip.Via
	if len(vias) > 0 {
		top = &vias[0]
	}
	if p.Conn != nil {
		def := 5060
		if p.Proto == transport.TLS {
			def = 5061
		}
		ps.dst = sip.ResponseTarget(top, p.Remote, false, def)
	} else {
		ps.dst = sip.ResponseTarget(top, p.Remote, s.cfg.ForceRPort, 5060)
	}
	return ps
}

// packetSender sends the responses of one request. It keeps only the
// addresses, not the request, so a transaction waiting 32 s in Completed
// holds nothing but its response bytes.
type packetSender struct {
	s      *Server
	proto  string
	local  netip.AddrPort
	remote netip.AddrPort
	conn   *transport.Conn
	dst    netip.AddrPort
}

// Send encodes and sends a response.
func (ps *packetSender) Send(m sip.Message) error {
	res, ok := m.(*sip.Response)
	if !ok {
		return errors.New("server: a server transaction sends responses only")
	}
	if res.StatusCode >= 403 && res.Get("Server") == ps.s.cfg.ServerName {
		// Answers of the server's own only (they carry its Server
		// header): a carrier's 404s relayed to a customer are no sign
		// of scanning by the customer.
		ps.s.edge.refused(ps.remote.Addr(), res.StatusCode)
	}
	bp := ps.s.bufs.Get().(*[]byte)
	buf := m.AppendTo((*bp)[:0])
	err := ps.SendWire(buf)
	if cap(buf) <= 64<<10 {
		*bp = buf[:0]
		ps.s.bufs.Put(bp)
	}
	return err
}

// SendWire sends an encoded response. It never waits on a peer: stream
// writes are queued on the connection (transport.Conn.Send), and when the
// request's connection has closed, the new connection of §18.2.2 is dialed
// by a bounded set of goroutines, not by the worker.
func (ps *packetSender) SendWire(b []byte) error {
	ps.s.met.responseSent(b)
	var err error
	if ps.conn != nil {
		if err = ps.conn.Send(b); err == nil {
			return nil
		}
		if errors.Is(err, transport.ErrConnClosed) {
			return ps.s.redial(ps.proto, ps.dst, b)
		}
	} else {
		err = ps.s.writeTo(transport.UDP, ps.local, ps.dst, b)
	}
	if err != nil {
		ps.s.met.sendError.Inc()
		ps.s.log.Debug("send response", "to", ps.dst, "err", err)
	}
	return err
}

// maxRedials bounds the goroutines dialing back to clients whose
// connection closed before their response was ready.
const maxRedials = 32

// redial sends b over a new stream connection to dst in the background;
// when maxRedials dials are already under way the response is dropped
// (RFC 3261 §18.2.2 says the server SHOULD open a connection, not MUST).
func (s *Server) redial(proto string, dst netip.AddrPort, b []byte) error {
	select {
	case s.redials <- struct{}{}:
	default:
		s.met.sendError.Inc()
		return errors.New("server: too many connections being reopened")
	}
	s.asyncMu.Lock()
	if s.noAsync {
		s.asyncMu.Unlock()
		<-s.redials
		s.met.sendError.Inc()
		return errors.New("server: stopping")
	}
	s.async.Add(1)
	s.asyncMu.Unlock()
	b = append([]byte(nil), b...)
	go func() {
		defer s.async.Done()
		defer func() { <-s.redials }()
		if err := s.writeTo(proto, netip.AddrPort{}, dst, b); err != nil {
			s.met.sendError.Inc()
			s.log.Debug("send response on a new connection", "to", dst, "err", err)
		}
	}()
	return nil
}

// Reliable reports a stream transport.
func (ps *packetSender) Reliable() bool { return ps.conn != nil }

// serverTx adapts a transaction.ServerTx to the handler chain's ServerTx.
type serverTx struct {
	srv *Server
	tx  *transaction.ServerTx
	p   *transport.Packet
}

func (t *serverTx) Respond(res *sip.Response) error { return t.tx.Respond(res) }
func (t *serverTx) RespondStateless(res *sip.Response) error {
	return t.tx.RespondStateless(res)
}
func (t *serverTx) Source() netip.AddrPort { return t.p.Remote }

// PeerNames are the names in the verified certificate of a TLS peer
// (proxy.PeerNamer: trust by certificate).
func (t *serverTx) PeerNames() []string { return peerNames(t.p) }
func (t *serverTx) Transport() string   { return t.p.Proto }

// LocalAddr and Conn tell the registrar the flow a REGISTER came on.
func (t *serverTx) LocalAddr() netip.AddrPort { return t.p.Local }
func (t *serverTx) Conn() *transport.Conn     { return t.p.Conn }

// Flow and OnCancel give the proxy the request's flow and its CANCEL
// (proxy.FlowTx, proxy.CancelTx).
func (t *serverTx) Flow() proxy.Flow  { return packetFlow(t.p) }
func (t *serverTx) OnCancel(f func()) { t.tx.OnCancel(f) }

func packetFlow(p *transport.Packet) proxy.Flow {
	return proxy.Flow{Proto: p.Proto, Local: p.Local, Remote: p.Remote, Conn: p.Conn}
}

// statelessTx answers a request without a transaction, in the proxy's
// stateless mode (RFC 3261 §16.11).
type statelessTx struct {
	srv *Server
	p   *transport.Packet
}

func (t *statelessTx) Respond(res *sip.Response) error          { return t.srv.send(t.p, res) }
func (t *statelessTx) RespondStateless(res *sip.Response) error { return t.srv.send(t.p, res) }
func (t *statelessTx) Source() netip.AddrPort                   { return t.p.Remote }
func (t *statelessTx) PeerNames() []string                      { return peerNames(t.p) }
func (t *statelessTx) Transport() string                        { return t.p.Proto }
func (t *statelessTx) Flow() proxy.Flow                         { return packetFlow(t.p) }

// selfAddrs answers "is this host:port me?" for Request-URIs.
type selfAddrs struct {
	hosts map[string]bool // lower-case domains, host names, IP literals
	ports map[int]bool
}

func newSelfAddrs(domains []string, addrs []Addr) selfAddrs {
	sa := selfAddrs{hosts: map[string]bool{"localhost": true}, ports: map[int]bool{}}
	for _, d := range domains {
		sa.hosts[strings.ToLower(d)] = true
	}
	if h, err := os.Hostname(); err == nil {
		sa.hosts[strings.ToLower(h)] = true
	}
	wildcard := false
	for _, a := range addrs {
		sa.ports[int(a.Addr.Port())] = true
		if a.Addr.Addr().IsUnspecified() {
			wildcard = true
			continue
		}
		sa.hosts[a.Addr.Addr().Unmap().String()] = true
	}
	if wildcard {
		if ifaddrs, err := net.InterfaceAddrs(); err == nil {
			for _, ia := range ifaddrs {
				if pfx, err := netip.ParsePrefix(ia.String()); err == nil {
					sa.hosts[pfx.Addr().Unmap().String()] = true
				}
			}
		}
	}
	return sa
}

// isSelf reports whether a URI host (and port, when given) is this server.
// A host as the table holds it (a domain in lower case, an IP literal in
// canonical form) is looked up as it is; only other spellings are folded
// or parsed, since a failed netip.ParseAddr costs an error allocation.
func (sa selfAddrs) isSelf(u *sip.URI) bool {
	host := u.Hostname()
	if !sa.hosts[host] {
		host = strings.ToLower(host)
		if !sa.hosts[host] {
			a, ok := sip.ParseIP(host)
			if !ok || !sa.hosts[a.Unmap().String()] {
				return false
			}
		}
	}
	return u.Port == 0 || sa.ports[u.Port]
}

// openRegistrar opens the store and builds the authenticator and the
// registrar (its bindings loaded from the store).
func (s *Server) openRegistrar(log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Config{URL: s.cfg.Store, Dir: s.cfg.DataDir})
	if err != nil {
		return fmt.Errorf("config store: %w", err)
	}
	s.store = st
	secretFile := s.cfg.Auth.SecretFile
	if secretFile == "" {
		secretFile = filepath.Join(s.cfg.DataDir, auth.SecretFile)
	}
	secret, err := auth.LoadOrCreateSecret(secretFile)
	if err != nil {
		s.closeRegistrar()
		return fmt.Errorf("config auth secret_file: %w", err)
	}
	// A key of its own for the proxy's flow tokens, from the same secret:
	// dialogs of phones behind NAT survive a restart and work on every
	// node sharing the secret.
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("hlas proxy flow tokens"))
	s.flowKey = mac.Sum(nil)
	if s.auth, err = auth.New(s.cfg.Auth, auth.Env{
		Secret: secret, Users: st, Logger: log, Registerer: s.reg, NewResponse: s.response, Guard: s.edge,
	}); err != nil {
		s.closeRegistrar()
		return fmt.Errorf("config %w", err)
	}
	if s.registrar, err = registrar.New(ctx, s.cfg.Registrar, registrar.Env{
		Domain: s.aorDomain, IsSelf: func(u *sip.URI) bool { return s.self.isSelf(u) }, Supported: s.supported,
		Store: st, Logger: log, Registerer: s.reg, NewResponse: s.response,
		OnChange: func(aor string) {
			if w := s.wsFlows; w != nil {
				w.changed(aor)
			}
			if ev := s.events; ev != nil {
				ev.n.Changed("reg", aor)
			}
			if ae := s.apiEvents; ae != nil {
				ae.registration(aor)
			}
		},
	}); err != nil {
		s.closeRegistrar()
		return fmt.Errorf("config %w", err)
	}
	return nil
}

// closeRegistrar stops the registrar (its queued store writes are
// flushed) and closes the store.
func (s *Server) closeRegistrar() {
	s.closeAccounting() // before the store it writes to
	if s.registrar != nil {
		_ = s.registrar.Close()
	}
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			s.log.Error("close store", "err", err)
		}
	}
}

// registerTarget selects the REGISTERs the registrar serves for the auth
// middleware: the sender must authenticate as the user of the AOR it
// registers (RFC 3261 §10.3 steps 3-4), with 401 challenges.
func (s *Server) registerTarget(req *sip.Request) (auth.Kind, string, string, bool) {
	if !s.registrar.Serves(req) {
		return auth.Origin, "", "", false
	}
	user, domain, ok := s.registrar.AddressOfRecord(req)
	return auth.Origin, user, domain, ok
}

// aorDomain maps the URI of an address-of-record to the domain it belongs
// to: a configured domain to itself; one of the server's own addresses or
// names to the first configured domain (to the address itself when no
// domain is configured). false when it is not ours.
// proxyAuth challenges requests to route that claim one of our users in
// From with 407 (RFC 3261 §22.3), except those from trusted peers
// (routing.trusted and the gateways), which pass as they are, and
// requests inside a dialog (a To tag) that came along a route set this
// server recorded (proxy.Routed): the dialog was authenticated when it
// was set up. A To tag without our Route is the sender's word alone and
// is challenged like a new request; the server's own dialogs were served
// before this step.
func (s *Server) proxyAuth(next Handler) Handler {
	authed := s.auth.Middleware(auth.ProxyTarget(s.aorDomain))(next)
	return HandlerFunc(func(ctx context.Context, tx ServerTx, req *sip.Request) {
		if s.proxy.TrustedTx(tx) || s.orig.Load().own(tx, req) || req.To.Tag() != "" && proxy.Routed(ctx) {
			next.ServeSIP(ctx, tx, req)
			return
		}
		authed.ServeSIP(ctx, tx, req)
	})
}

func (s *Server) aorDomain(u *sip.URI) (string, bool) {
	host := strings.ToLower(u.Hostname())
	for _, d := range s.cfg.Domains {
		if strings.EqualFold(d, host) {
			return strings.ToLower(d), true
		}
	}
	if !s.self.isSelf(u) {
		return "", false
	}
	if len(s.cfg.Domains) > 0 {
		return strings.ToLower(s.cfg.Domains[0]), true
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().String(), true
	}
	return host, true
}

// locator is the registrar seen as the proxy's location service (RFC 3261
// §10, §16.5).
type locator struct{ s *Server }

// Lookup returns the bindings of aor as proxy targets: ErrNotFound for an
// AOR that is not a subscriber of ours (404), none for a subscriber that
// is not registered (480). Config.NAT's rule says which bindings are
// reached over the flow they registered on (RFC 5626 §5.3; Kamailio's
// fix_nated_register) rather than at their Contact (server/nat.go); a
// binding's Path becomes the route set (RFC 3327 §5.3).
func (l locator) Lookup(ctx context.Context, aor sip.URI) ([]proxy.Target, error) {
	domain, ok := l.s.aorDomain(&aor)
	if !ok || aor.User == "" || !aor.IsSIP() {
		return nil, proxy.ErrNotFound
	}
	user := sip.Unescape(aor.User)
	bs := l.s.registrar.Lookup(user + "@" + domain)
	if len(bs) == 0 {
		// From the subscriber cache: calls to users who are offline (and
		// scanners' guesses) do not each read the store.
		ok, err := l.s.auth.IsSubscriber(ctx, user, domain)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, proxy.ErrNotFound
		}
		return nil, nil
	}
	ts := make([]proxy.Target, 0, len(bs))
	for i := range bs {
		b := &bs[i]
		t := proxy.Target{URI: b.Contact.URI, Q: float64(b.Q) / 1000, Expires: b.Expires}
		if b.Path != "" {
			var h sip.Header
			h.Add("Path", b.Path)
			for _, v := range h.Values("Path") {
				if a, err := sip.ParseAddress(v); err == nil {
					t.Path = append(t.Path, a)
				}
			}
		}
		if l.s.cfg.NAT.useFlow(b) {
			t.Flow = proxy.Flow{Proto: b.Transport, Local: b.Local, Remote: b.Source, Conn: b.Conn}
		}
		ts = append(ts, t)
	}
	return ts, nil
}

func peerNames(p *transport.Packet) []string {
	if p.Conn == nil {
		return nil
	}
	return p.Conn.PeerNames()
}
