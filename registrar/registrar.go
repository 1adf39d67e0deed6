// Package registrar is hlas's registrar (RFC 3261 §10.3) and location
// service: it answers REGISTER for the server's domains and keeps the
// bindings of every address-of-record in memory for fast lookup (Lookup,
// for the proxy), writing every change through to the store so a restart
// loses no registration.
//
// What it implements: several contacts per AOR with q-values; expiry from
// the contact's expires parameter or the Expires header, clamped to
// Config.MaxExpires, and 423 Interval Too Brief with Min-Expires below
// Config.MinExpires; "Contact: *" with "Expires: 0" to remove every binding
// (400 for * with other contacts or a non-zero expiry); the Call-ID/CSeq
// ordering rule (an older CSeq of the same Call-ID cannot change a binding);
// a 200 OK listing every current binding with its remaining expiry; Path
// (RFC 3327) stored and echoed to UAs that support it; +sip.instance and
// reg-id (SIP Outbound, RFC 5626 §6: a UA that re-registers from a new
// address replaces its binding), with 439 when the first hop cannot do
// Outbound; a per-AOR contact limit; 404 for an AOR of a domain that is not
// ours and 400 for a To that is not a sip or sips URI (RFC 4475 §3.3.4).
//
// Bindings expire on one ticker that turns a wheel of one-second slots —
// no goroutine or timer per binding. Writes to the store go through one
// writer goroutine in batches (group commit), and the 200 OK of a REGISTER
// is sent once its changes are committed.
package registrar

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/handler"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transport"
	"github.com/hlas-voip/hlas/store"
)

// Defaults of Config.
const (
	DefaultMinExpires     = 10
	DefaultMaxExpires     = 3600
	DefaultDefaultExpires = 3600
	DefaultMaxContacts    = 10
	DefaultQueueSize      = 8192
)

// purgeInterval is how often lapsed bindings are deleted from the store.
const purgeInterval = time.Minute

// Tx is the server transaction a REGISTER is answered through; the
// server's ServerTx satisfies it. When it also has LocalAddr() (the server
// address the request arrived on) or Conn() (the stream connection), those
// are stored with the binding too.
type Tx interface {
	Respond(res *sip.Response) error
	// Source is the address the request came from.
	Source() netip.AddrPort
	// Transport is UDP, TCP or TLS.
	Transport() string
}

