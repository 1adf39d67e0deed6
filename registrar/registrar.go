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
// A binding records the flow its REGISTER came on and what that REGISTER
// showed of a NAT (Binding.NAT, from its top Via and Contact: nat.go); the
// server decides from them whether requests go over the flow. Sweep and
// Remove serve the server's keep-alive pinger (docs/nat.md).
//
// Bindings expire on one ticker that turns a wheel of one-second slots —
// no goroutine or timer per binding. Writes to the store go through one
// writer goroutine in batches (group commit), and the 200 OK of a REGISTER
// is sent once its changes are committed.
package registrar

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// OnChange, when set, is told the AOR whose bindings changed: a
	// REGISTER that added, refreshed or removed bindings (once committed),
	// bindings that lapsed, a binding removed (Remove). It is called
	// without the registrar's locks held and must not block (the
	// registration event package notifies from it).
	OnChange func(aor string)
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

	// date is the Date header of the last 200 OK: it changes once a
	// second, and formatting it for every REGISTER cost an allocation
	// and a good part of building the response.
	date atomic.Pointer[httpDate]

	mu      sync.Mutex
	started bool
	closed  bool
	stop    chan struct{}
	wg      sync.WaitGroup
}

// httpDate is a Date header value (RFC 3261 §20.17) and the Unix second
// it is of.
type httpDate struct {
	sec  int64
	text string
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

// newID returns a random binding ID (16 hex digits in its text form).
func newID() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
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
	l := r.loc
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = make(map[string]*record, len(stored))
	var bs []binding
	// The store returns the rows ordered by AOR: one AOR's are together,
	// and an AOR after the previous one is new to the map (one map
	// operation per AOR). Rows out of order are merged all the same.
	prev := ""
	for i := 0; i < len(stored); {
		aor := stored[i].AOR
		bs = bs[:0]
		for ; i < len(stored) && stored[i].AOR == aor; i++ {
			b, err := fromStore(&stored[i])
			if err != nil {
				r.log.Warn("stored binding does not parse; skipped", "aor", aor, "contact", stored[i].Contact, "err", err)
				continue
			}
			bs = append(bs, b)
		}
		if len(bs) == 0 {
			continue
		}
		var rec *record
		if aor <= prev {
			rec = l.records[aor]
		}
		if rec != nil {
			bs = rec.appendLive(bs, math.MinInt64)
		} else {
			rec = &record{}
		}
		l.setRecordLocked(rec, bs)
		prev = max(prev, aor)
	}
	r.log.Info("bindings loaded", "aors", len(l.records), "bindings", l.count, "purged", purged)
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
		// flushAll, not flush: a REGISTER still being served may be
		// writing a batch on its own goroutine (settle).
		r.w.flushAll(context.Background(), r.met.observeWrite)
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
			var aors *[]string
			if r.env.OnChange != nil {
				aors = new([]string)
			}
			if n := r.loc.expire(r.env.Now(), aors); n > 0 {
				r.met.expired.Add(float64(n))
				r.log.Debug("bindings expired", "count", n)
				if aors != nil {
					for _, aor := range *aors {
						r.changed(aor)
					}
				}
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
			r.w.flushAll(ctx, r.met.observeWrite)
			return
		case <-r.w.q.Wake():
			r.w.drain(ctx, r.met.observeWrite)
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
			r.met.answered(420)
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
	addr     sip.Address // as in the request (refers into it)
	text     string      // as registered: without expires
	parsed   sip.Address // text parsed, as a binding of that text parses
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
		r.met.answered(err.code)
		if r.debug() {
			r.log.Debug("register refused", "code", err.code, "why", err.why, "to", req.To.URI.String(), "call_id", req.CallID)
		}
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
	// The AOR as a string only when it is new: a known AOR's is its
	// record's key, and looking the record up with the bytes allocates
	// nothing.
	var keyBuf [64]byte
	key := append(append(append(keyBuf[:0], user...), '@'), domain...)
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
	var contactBuf [4]contact
	contacts, rerr := r.parseContacts(contactBuf[:0], req, headerExpires, hasHeader)
	if rerr != nil {
		return rerr
	}
	path := strings.Join(req.Values("Path"), ", ")
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

	// Copied into each binding's data: nothing here needs a copy.
	src := flow{
		callID: req.CallID, cseq: req.CSeq.Seq, path: path, source: tx.Source(), transport: tx.Transport(),
		userAgent: req.Get("User-Agent"), updated: now.UnixNano(),
	}
	if la, ok := tx.(interface{ LocalAddr() netip.AddrPort }); ok {
		src.local = la.LocalAddr()
	}
	if cn, ok := tx.(interface{ Conn() *transport.Conn }); ok {
		src.conn = cn.Conn()
	}
	src.viaNAT = viaShowsNAT(req, src.source)

	var buf [4]binding
	r.loc.mu.Lock()
	rec := r.loc.records[string(key)]
	cur := buf[:0]
	if rec != nil {
		cur = rec.appendLive(cur, now.UnixNano())
	}
	if len(req.Contact) == 0 {
		// A query (RFC 3261 §10.2.3): list the bindings, change nothing.
		res := r.okResponse(req, cur, nil, now, false, "")
		r.loc.mu.Unlock()
		r.met.answered(200)
		_ = tx.Respond(res)
		return nil
	}
	aor := ""
	if rec != nil {
		aor = rec.one.field(fieldAOR) // equal to key: it is the record's key
	} else {
		aor = string(key)
	}
	src.aor = aor
	next, del, rerr := r.apply(aor, cur, contacts, wildcard, &src, now)
	if rerr != nil {
		r.loc.mu.Unlock()
		return rerr
	}
	if r.w != nil && r.w.full() {
		r.loc.mu.Unlock()
		return refuse(503, "registration store busy")
	}
	res := r.okResponse(req, next, contacts, now, outbound, path)
	var p *pendingRegister
	var put []store.Binding
	if r.w != nil {
		p = &pendingRegister{r: r, tx: tx, req: req, res: res, aor: aor, n: len(next)}
		for i := range next {
			if next[i].flags&flagFresh != 0 {
				if put == nil {
					put = p.one[:0]
				}
				put = append(put, next[i].toStore())
			}
		}
	}
	if rec == nil {
		rec = &record{} // into the map if next has bindings
	}
	changed := len(del) > 0
	for i := range next {
		changed = changed || next[i].flags&flagFresh != 0
	}
	if p != nil {
		p.changed = changed
	}
	r.loc.setRecordLocked(rec, next)
	if r.w == nil {
		r.loc.mu.Unlock()
		r.done(tx, req, res, aor, len(next), nil)
		if changed {
			r.changed(aor)
		}
		return nil
	}
	// Queued under the location lock, so the store sees the changes of
	// one AOR in the order memory did.
	ok := r.w.enqueue(writeOp{put: put, del: del, done: p})
	r.loc.mu.Unlock()
	if !ok {
		// Closed between the check and now: the server is stopping.
		return refuse(503, "registrar stopping")
	}
	r.w.settle(context.Background(), r.met.observeWrite)
	return nil
}

// pendingRegister is a REGISTER whose changes wait for the store: what
// its answer needs, and room for the one binding most REGISTERs write,
// in one allocation.
type pendingRegister struct {
	r   *Registrar
	tx  Tx
	req *sip.Request
	res *sip.Response
	aor string
	n   int // bindings of the AOR after the change
	// changed: bindings were added, refreshed or removed (not a fetch).
	changed bool
	one     [1]store.Binding
}

func (p *pendingRegister) committed(err error) {
	p.r.done(p.tx, p.req, p.res, p.aor, p.n, err)
	if err == nil && p.changed {
		p.r.changed(p.aor)
	}
}

// changed tells Env.OnChange.
func (r *Registrar) changed(aor string) {
	if r.env.OnChange != nil {
		r.env.OnChange(aor)
	}
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
	} else if r.debug() {
		r.log.Debug("registered", "aor", aor, "bindings", n, "source", tx.Source(), "transport", tx.Transport())
	}
	r.met.answered(res.StatusCode)
	_ = tx.Respond(res)
}

