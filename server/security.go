package server

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/security"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transport"
	"github.com/hlas-voip/hlas/store"
)

// edge is the server's defence at the edge (package security,
// docs/security.md): the ban table, the flood guard the transport asks
// before a packet is parsed, the detector of scanners and password
// guessing, and the call limits against toll fraud. Bans are written to
// the store, where `hlas ban` reads and changes them; a goroutine polls
// the store's ban version every second and takes the operator's changes.
type edge struct {
	s       *Server
	log     *slog.Logger
	bans    *security.Bans
	guard   *security.Guard
	det     *security.Detector
	lim     *security.Limiter
	trusted func(netip.Addr) bool
	// own is security.trusted, which a reload replaces.
	own *security.TrustSet

	// persist queues the bans the detectors placed for the store; full,
	// a ban is enforced but not written (counted).
	persist chan security.Ban
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once

	bansTotal   *prometheus.CounterVec
	unpersisted prometheus.Counter
}

// persistQueue bounds the bans waiting to be written to the store.
const persistQueue = 4096

// newEdge builds the defences from the security section. They need
// nothing of the rest of the server to be built, so the transport can be
// given the guard when it is made.
func newEdge(s *Server, cfg security.Config, log *slog.Logger) (*edge, error) {
	cfg = cfg.WithDefaults()
	prefixes, err := cfg.TrustedPrefixes()
	if err != nil {
		return nil, err
	}
	own := security.NewTrustSet(prefixes)
	e := &edge{
		s:       s,
		own:     own,
		log:     log.With("feature", "security"),
		persist: make(chan security.Ban, persistQueue),
		stop:    make(chan struct{}),
	}
	// Trusted: the security section's networks, and the proxy's trusted
	// peers and gateways by address (a trunk sending hundreds of calls a
	// second is not a flood). The proxy exists only after the transport,
	// so it is asked through the server.
	e.trusted = func(ip netip.Addr) bool {
		if own.Contains(ip) {
			return true
		}
		px := s.proxy
		return px != nil && px.TrustedAddr(ip)
	}
	e.bans = security.NewBans(security.BansConfig{Max: cfg.MaxBans, OnAdd: e.banned})
	if e.guard, err = security.NewGuard(cfg.Flood, e.bans, e.trusted, nil); err != nil {
		return nil, err
	}
	if e.det, err = security.NewDetector(cfg.Detect, e.bans, e.trusted, nil); err != nil {
		return nil, err
	}
	if e.lim, err = security.NewLimiter(cfg.Limits, nil); err != nil {
		return nil, err
	}
	e.metrics(s.reg)
	return e, nil
}

func (e *edge) metrics(reg prometheus.Registerer) {
	e.bansTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "hlas", Subsystem: "security", Name: "bans_total",
		Help: "Bans placed by the server, by kind (the first word of the reason): flood, scanner, auth.",
	}, []string{"kind"})
	e.unpersisted = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "hlas", Subsystem: "security", Name: "bans_unpersisted_total",
		Help: "Bans enforced but not written to the store (its queue was full or the write failed).",
	})
	g := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "hlas", Subsystem: "security", Name: name, Help: help}, f)
	}
	c := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "hlas", Subsystem: "security", Name: name, Help: help}, f)
	}
	refused := func(limit string, f func(security.LimiterStats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "hlas", Subsystem: "security", Name: "calls_refused_total",
			Help:        "Calls refused by the limits against toll fraud, by limit: concurrent, rate, source_rate, costly.",
			ConstLabels: prometheus.Labels{"limit": limit},
		}, func() float64 { return float64(f(e.lim.Stats())) })
	}
	reg.MustRegister(e.bansTotal, e.unpersisted,
		refused("concurrent", func(s security.LimiterStats) uint64 { return s.Concurrent }),
		refused("rate", func(s security.LimiterStats) uint64 { return s.Rate }),
		refused("source_rate", func(s security.LimiterStats) uint64 { return s.SourceRate }),
		refused("costly", func(s security.LimiterStats) uint64 { return s.Costly }),
		g("bans", "Bans in force (automatic and manual).", func() float64 { return float64(e.bans.Len()) }),
		g("flood_sources", "Sources the flood guard tracks.", func() float64 { return float64(e.guard.Stats().Sources) }),
		c("dropped_banned_total", "Packets and requests dropped unanswered because their source is banned.",
			func() float64 { return float64(e.guard.Stats().DroppedBanned) }),
		c("dropped_flood_total", "Packets and requests dropped because their source went over a flood limit.",
			func() float64 { return float64(e.guard.Stats().DroppedFlood) }),
		c("flood_untracked_total", "Packets let through untracked because the flood guard tracked max_sources already.",
			func() float64 { return float64(e.guard.Stats().Untracked) }),
		g("suspects", "Sources the scanner and password-guessing detector tracks.", func() float64 { return float64(e.det.Stats().Sources) }),
		c("accounts_slowed_total", "Times an account's challenges started being slowed (password guessing against it from many sources).",
			func() float64 { return float64(e.det.Stats().Slowed) }),
	)
}