// Config is the registrar's configuration, as data: the server's YAML
// file maps its "registrar" section onto it. Zero fields take the
// defaults named.
type Config struct {
	// MinExpires: a binding asked for less (but not 0) gets 423 Interval
	// Too Brief with a Min-Expires header (RFC 3261 §10.3 step 7). Default
	// 10 seconds (sipsak's usrloc mode registers for 15).
	MinExpires int `yaml:"min_expires"`
	// MaxExpires caps the expiry the registrar grants (RFC 3261 §10.3:
	// the registrar may shorten it). Default 3600 seconds.
	MaxExpires int `yaml:"max_expires"`
	// DefaultExpires applies when neither the contact nor the request
	// names an expiry (RFC 3261 §10.2.1.1). Default 3600 seconds (at most
	// MaxExpires).
	DefaultExpires int `yaml:"default_expires"`
	// MaxContacts bounds the bindings of one AOR; a REGISTER that would
	// exceed it gets 403. Default 10.
	MaxContacts int `yaml:"max_contacts"`
	// QueueSize bounds REGISTERs waiting for their store write; beyond it
	// REGISTERs get 503 with Retry-After. Default 8192.
	QueueSize int `yaml:"queue_size"`
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.MinExpires == 0 {
		c.MinExpires = DefaultMinExpires
	}
	if c.MaxExpires == 0 {
		c.MaxExpires = DefaultMaxExpires
	}
	if c.DefaultExpires == 0 {
		c.DefaultExpires = min(DefaultDefaultExpires, c.MaxExpires)
	}
	if c.MaxContacts == 0 {
		c.MaxContacts = DefaultMaxContacts
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	return c
}

// Validate checks the configuration and names the offending field.
func (c Config) Validate() error {
	if c.MinExpires < 0 || c.MaxExpires < 0 || c.DefaultExpires < 0 || c.MaxContacts < 0 || c.QueueSize < 0 {
		return errors.New("registrar: min_expires, max_expires, default_expires, max_contacts and queue_size must not be negative")
	}
	c = c.withDefaults()
	switch {
	case c.MinExpires > 3600:
		// RFC 3261 §10.3: only an interval under one hour may be too brief.
		return fmt.Errorf("registrar min_expires %d: at most 3600", c.MinExpires)
	case c.MinExpires > c.MaxExpires:
		return fmt.Errorf("registrar min_expires %d is above max_expires %d", c.MinExpires, c.MaxExpires)
	case c.DefaultExpires < c.MinExpires || c.DefaultExpires > c.MaxExpires:
		return fmt.Errorf("registrar default_expires %d is outside min_expires..max_expires (%d..%d)", c.DefaultExpires, c.MinExpires, c.MaxExpires)
	}
	return nil
}

// Env is what a Registrar needs from the server that runs it.
type Env struct {
	// Domain maps a To URI to the served domain of its AOR: the domain
	// itself for a configured domain, the default domain for one of the
	// server's own addresses; false for anything else (404). Required.
	Domain func(u *sip.URI) (domain string, ok bool)
	// IsSelf reports whether a Request-URI names this server; the
	// Middleware serves the REGISTERs it accepts. Nil accepts those whose
	// host Domain maps.
	IsSelf func(u *sip.URI) bool
	// Supported are the option tags the server implements; a REGISTER
	// whose Require names another gets 420 (RFC 3261 §10.3 step 2).
	// Default: path, outbound.
	Supported []string
	// Store is where bindings are written through; nil keeps them in
	// memory only.
	Store store.Bindings
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger gets records with feature=registrar.
	Logger *slog.Logger
	// Registerer takes the metrics (namespace hlas, subsystem registrar);
	// nil registers nothing.
	Registerer prometheus.Registerer
	// NewResponse builds responses (the server passes its own, which adds
	// the To tag and Server header). Default: sip.NewResponse with a
	// random To tag.
	NewResponse func(req *sip.Request, code int, reason string) *sip.Response
}

// Registrar answers REGISTER requests and keeps the location service.
// Its methods are safe for concurrent use.
type Registrar struct {
	cfg Config
	env Env
	loc *location
	w   *writer // nil without a store
	log *slog.Logger
	met *metrics

	mu      sync.Mutex
	started bool
	closed  bool
	stop    chan struct{}
	wg      sync.WaitGroup
}

// New checks cfg, loads the bindings that have not lapsed from the store
// (deleting those that have), and returns a Registrar. Start runs its
// expiry ticker and store writer.
func New(ctx context.Context, cfg Config, env Env) (*Registrar, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if env.Domain == nil {
		return nil, errors.New("registrar: no Domain function")
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	if env.NewResponse == nil {
		env.NewResponse = defaultResponse
	}
	if env.IsSelf == nil {
		domain := env.Domain
		env.IsSelf = func(u *sip.URI) bool { _, ok := domain(u); return ok }
	}
	if env.Supported == nil {
		env.Supported = []string{"path", "outbound"}
	}
	now := env.Now()
	r := &Registrar{cfg: cfg, env: env, loc: newLocation(now), log: env.Logger.With("feature", "registrar"), stop: make(chan struct{})}
	if env.Store != nil {
		r.w = newWriter(env.Store, cfg.QueueSize)
		if err := r.load(ctx, now); err != nil {
			return nil, err
		}
	}
	r.met = newMetrics(env.Registerer, r)
	return r, nil
}

func defaultResponse(req *sip.Request, code int, reason string) *sip.Response {
	res := sip.NewResponse(req, code, reason)
	res.AddToTag()
	return res
}

// newID returns 16 random hex digits.
func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// load reads the stored bindings into memory after purging lapsed ones.
func (r *Registrar) load(ctx context.Context, now time.Time) error {
	purged, err := r.env.Store.PurgeBindings(ctx, now)
	if err != nil {
		return fmt.Errorf("registrar: %w", err)
	}
	stored, err := r.env.Store.Bindings(ctx, "", now)
	if err != nil {
		return fmt.Errorf("registrar: %w", err)
	}
	byAOR := make(map[string][]*Binding)
	for _, sb := range stored {
		b, err := fromStore(sb)
		if err != nil {
			r.log.Warn("stored binding does not parse; skipped", "aor", sb.AOR, "contact", sb.Contact, "err", err)
			continue
		}
		byAOR[b.AOR] = append(byAOR[b.AOR], b)
	}
	r.loc.mu.Lock()
	for aor, bs := range byAOR {
		r.loc.setLocked(aor, bs)
	}
	r.loc.mu.Unlock()
	r.log.Info("bindings loaded", "aors", len(byAOR), "bindings", len(stored), "purged", purged)
	return nil
}

// Start runs the expiry ticker and the store writer until Close.
func (r *Registrar) Start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || r.closed {
		return
	}
	r.started = true
	r.wg.Add(1)
	go r.tick()
	if r.w != nil {
		r.wg.Add(1)
		go r.write()
	}
}

// Close stops the ticker, writes what is still queued to the store, and
// waits for both goroutines. REGISTERs arriving afterwards get 503.
func (r *Registrar) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	started := r.started
	r.mu.Unlock()
	if r.w != nil {
		r.w.close()
	}
	close(r.stop)
	r.wg.Wait()
	if r.w != nil && !started {
		r.w.flush(context.Background(), r.met.observeWrite)
	}
	return nil
}