// debug reports whether debug records are wanted: the arguments of a
// record cost allocations even when the handler drops it.
func (r *Registrar) debug() bool {
	return r.log.Enabled(context.Background(), slog.LevelDebug)
}

// parseContacts reads each Contact's expiry, q-value, +sip.instance and
// reg-id (RFC 3261 §10.3 step 7, §20.10; RFC 5626 §4.1), appending them
// to dst.
func (r *Registrar) parseContacts(dst []contact, req *sip.Request, headerExpires int, hasHeader bool) ([]contact, *registerError) {
	out := dst
	var text [256]byte
	for i := range req.Contact {
		a := &req.Contact[i]
		if a.Wildcard {
			continue
		}
		c := contact{q: 1000}
		c.expires = r.cfg.DefaultExpires
		if hasHeader {
			c.expires = headerExpires
		}
		v, hasExpires := a.Params.Get("expires")
		if hasExpires {
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
			c.instance = v
		}
		if v, ok := a.Params.Get("reg-id"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1<<31-1 {
				return nil, refuse(400, "invalid reg-id "+v)
			}
			c.regID = n
		}
		c.addr = *a
		c.text = string(appendContactText(text[:0], a))
		// The stored text must parse again: bindings are parsed from it
		// whenever they are read, and a text that did not parse would be
		// a binding without a URI. Writing a parsed Address round-trips
		// (sip.FuzzParseAddress), so this guards against a bug rather
		// than a request; it is kept because it allocates nothing and
		// pays for itself: its result stands in for parsing the binding
		// of the same text in match and okResponse.
		var err error
		if c.parsed, err = sip.ParseAddress(c.text); err != nil {
			return nil, refuse(400, "invalid Contact")
		}
		out = append(out, c)
	}
	return out, nil
}