// banned is Bans.OnAdd: one log line per ban with its reason, in a form
// fail2ban-style tools can match, a metric, and the store.
func (e *edge) banned(b security.Ban) {
	until := "never"
	if !b.Expires.IsZero() {
		until = b.Expires.UTC().Format(time.RFC3339)
	}
	e.log.Warn("banned", "source", b.Prefix.String(), "reason", b.Reason, "until", until)
	e.bansTotal.WithLabelValues(b.Kind()).Inc()
	if e.s != nil && e.s.apiEvents != nil {
		e.s.apiEvents.banned(b)
	}
	select {
	case e.persist <- b:
	default:
		e.unpersisted.Inc()
	}
}

// synced tells the bans placed or lifted in the store by others: an
// operator (`hlas ban`, the REST API), or another node sharing the store.
func (e *edge) synced(added, lifted []security.Ban) {
	for _, b := range added {
		e.log.Info("ban read from the store", "source", b.Prefix.String(), "reason", b.Reason, "manual", b.Manual)
		if e.s != nil && e.s.apiEvents != nil {
			e.s.apiEvents.banned(b)
		}
	}
	for _, b := range lifted {
		e.log.Info("ban lifted in the store", "source", b.Prefix.String())
		if e.s != nil && e.s.apiEvents != nil {
			e.s.apiEvents.unbanned(b)
		}
	}
}

// load reads the bans in the store at start.
func (e *edge) load(ctx context.Context, st store.Bans) (int64, error) {
	v, err := st.BansVersion(ctx)
	if err != nil {
		return 0, err
	}
	list, err := st.Bans(ctx, time.Now())
	if err != nil {
		return 0, err
	}
	e.bans.Load(fromStore(list))
	return v, nil
}

// start runs the goroutine that writes bans to the store, takes the
// operator's changes from it, and sweeps the tables.
func (e *edge) start(st store.Bans, version int64) {
	e.wg.Add(1)
	go e.run(st, version)
}

// close stops that goroutine after writing what is queued.
func (e *edge) close() {
	e.once.Do(func() { close(e.stop) })
	e.wg.Wait()
}

func (e *edge) run(st store.Bans, version int64) {
	defer e.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	ticks := 0
	for {
		select {
		case <-e.stop:
			e.write(st, nil)
			return
		case b := <-e.persist:
			e.write(st, []security.Ban{b})
		case now := <-tick.C:
			ticks++
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if v, err := st.BansVersion(ctx); err != nil {
				e.log.Debug("bans version", "err", err)
			} else if v != version {
				if list, err := st.Bans(ctx, now); err != nil {
					e.log.Error("read bans", "err", err)
				} else {
					added, lifted := e.bans.Sync(fromStore(list))
					e.synced(added, lifted)
					version = v
				}
			}
			if ticks%60 == 0 {
				if _, err := st.PurgeBans(ctx, now); err != nil {
					e.log.Debug("purge bans", "err", err)
				}
			}
			cancel()
			e.bans.Sweep(now)
			e.guard.Sweep(now)
			e.det.Sweep(now)
		}
	}
}