// tick turns the expiry wheel once a second.
func (r *Registrar) tick() {
	defer r.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			if n := r.loc.expire(r.env.Now()); n > 0 {
				r.met.expired.Add(float64(n))
				r.log.Debug("bindings expired", "count", n)
			}
		}
	}
}

// write runs the store writer: batches as they come, a purge of lapsed
// rows every minute, and everything still queued at Close.
func (r *Registrar) write() {
	defer r.wg.Done()
	ctx := context.Background()
	purge := time.NewTicker(purgeInterval)
	defer purge.Stop()
	for {
		select {
		case <-r.stop:
			r.w.flush(ctx, r.met.observeWrite)
			return
		case <-r.w.q.Wake():
			r.w.flush(ctx, r.met.observeWrite)
		case <-purge.C:
			if _, err := r.env.Store.PurgeBindings(ctx, r.env.Now()); err != nil {
				r.met.storeErrors.Inc()
				r.log.Error("purge lapsed bindings", "err", err)
			}
		}
	}
}

// Lookup returns the current bindings of an AOR ("user@domain"), highest
// q-value first, then the most recently refreshed: the targets a proxy
// forks to (RFC 3261 §16.5, §16.6). The result is a copy.
func (r *Registrar) Lookup(aor string) []Binding {
	return r.loc.lookup(aor, r.env.Now())
}

// Middleware is the registrar's step in the handler chain: a REGISTER
// whose Request-URI names this server (Config.IsSelf) is the registrar's
// (RFC 3261 §10.3 step 1); one with a Require option the server lacks
// gets 420 with Unsupported (step 2), the rest ServeRegister. Everything
// else goes on. Authentication (steps 3-4) runs before it in the chain.
func (r *Registrar) Middleware(next handler.Handler) handler.Handler {
	return handler.HandlerFunc(func(ctx context.Context, tx handler.ServerTx, req *sip.Request) {
		if !r.Serves(req) {
			next.ServeSIP(ctx, tx, req)
			return
		}
		var bad []string
		for _, tag := range req.Values("Require") {
			if !slices.ContainsFunc(r.env.Supported, func(s string) bool { return strings.EqualFold(s, tag) }) {
				bad = append(bad, tag)
			}
		}
		if len(bad) > 0 {
			r.met.registers.WithLabelValues("420").Inc()
			res := r.env.NewResponse(req, 420, "")
			res.Add("Unsupported", strings.Join(bad, ", "))
			_ = tx.RespondStateless(res)
			return
		}
		r.ServeRegister(ctx, tx, req)
	})
}