// appendContactText appends the contact as a binding stores it: a
// written without its expires parameter, as a.Params.Del("expires") and
// a.String() would give it, into the caller's buffer.
func appendContactText(dst []byte, a *sip.Address) []byte {
	bare := *a
	bare.Params = ""
	return a.Params.AppendDel(bare.AppendTo(dst), "expires")
}

// apply computes an AOR's new bindings from its current ones and the
// request's contacts (RFC 3261 §10.3 steps 6-7, RFC 5626 §6), with the
// rows to delete; the new and changed bindings are flagged fresh. Nothing
// changes unless every contact is accepted. cur may be reused.
func (r *Registrar) apply(aor string, cur []binding, contacts []contact, wildcard bool, src *flow, now time.Time) (next []binding, del []store.BindingKey, err *registerError) {
	if wildcard {
		for i := range cur {
			b := &cur[i]
			if b.field(fieldCallID) == src.callID && src.cseq <= b.cseq {
				return nil, nil, outOfOrder()
			}
			del = append(del, store.BindingKey{AOR: aor, ID: b.idString()})
		}
		return nil, del, nil
	}
	n := len(cur)
	next = cur
	for ci := range contacts {
		c := &contacts[ci]
		i := match(next, c)
		if i >= 0 && next[i].flags&flagFresh == 0 && next[i].cseq >= src.cseq && next[i].field(fieldCallID) == src.callID {
			return nil, nil, outOfOrder()
		}
		if c.expires == 0 {
			if i >= 0 {
				del = append(del, store.BindingKey{AOR: aor, ID: next[i].idString()})
				next = slices.Delete(next, i, i+1)
			}
			continue
		}
		if i < 0 {
			next = append(next, binding{id: newID()})
			i = len(next) - 1
		}
		b := &next[i]
		b.set(src, c, now.UnixNano()+int64(c.expires)*int64(time.Second))
		b.flags |= flagFresh
	}
	if len(next) > r.cfg.MaxContacts && len(next) > n {
		return nil, nil, &registerError{code: 403, reason: "Too Many Contacts",
			why: fmt.Sprintf("at most %d contacts per address-of-record", r.cfg.MaxContacts)}
	}
	return next, del, nil
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
func match(bs []binding, c *contact) int {
	if c.instance != "" {
		for i := range bs {
			if bs[i].field(fieldInstance) == c.instance && int(bs[i].regID) == c.regID {
				return i
			}
		}
	}
	for i := range bs {
		if c.instance == "" || bs[i].field(fieldInstance) == "" {
			a := c.parsed // what the binding's text parses to, when it is c's
			if bs[i].field(fieldContact) != c.text {
				a = bs[i].contact()
			}
			if a.URI.Equal(&c.addr.URI) {
				return i
			}
		}
	}
	return -1
}

// okResponse builds the 200 OK listing every current binding with its
// remaining expiry (RFC 3261 §10.3 step 8), the Path of the request for a
// UA that supports it (RFC 3327 §5.3), and Require: outbound when SIP
// Outbound applied (RFC 5626 §6). contacts are the request's, whose
// parsed texts spare parsing the bindings made from them.
func (r *Registrar) okResponse(req *sip.Request, bs []binding, contacts []contact, now time.Time, outbound bool, path string) *sip.Response {
	res := r.env.NewResponse(req, 200, "")
	var buf [4]binding
	sorted := append(buf[:0], bs...)
	sortBindings(sorted)
	// The contacts' parameters with their expires go into one string, cut
	// into each contact's once all are written: one allocation for the
	// response rather than one per contact.
	var paramBuf [256]byte
	var endBuf [4]int
	params, ends := paramBuf[:0], endBuf[:0]
	res.Contact = slices.Grow(res.Contact, len(sorted))
	first := len(res.Contact)
	for i := range sorted {
		b := &sorted[i]
		left := int((time.Duration(b.expires-now.UnixNano()) + time.Second - 1) / time.Second)
		a := b.contactFrom(contacts)
		params = appendExpires(params, a.Params, max(left, 1))
		ends = append(ends, len(params))
		res.Contact = append(res.Contact, a)
	}
	if len(sorted) > 0 {
		all, start := string(params), 0
		for i, end := range ends {
			res.Contact[first+i].Params = sip.Params(all[start:end])
			start = end
		}
	}
	withPath := path != "" && hasOption(req, "Supported", "path")
	// Room for the fields added below at once, not one growth each.
	res.Fields = slices.Grow(res.Fields, 1+btoi(withPath)+btoi(outbound))
	if withPath {
		res.Add("Path", path)
	}
	if outbound {
		res.Add("Require", "outbound")
	}
	res.Add("Date", r.httpDate(now))
	return res
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// appendExpires appends the parameters p with expires set to n, as
// p.Set("expires", strconv.Itoa(n)) writes them. A stored contact has no
// expires (parseContacts removes it), so they are p and ";expires=n":
// p, parsed, has the form Set writes.
func appendExpires(dst []byte, p sip.Params, n int) []byte {
	if p.Has("expires") {
		return p.AppendSet(dst, "expires", strconv.Itoa(n))
	}
	dst = append(dst, p...)
	dst = append(dst, ";expires="...)
	return strconv.AppendInt(dst, int64(n), 10)
}

// httpDate returns the Date header value for now, formatted once a
// second.
func (r *Registrar) httpDate(now time.Time) string {
	sec := now.Unix()
	if d := r.date.Load(); d != nil && d.sec == sec {
		return d.text
	}
	d := &httpDate{sec: sec, text: now.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")}
	r.date.Store(d)
	return d.text
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