// write stores bans and whatever else is queued, in one transaction.
func (e *edge) write(st store.Bans, bans []security.Ban) {
	for more := true; more; {
		select {
		case b := <-e.persist:
			bans = append(bans, b)
		default:
			more = false
		}
	}
	if len(bans) == 0 {
		return
	}
	out := make([]store.Ban, len(bans))
	for i, b := range bans {
		out[i] = store.Ban{Prefix: b.Prefix, Reason: b.Reason, Created: b.Created, Expires: b.Expires, Manual: b.Manual}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := st.PutBans(ctx, out); err != nil {
		e.log.Error("write bans", "err", err, "bans", len(out))
		e.unpersisted.Add(float64(len(out)))
		return
	}
	for _, b := range bans {
		e.bans.MarkStored(b.Prefix)
	}
}

func fromStore(list []store.Ban) []security.Ban {
	out := make([]security.Ban, len(list))
	for i, b := range list {
		out[i] = security.Ban{Prefix: b.Prefix, Reason: b.Reason, Created: b.Created, Expires: b.Expires, Manual: b.Manual}
	}
	return out
}

// admit is the transport's Admit: packets from banned sources, or from
// a source over its packet limit, are dropped before they are copied or
// parsed, and stream connections from banned sources are not accepted.
func (e *edge) admit(proto string, remote netip.AddrPort) bool {
	return e.guard.AllowPacket(proto, remote.Addr())
}

// request is asked by the reader for every parsed request: the request
// limit of its source, and the scanners' User-Agents. A request it
// refuses is dropped unanswered (an answer would serve the scanner and
// amplify a flood).
func (e *edge) request(p *transport.Packet, req *sip.Request) bool {
	ip := p.Remote.Addr()
	if e.trusted(ip) {
		return true // before the User-Agent is looked for: a trunk's load pays one prefix check
	}
	if !e.guard.AllowRequest(p.Proto, ip) {
		return false
	}
	if ua := req.Get("User-Agent"); ua != "" && e.det.UserAgent(ip, ua) {
		return false
	}
	return true
}

// refused counts a final response refusing a request of src (the
// detector keeps the codes scanners collect: 403, 404, 484 ...).
func (e *edge) refused(src netip.Addr, code int) {
	e.det.Refused(src, code)
}

// Observe implements auth.Guard: probing (challenges never answered with
// credentials for many users), password guessing from one source, and
// guessing against one account from many, which slows the account's
// challenges down.
func (e *edge) Observe(src netip.Addr, username, domain string, r auth.Result) time.Duration {
	account := username + "@" + domain
	switch {
	case r.Outcome == auth.Accepted:
		if r.Identity.Authenticated {
			e.det.Credentials(src, account)
			e.det.AuthSucceeded(src, account)
		}
		return 0
	case r.Outcome == auth.Challenged && r.Reason == auth.ReasonNoCredentials:
		e.det.Challenged(src, account)
	case r.Outcome == auth.Challenged && (r.Reason == auth.ReasonWrongPassword || r.Reason == auth.ReasonUnknownUser):
		e.det.Credentials(src, account)
		e.det.AuthFailed(src, account)
	default:
		// A stale nonce, a replay, malformed credentials: a client that
		// answered the challenge, not a guess.
		e.det.Credentials(src, account)
	}
	if e.bans.Banned(src) && !e.trusted(src) {
		// This request completed the evidence: its answer is not sent
		// either (auth drops it for a negative delay).
		return -1
	}
	return e.det.ChallengeDelay(account)
}

// callLimits is the handler step of the limits against toll fraud: a new
// call (an INVITE outside a dialog) of an authenticated user, or from an
// untrusted source, is counted against the user's (or source's) limits:
// beyond them 486 (concurrent calls) or 403 (rates, costly prefixes),
// with a Warning saying which. Trusted peers are not limited.
func (s *Server) callLimits(next Handler) Handler {
	e := s.edge
	return HandlerFunc(func(ctx context.Context, tx ServerTx, req *sip.Request) {
		// Off is read per request: a reload may set limits or clear them.
		if req.Method != sip.INVITE || req.To.Tag() != "" || e.lim.Off() || s.trustedTx(tx) {
			next.ServeSIP(ctx, tx, req)
			return
		}
		user, active := "", 0
		if id, ok := auth.FromContext(ctx); ok && id.Authenticated {
			user = id.AOR()
			if s.acc != nil {
				active = s.acc.ActiveCalls(user)
			}
		}
		code, warning := e.lim.Call(user, tx.Source().Addr(), sip.Unescape(req.URI.User), active)
		if code == 0 {
			next.ServeSIP(ctx, tx, req)
			return
		}
		e.log.Info("call refused by a limit", "user", user, "source", tx.Source().String(), "to", req.URI.String(),
			"code", code, "why", warning)
		res := s.response(req, code, "")
		res.Add("Warning", `399 hlas "`+warnEscape(warning)+`"`)
		_ = tx.Respond(res)
	})
}

// trustedTx reports whether the request of tx comes from a trusted peer
// (routing.trusted, the gateways): by transport, address and port, and
// for TLS by the verified certificate's names.
func (s *Server) trustedTx(tx ServerTx) bool {
	return s.proxy.TrustedTx(tx)
}

// goAsync runs f on a goroutine counted in the server's async group,
// unless the server is stopping (false).
func (s *Server) goAsync(f func()) bool {
	s.asyncMu.Lock()
	if s.noAsync {
		s.asyncMu.Unlock()
		return false
	}
	s.async.Add(1)
	s.asyncMu.Unlock()
	go func() {
		defer s.async.Done()
		f()
	}()
	return true
}

// serveOn runs the rest of a handler chain off the worker, with the
// worker's panic guard.
func (s *Server) serveOn(ctx context.Context, tx ServerTx, req *sip.Request, next Handler) {
	defer func() {
		if r := recover(); r != nil {
			s.met.dropped.WithLabelValues("handler_panic").Inc()
			s.log.Error("handler panic", "method", req.Method, "call_id", req.CallID, "panic", r)
			_ = tx.RespondStateless(s.response(req, 500, ""))
		}
	}()
	next.ServeSIP(ctx, tx, req)
}