// Serves reports whether req is a REGISTER for this registrar: its
// Request-URI is a sip or sips URI naming this server.
func (r *Registrar) Serves(req *sip.Request) bool {
	return req.Method == sip.REGISTER && req.URI.IsSIP() && r.env.IsSelf(&req.URI)
}

// AddressOfRecord returns the AOR a REGISTER is for (RFC 3261 §10.3 step
// 5): the To URI's user part, unescaped, and the served domain its host
// names. ok is false when the To is not a sip or sips URI of one of our
// domains; ServeRegister answers such requests 400 or 404.
func (r *Registrar) AddressOfRecord(req *sip.Request) (user, domain string, ok bool) {
	user, domain, code, _ := r.aor(req)
	return user, domain, code == 0
}

func (r *Registrar) aor(req *sip.Request) (user, domain string, code int, why string) {
	to := &req.To.URI
	if !to.IsSIP() {
		// RFC 3261 §10.3 step 5, RFC 4475 §3.3.4 (unksm2).
		return "", "", 400, "the To of a REGISTER must be a sip or sips URI"
	}
	if to.User == "" {
		return "", "", 404, "the To URI has no user part"
	}
	domain, ok := r.env.Domain(to)
	if !ok {
		return "", "", 404, "not a domain of this registrar"
	}
	return sip.Unescape(to.User), strings.ToLower(domain), 0, ""
}

// contact is one parsed Contact of a REGISTER.
type contact struct {
	addr     sip.Address // without expires
	expires  int
	q        int
	instance string
	regID    int
}

// registerError is a REGISTER refused with a status code.
type registerError struct {
	code   int
	reason string // reason phrase; "" for the default
	why    string // Warning text
}

func refuse(code int, why string) *registerError { return &registerError{code: code, why: why} }

// ServeRegister processes a REGISTER addressed to this registrar (RFC
// 3261 §10.3 steps 5-8; the caller has done steps 1-4: the Request-URI is
// ours, Require is checked and the sender authenticated for the AOR).
func (r *Registrar) ServeRegister(ctx context.Context, tx Tx, req *sip.Request) {
	if err := r.serve(tx, req); err != nil {
		r.met.registers.WithLabelValues(strconv.Itoa(err.code)).Inc()
		r.log.Debug("register refused", "code", err.code, "why", err.why, "to", req.To.URI.String(), "call_id", req.CallID)
		res := r.env.NewResponse(req, err.code, err.reason)
		switch err.code {
		case 423:
			res.Add("Min-Expires", strconv.Itoa(r.cfg.MinExpires))
		case 503:
			res.Add("Retry-After", "5")
		}
		if err.why != "" {
			res.Add("Warning", `399 hlas "`+strings.ReplaceAll(err.why, `"`, `'`)+`"`)
		}
		// A refusal depends on the request alone (or, for an out-of-order
		// CSeq, on state a retransmission cannot change): no transaction
		// state is needed to answer a retransmission the same way.
		if sl, ok := tx.(interface{ RespondStateless(*sip.Response) error }); ok {
			_ = sl.RespondStateless(res)
			return
		}
		_ = tx.Respond(res)
	}
}

func (r *Registrar) serve(tx Tx, req *sip.Request) *registerError {
	user, domain, code, why := r.aor(req)
	if code != 0 {
		return refuse(code, why)
	}
	aor := user + "@" + domain
	now := r.env.Now()

	headerExpires, hasHeader := parseDelta(req.Get("Expires"))
	wildcard := false
	for i := range req.Contact {
		if req.Contact[i].Wildcard {
			wildcard = true
		}
	}
	if wildcard && (len(req.Contact) != 1 || !hasHeader || headerExpires != 0) {
		// RFC 3261 §10.3 step 6.
		return refuse(400, "Contact: * needs Expires: 0 and no other Contact")
	}
	contacts, rerr := r.parseContacts(req, headerExpires, hasHeader)
	if rerr != nil {
		return rerr
	}
	path := strings.Clone(strings.Join(req.Values("Path"), ", "))
	outbound := false
	for i := range contacts {
		c := &contacts[i]
		if c.regID == 0 {
			continue
		}
		// RFC 5626 §6: Outbound applies only when this registrar is the
		// first hop or the edge proxy that is marked its Path URI "ob".
		if c.instance != "" && (len(req.Via) == 1 || pathHasOb(req)) {
			outbound = true
			continue
		}
		if c.instance != "" && hasOption(req, "Supported", "outbound") {
			return &registerError{code: 439, reason: "First Hop Lacks Outbound Support", why: "reg-id without an outbound-capable first hop"}
		}
		c.regID = 0 // ignored (RFC 5626 §6)
	}

	src := Binding{
		AOR: aor, CallID: strings.Clone(req.CallID), CSeq: req.CSeq.Seq, Path: path,
		Source: tx.Source(), Transport: tx.Transport(),
		UserAgent: strings.Clone(req.Get("User-Agent")), Updated: now,
	}
	if la, ok := tx.(interface{ LocalAddr() netip.AddrPort }); ok {
		src.Local = la.LocalAddr()
	}
	if cn, ok := tx.(interface{ Conn() *transport.Conn }); ok {
		src.Conn = cn.Conn()
	}

	r.loc.mu.Lock()
	cur := r.loc.currentLocked(aor, now)
	if len(req.Contact) == 0 {
		// A query (RFC 3261 §10.2.3): list the bindings, change nothing.
		res := r.okResponse(req, cur, now, false, "")
		r.loc.mu.Unlock()
		r.met.registers.WithLabelValues("200").Inc()
		_ = tx.Respond(res)
		return nil
	}
	next, put, del, rerr := r.apply(cur, contacts, wildcard, &src, now)
	if rerr != nil {
		r.loc.mu.Unlock()
		return rerr
	}
	if r.w != nil && r.w.full() {
		r.loc.mu.Unlock()
		return refuse(503, "registration store busy")
	}
	r.loc.setLocked(aor, next)
	res := r.okResponse(req, next, now, outbound, path)
	if r.w == nil {
		r.loc.mu.Unlock()
		r.done(tx, req, res, aor, len(next), nil)
		return nil
	}
	// Queued under the location lock, so the store sees the changes of
	// one AOR in the order memory did.
	ok := r.w.enqueue(writeOp{put: put, del: del, done: func(err error) { r.done(tx, req, res, aor, len(next), err) }})
	r.loc.mu.Unlock()
	if !ok {
		// Closed between the check and now: the server is stopping.
		return refuse(503, "registrar stopping")
	}
	return nil
}

// done answers a REGISTER whose changes were committed, or failed to be.
func (r *Registrar) done(tx Tx, req *sip.Request, res *sip.Response, aor string, n int, err error) {
	if err != nil {
		// RFC 3261 §10.3: a failed commit fails the request with 500. The
		// memory copy keeps the change; the UA's retry writes it again.
		r.log.Error("store bindings", "aor", aor, "err", err)
		res = r.env.NewResponse(req, 500, "")
		res.Add("Retry-After", "5")
		res.Add("Warning", `399 hlas "registration store failure"`)
	} else {
		r.log.Debug("registered", "aor", aor, "bindings", n, "source", tx.Source(), "transport", tx.Transport())
	}
	r.met.registers.WithLabelValues(strconv.Itoa(res.StatusCode)).Inc()
	_ = tx.Respond(res)
}

// parseContacts reads each Contact's expiry, q-value, +sip.instance and
// reg-id (RFC 3261 §10.3 step 7, §20.10; RFC 5626 §4.1).
func (r *Registrar) parseContacts(req *sip.Request, headerExpires int, hasHeader bool) ([]contact, *registerError) {
	var out []contact
	for i := range req.Contact {
		a := req.Contact[i]
		if a.Wildcard {
			continue
		}
		c := contact{q: 1000}
		c.expires = r.cfg.DefaultExpires
		if hasHeader {
			c.expires = headerExpires
		}
		if v, ok := a.Params.Get("expires"); ok {
			if n, ok := parseDelta(v); ok {
				c.expires = n
			}
		}
		if c.expires != 0 && c.expires < r.cfg.MinExpires {
			return nil, &registerError{code: 423, why: fmt.Sprintf("expiry %d is below the minimum %d", c.expires, r.cfg.MinExpires)}
		}
		c.expires = min(c.expires, r.cfg.MaxExpires)
		if v, ok := a.Params.Get("q"); ok {
			q, ok := parseQ(v)
			if !ok {
				return nil, refuse(400, "invalid q-value "+v)
			}
			c.q = q
		}
		if v, ok := a.Params.Get("+sip.instance"); ok {
			c.instance = strings.Clone(v)
		}
		if v, ok := a.Params.Get("reg-id"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1<<31-1 {
				return nil, refuse(400, "invalid reg-id "+v)
			}
			c.regID = n
		}
		a.Params = a.Params.Del("expires")
		// A copy of our own: the request's buffer is not kept alive by
		// a binding.
		addr, err := sip.ParseAddress(strings.Clone(a.String()))
		if err != nil {
			return nil, refuse(400, "invalid Contact")
		}
		c.addr = addr
		out = append(out, c)
	}
	return out, nil
}

// apply computes an AOR's new bindings from its current ones and the
// request's contacts (RFC 3261 §10.3 steps 6-7, RFC 5626 §6), with the
// rows to write and delete. Nothing changes unless every contact is
// accepted.
func (r *Registrar) apply(cur []*Binding, contacts []contact, wildcard bool, src *Binding, now time.Time) (next []*Binding, put []store.Binding, del []store.BindingKey, err *registerError) {
	if wildcard {
		for _, b := range cur {
			if b.CallID == src.CallID && src.CSeq <= b.CSeq {
				return nil, nil, nil, outOfOrder()
			}
			del = append(del, store.BindingKey{AOR: b.AOR, ID: b.ID})
		}
		return nil, nil, del, nil
	}
	next = slices.Clone(cur)
	fresh := make(map[*Binding]bool) // made by this request
	for _, c := range contacts {
		i := match(next, &c)
		if i >= 0 && !fresh[next[i]] && next[i].CallID == src.CallID && src.CSeq <= next[i].CSeq {
			return nil, nil, nil, outOfOrder()
		}
		if c.expires == 0 {
			if i >= 0 {
				del = append(del, store.BindingKey{AOR: next[i].AOR, ID: next[i].ID})
				next = slices.Delete(next, i, i+1)
			}
			continue
		}
		// Bindings are never changed in place (Lookup hands out copies
		// made under the read lock): an update is a new Binding.
		nb := *src
		nb.Contact, nb.Q, nb.Instance, nb.RegID = c.addr, c.q, c.instance, c.regID
		nb.Expires = now.Add(time.Duration(c.expires) * time.Second)
		if i >= 0 {
			nb.ID = next[i].ID
			next[i] = &nb
		} else {
			nb.ID = newID()
			next = append(next, &nb)
		}
		fresh[&nb] = true
	}
	if len(next) > r.cfg.MaxContacts && len(next) > len(cur) {
		return nil, nil, nil, &registerError{code: 403, reason: "Too Many Contacts",
			why: fmt.Sprintf("at most %d contacts per address-of-record", r.cfg.MaxContacts)}
	}
	for _, b := range next {
		if fresh[b] {
			put = append(put, b.toStore())
		}
	}
	return next, put, del, nil
}

func outOfOrder() *registerError {
	// RFC 3261 §10.3 step 7: "the update MUST be aborted and the request
	// fails".
	return &registerError{code: 500, reason: "Out of Order Request", why: "out-of-order request"}
}

// match finds the binding a contact refers to: under SIP Outbound or with
// an instance ID the binding of the same +sip.instance and reg-id, however
// its URI changed (RFC 5626 §6); otherwise the binding whose URI is equal
// by RFC 3261 §19.1.4 (§10.3 step 7). -1 when none.
func match(bs []*Binding, c *contact) int {
	if c.instance != "" {
		for i, b := range bs {
			if b.Instance == c.instance && b.RegID == c.regID {
				return i
			}
		}
	}
	for i, b := range bs {
		if (c.instance == "" || b.Instance == "") && b.Contact.URI.Equal(&c.addr.URI) {
			return i
		}
	}
	return -1
}

// okResponse builds the 200 OK listing every current binding with its
// remaining expiry (RFC 3261 §10.3 step 8), the Path of the request for a
// UA that supports it (RFC 3327 §5.3), and Require: outbound when SIP
// Outbound applied (RFC 5626 §6).
func (r *Registrar) okResponse(req *sip.Request, bs []*Binding, now time.Time, outbound bool, path string) *sip.Response {
	res := r.env.NewResponse(req, 200, "")
	sorted := make([]Binding, len(bs))
	for i, b := range bs {
		sorted[i] = *b
	}
	sortBindings(sorted)
	for _, b := range sorted {
		left := int((b.Expires.Sub(now) + time.Second - 1) / time.Second)
		a := b.Contact
		a.Params = a.Params.Set("expires", strconv.Itoa(max(left, 1)))
		res.Contact = append(res.Contact, a)
	}
	if path != "" && hasOption(req, "Supported", "path") {
		res.Add("Path", path)
	}
	if outbound {
		res.Add("Require", "outbound")
	}
	res.Add("Date", now.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT"))
	return res
}

// parseDelta parses delta-seconds (RFC 3261 §25.1), saturating at 2^32-1
// as §20.19 allows; false when it is not a number.
func parseDelta(s string) (int, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 20 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		if n < 1<<32 {
			n = n*10 + int(s[i]-'0')
		}
	}
	return min(n, 1<<32-1), true
}

// parseQ parses a qvalue (RFC 3261 §25.1: "0" [ "." 0*3DIGIT ] or
// "1" [ "." 0*3("0") ]) into thousandths.
func parseQ(s string) (int, bool) {
	if s == "" || len(s) > 5 || (s[0] != '0' && s[0] != '1') {
		return 0, false
	}
	q := int(s[0]-'0') * 1000
	if len(s) > 1 {
		if s[1] != '.' {
			return 0, false
		}
		scale := 100
		for i := 2; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return 0, false
			}
			q += int(s[i]-'0') * scale
			scale /= 10
		}
	}
	if q > 1000 {
		return 0, false
	}
	return q, true
}

// hasOption reports whether a Supported or Require header lists tag.
func hasOption(req *sip.Request, header, tag string) bool {
	for _, v := range req.Values(header) {
		if strings.EqualFold(v, tag) {
			return true
		}
	}
	return false
}

// pathHasOb reports whether the first Path URI carries the "ob" parameter:
// the edge proxy that added it keeps the flow (RFC 5626 §5.1, §6).
func pathHasOb(req *sip.Request) bool {
	vs := req.Values("Path")
	if len(vs) == 0 {
		return false
	}
	a, err := sip.ParseAddress(vs[0])
	return err == nil && a.URI.Params.Has("ob")
}
