package event

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hlas-voip/hlas/handler"
	"github.com/hlas-voip/hlas/internal/metric"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
)

// retryAfter is the Retry-After of a 503 when MaxSubscriptions is reached
// or the Notifier is closing.
const retryAfter = "30"

// maxFailures ends a subscription after this many NOTIFYs in a row failed
// with codes that by themselves do not end it (500, 503, ...): a watcher
// that refuses everything does not keep it forever.
const maxFailures = 3

// pkgEntry is a served event package with what is derived from it once.
type pkgEntry struct {
	p      Package
	name   string
	accept []string
	defExp time.Duration
	winfo  *pkgEntry // the package's ".winfo" template, when served
	m      pkgMetrics
}

// resKey indexes subscriptions by what they watch.
type resKey struct {
	pkg *pkgEntry
	res string
}

// Notifier is the server's notifier for the event packages it serves
// (RFC 6665 §4.2). It is safe for concurrent use.
type Notifier struct {
	cfg   Config
	env   Env
	clock transaction.Clock
	log   *slog.Logger
	m     *metrics
	codes *metric.ByCode
	pkgs  map[string]*pkgEntry
	allow string

	mu       sync.Mutex
	dialogs  map[string]*dialogState // by our tag
	byRes    map[resKey][]*Subscription
	count    int
	heap     wakeHeap
	timer    transaction.Timer
	timerAt  int64
	timerGen uint64
	inFlight int
	// The subscriptions with a NOTIFY in flight, oldest first: since
	// every deadline is NotifyTimeout after the send, this is deadline
	// order, kept in O(1) per NOTIFY where the heap would move the
	// subscription twice (to its deadline and back to its expiry).
	fhead, ftail *Subscription
	fifo         []*Subscription
	fifoHead     int
	closed       bool

	// The store writer (nil channels without a Store).
	dirty map[*Subscription]struct{}
	kick  chan struct{}
	stop  chan struct{}
	wdone chan struct{}
}

// New returns a Notifier serving pkgs. With env.Store it loads the stored
// subscriptions and resumes their timers (no NOTIFY is sent for them until
// their state changes or they are refreshed), and starts the goroutine
// that writes state changes and removals; Close stops it.
func New(cfg Config, env Env, pkgs ...Package) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if env.Sender == nil {
		return nil, errors.New("event: Env.Sender is required")
	}
	if env.Contact == nil {
		return nil, errors.New("event: Env.Contact is required")
	}
	if env.Clock == nil {
		env.Clock = transaction.RealClock{}
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{
		cfg: cfg, env: env, clock: env.Clock,
		log:     env.Logger.With("feature", "event"),
		pkgs:    map[string]*pkgEntry{},
		dialogs: map[string]*dialogState{},
		byRes:   map[resKey][]*Subscription{},
	}
	n.m = newMetrics(n)
	n.codes = metric.NewByCode(n.m.responses)
	var names []string
	for _, p := range pkgs {
		name := p.Name()
		if !isToken(name) {
			return nil, fmt.Errorf("event: package name %q is not a token", name)
		}
		key := strings.ToLower(name)
		if n.pkgs[key] != nil {
			return nil, fmt.Errorf("event: package %q served twice", name)
		}
		accept := append([]string(nil), p.Accept()...)
		if len(accept) == 0 {
			return nil, fmt.Errorf("event: package %q accepts no body type", name)
		}
		pe := &pkgEntry{p: p, name: name, accept: accept, defExp: p.DefaultExpires(), m: n.m.forPackage(name)}
		if pe.defExp <= 0 {
			return nil, fmt.Errorf("event: package %q: default expiry %v", name, pe.defExp)
		}
		n.pkgs[key] = pe
		names = append(names, name)
	}
	for key, pe := range n.pkgs {
		if w := n.pkgs[key+".winfo"]; w != nil {
			pe.winfo = w
		}
	}
	n.allow = strings.Join(names, ", ")
	if err := n.m.register(env.Registerer); err != nil {
		return nil, fmt.Errorf("event: metrics: %w", err)
	}
	if env.Store != nil {
		n.dirty = map[*Subscription]struct{}{}
		n.kick = make(chan struct{}, 1)
		n.stop = make(chan struct{})
		n.wdone = make(chan struct{})
		if err := n.load(); err != nil {
			return nil, err
		}
		go n.writer()
	}
	return n, nil
}

// Serves reports whether the Notifier serves the event package named in an
// Event header's token.
func (n *Notifier) Serves(event string) bool { return n.lookup(event) != nil }

// AllowEvents lists the packages served, for an Allow-Events header
// ("presence, message-summary").
func (n *Notifier) AllowEvents() string { return n.allow }

func (n *Notifier) lookup(name string) *pkgEntry {
	if pe := n.pkgs[name]; pe != nil {
		return pe
	}
	return n.pkgs[strings.ToLower(name)]
}

func (n *Notifier) now() int64 { return n.clock.Now().UnixNano() }

// Count returns how many subscriptions are held (pending or active).
func (n *Notifier) Count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.count
}

// InFlight returns how many NOTIFY transactions await their outcome.
func (n *Notifier) InFlight() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.inFlight
}

// Waiting returns how many subscriptions wait for a slot under MaxPending.
func (n *Notifier) Waiting() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.fifo) - n.fifoHead
}

// Close stops the timers and the store writer (after it wrote what was
// queued). Subscriptions are not ended: no NOTIFY goes out, and the stored
// ones survive for the next start. Outcomes of NOTIFYs still in flight are
// ignored.
func (n *Notifier) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.timerGen++
	if n.timer != nil {
		n.timer.Stop()
		n.timer = nil
	}
	n.mu.Unlock()
	if n.stop != nil {
		close(n.stop)
		<-n.wdone
	}
	return nil
}

// after is what a change under the mutex leaves to do once it is released:
// NOTIFYs to render and send, watcher events to report.
type after struct {
	jobs   []job
	events []watcherEvent
	hint   int // how many jobs may come, to size jobs once
}

// job is a NOTIFY built under the mutex, waiting for its body and sending.
type job struct {
	s    *Subscription
	req  *sip.Request
	flow Flow
	body bool
	full bool
}

type watcherEvent struct {
	pe  *pkgEntry
	res string
	w   WatcherInfo
}

// finish renders and sends the NOTIFYs of a and reports its watcher
// events, without the mutex.
func (n *Notifier) finish(a *after) {
	snd := n.env.Sender
	var batch SenderBatch
	if bs, ok := snd.(BatchSender); ok && len(a.jobs) > 1 {
		batch = bs.Batch()
		snd = batch
	}
	for i := range a.jobs {
		j := &a.jobs[i]
		if j.body {
			if ct, b := j.s.pkg.p.Document(j.s, j.full); b != nil {
				j.req.ContentType, j.req.Body = ct, b
			}
			if j.s.isList() {
				j.req.Add("Require", "eventlist")
			}
		}
		j.s.pkg.m.notifies.Inc()
		if err := snd.SendRequest(j.req, j.flow, j.s.onDone); err != nil {
			n.notifyDone(j.s, nil, err)
		}
		a.jobs[i] = job{}
	}
	if batch != nil {
		batch.Flush()
	}
	for _, e := range a.events {
		if n.env.OnWatcher != nil {
			n.env.OnWatcher(e.pe.name, e.res, e.w)
		}
		if e.pe.winfo != nil {
			n.Changed(e.pe.winfo.name, e.res)
		}
	}
}

// response builds a response with the server's To tag and Server header.
func (n *Notifier) response(req *sip.Request, code int, reason string) *sip.Response {
	var r *sip.Response
	if n.env.NewResponse != nil {
		r = n.env.NewResponse(req, code, reason)
	} else {
		r = sip.NewResponse(req, code, reason)
		if n.env.ServerName != "" {
			r.Add("Server", n.env.ServerName)
		}
	}
	r.AddToTag()
	return r
}

// reject answers req with a final response, statelessly: the same request
// would get the same answer.
func (n *Notifier) reject(tx handler.ServerTx, req *sip.Request, code int, reason string, hdrs ...string) {
	r := n.response(req, code, reason)
	for i := 0; i+1 < len(hdrs); i += 2 {
		r.Add(hdrs[i], hdrs[i+1])
	}
	n.codes.Inc(code)
	if err := tx.RespondStateless(r); err != nil {
		n.log.Debug("response not sent", "code", code, "err", err)
	}
}

// HandleSUBSCRIBE answers a SUBSCRIBE the server is the notifier for (RFC
// 6665 §4.2.1). The server has authenticated it: watcher is the AOR, ""
// when unauthenticated; resource is the AOR subscribed to; flow is where
// it came from.
//
// A new subscription (no To tag): an Event not served → 489 with
// Allow-Events; Expires below MinExpires (but not 0) → 423 with
// Min-Expires; no acceptable body type → 406 with Accept; Authorize
// Rejected → 403; MaxSubscriptions reached → 503. Otherwise the dialog is
// created and stored, 200 goes out with Expires and Contact, then a NOTIFY
// (active with the state, or pending without). Expires: 0 is a fetch: 200,
// then one NOTIFY with the state and terminated;reason=timeout (§4.4.3).
//
// In a dialog (To tag): an unknown dialog → 481; a known one refreshes the
// subscription its Event (type and id) names: new expiry, 200, NOTIFY with
// the current state; Expires: 0 ends it with a final NOTIFY (§4.2.1.4). An
// Event (type or id) new to the dialog creates a subscription in it
// (§4.5.2).
//
// With a Store, the subscription is written before the 200, so this may
// wait for it (bounded by ctx).
func (n *Notifier) HandleSUBSCRIBE(ctx context.Context, tx handler.ServerTx, req *sip.Request, flow Flow, watcher, resource string) {
	name, evID, ok := parseEvent(req.Get("Event"))
	if !ok {
		n.reject(tx, req, 400, "Missing or Malformed Event")
		return
	}
	pe := n.lookup(name)
	if pe == nil {
		n.reject(tx, req, 489, "", "Allow-Events", n.allow)
		return
	}
	exp, fetch := max(pe.defExp, n.cfg.MinExpires), false
	if v := req.Get("Expires"); v != "" {
		secs, ok := parseExpires(v)
		if !ok {
			n.reject(tx, req, 400, "Malformed Expires")
			return
		}
		exp, fetch = time.Duration(min(secs, uint64(n.cfg.MaxExpires/time.Second)))*time.Second, secs == 0
		if !fetch && exp < n.cfg.MinExpires {
			n.reject(tx, req, 423, "", "Min-Expires", strconv.FormatInt(int64(n.cfg.MinExpires/time.Second), 10))
			return
		}
	}
	exp = min(exp, n.cfg.MaxExpires)
	if req.To.Tag() != "" {
		n.inDialog(ctx, tx, req, flow, watcher, resource, pe, evID, exp, fetch)
		return
	}
	n.create(ctx, tx, req, flow, watcher, resource, pe, evID, exp, fetch, nil)
}

// create makes a new subscription, in a new dialog (d nil) or in d.
func (n *Notifier) create(ctx context.Context, tx handler.ServerTx, req *sip.Request, flow Flow,
	watcher, resource string, pe *pkgEntry, evID string, exp time.Duration, fetch bool, d *dialogState) {
	if d == nil && (len(req.Contact) == 0 || req.Contact[0].Wildcard) {
		// RFC 6665 §8.2.1 (Contact is mandatory in SUBSCRIBE).
		n.reject(tx, req, 400, "Missing Contact")
		return
	}
	if req.From.Tag() == "" {
		n.reject(tx, req, 400, "Missing From Tag")
		return
	}
	accept := negotiate(req.Values("Accept"), pe.accept)
	if accept == nil {
		n.reject(tx, req, 406, "", "Accept", strings.Join(pe.accept, ", "))
		return
	}
	dec := pe.p.Authorize(watcher, resource)
	if dec == Rejected {
		n.reject(tx, req, 403, "")
		return
	}
	st := StateActive
	if dec == Pending {
		st = StatePending
	}
	res := n.response(req, 200, "")
	existing := d != nil
	if !existing {
		var err error
		if d, err = n.newDialog(req, res, flow); err != nil {
			n.reject(tx, req, 400, "Malformed Dialog Headers")
			return
		}
	}
	now := n.now()
	s := n.newSub(pe, d, sip.NewTag(), watcher, resource, evID, req.From.DisplayName(), accept,
		req.HasOption("Supported", "eventlist"), st, now, now+int64(exp))

	var snap StoredSubscription
	n.mu.Lock()
	switch {
	case n.closed:
		n.mu.Unlock()
		n.reject(tx, req, 503, "", "Retry-After", retryAfter)
		return
	case fetch:
		s.prevState, s.term = st, "timeout"
		s.state.Store(int32(StateTerminated))
	case n.count >= n.cfg.MaxSubscriptions:
		n.mu.Unlock()
		n.reject(tx, req, 503, "", "Retry-After", retryAfter)
		return
	case existing && n.dialogs[d.localTag] != d:
		// The dialog ended meanwhile (its last subscription went).
		n.mu.Unlock()
		n.reject(tx, req, 481, "")
		return
	default:
		if other := n.dialogs[d.localTag]; !existing && other != nil {
			// Our tag is taken: by a retransmission of an initial
			// SUBSCRIBE after its transaction ended (the server's tags
			// are derived from the request), or by chance.
			n.mu.Unlock()
			n.reject(tx, req, 500, "Dialog Tag Collision", "Retry-After", "1")
			return
		}
		n.addLocked(s, now)
		snap = s.stored(now)
	}
	contact := d.contact
	n.mu.Unlock()

	if !fetch && n.env.Store != nil {
		if err := n.env.Store.PutSubscription(ctx, snap); err != nil {
			n.log.Warn("subscription not stored", "id", s.id, "err", err)
			n.mu.Lock()
			n.endLocked(s, "deactivated", false, nil, now)
			n.mu.Unlock()
			n.reject(tx, req, 500, "Store Unavailable", "Retry-After", "5")
			return
		}
	}
	res.Add("Expires", strconv.FormatInt(int64(exp/time.Second), 10))
	if s.isList() {
		res.Add("Require", "eventlist")
	}
	res.Contact = contact
	n.codes.Inc(200)
	if err := tx.Respond(res); err != nil {
		n.log.Debug("200 not sent", "err", err)
	}

	var a after
	n.mu.Lock()
	s.ready, s.dirty, s.needFull, s.urgent = true, true, true, true
	n.sendLocked(s, n.now(), &a)
	if !fetch {
		a.events = append(a.events, watcherEvent{pe, s.resource, s.info(now)})
	}
	n.mu.Unlock()
	n.finish(&a)
}

// newDialog builds the dialog of an initial SUBSCRIBE answered by res
// (whose To tag is ours).
func (n *Notifier) newDialog(req *sip.Request, res *sip.Response, flow Flow) (*dialogState, error) {
	d, err := dialogFromRequest(req, res.To.Tag())
	if err != nil {
		return nil, err
	}
	d.flow = flow
	d.contact = []sip.Address{n.env.Contact(flow.Proto, flow.Local)}
	return d, nil
}

// newSub makes a subscription (not yet indexed).
func (n *Notifier) newSub(pe *pkgEntry, d *dialogState, id, watcher, resource, evID, display string,
	accept []string, eventList bool, st State, created, expires int64) *Subscription {
	s := &Subscription{pkg: pe, d: d, accept: accept, eventList: eventList, created: created, idx: -1, resIdx: -1}
	s.setText(id, watcher, resource, evID, display)
	s.state.Store(int32(st))
	s.expires.Store(expires)
	s.winfoEvent = "subscribe"
	s.onDone = func(res *sip.Response, err error) { n.notifyDone(s, res, err) }
	return s
}

// inDialog handles a SUBSCRIBE with a To tag: refresh, unsubscribe, or a
// new subscription in the dialog.
func (n *Notifier) inDialog(ctx context.Context, tx handler.ServerTx, req *sip.Request, flow Flow,
	watcher, resource string, pe *pkgEntry, evID string, exp time.Duration, fetch bool) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		n.reject(tx, req, 503, "", "Retry-After", retryAfter)
		return
	}
	d := n.dialogs[req.To.Tag()]
	if d == nil || d.callID != req.CallID || d.remoteTag != req.From.Tag() {
		n.mu.Unlock()
		n.reject(tx, req, 481, "")
		return
	}
	if req.CSeq.Seq < d.remoteSeq {
		n.mu.Unlock()
		n.reject(tx, req, 500, "CSeq Out Of Order")
		return
	}
	d.remoteSeq = req.CSeq.Seq
	if len(req.Contact) > 0 && !req.Contact[0].Wildcard {
		d.setTarget(req.Contact[0].URI)
	}
	if flow.Proto != "" && flow != d.flow {
		if flow.Proto != d.flow.Proto || flow.Local != d.flow.Local {
			d.contact = []sip.Address{n.env.Contact(flow.Proto, flow.Local)}
		}
		d.flow = flow
	}
	var s *Subscription
	for _, x := range d.subs {
		if x.pkg == pe && x.eventID == evID {
			s = x
			break
		}
	}
	if s == nil {
		n.mu.Unlock()
		if fetch {
			n.reject(tx, req, 481, "")
			return
		}
		n.create(ctx, tx, req, flow, watcher, resource, pe, evID, exp, false, d)
		return
	}
	now := n.now()
	res := n.response(req, 200, "")
	res.Contact = d.contact
	var a after
	if fetch {
		// Unsubscribe (RFC 6665 §4.2.1.4): the final NOTIFY follows the
		// 200.
		n.endLocked(s, "timeout", true, &a, now)
		s.ready = false
		n.mu.Unlock()
		res.Add("Expires", "0")
		n.codes.Inc(200)
		_ = tx.Respond(res)
		n.mu.Lock()
		s.ready = true
		n.sendLocked(s, n.now(), &a)
		n.mu.Unlock()
		n.finish(&a)
		return
	}
	old := s.expires.Load()
	s.expires.Store(now + int64(exp))
	s.dirty, s.needFull, s.urgent, s.ready = true, true, true, false
	n.reschedLocked(s, now)
	snap := s.stored(now)
	n.mu.Unlock()
	if n.env.Store != nil {
		if err := n.env.Store.PutSubscription(ctx, snap); err != nil {
			n.log.Warn("refresh not stored", "id", s.id, "err", err)
			n.mu.Lock()
			if s.term == "" {
				s.expires.Store(old)
			}
			s.ready = true
			n.sendLocked(s, n.now(), &a)
			n.mu.Unlock()
			n.reject(tx, req, 500, "Store Unavailable", "Retry-After", "5")
			n.finish(&a)
			return
		}
	}
	res.Add("Expires", strconv.FormatInt(int64(exp/time.Second), 10))
	if s.isList() {
		res.Add("Require", "eventlist")
	}
	n.codes.Inc(200)
	_ = tx.Respond(res)
	n.mu.Lock()
	s.ready = true
	n.sendLocked(s, n.now(), &a)
	n.mu.Unlock()
	n.finish(&a)
}

// Changed tells the Notifier that the state of resource in package pkg
// changed: every active subscription to it gets a NOTIFY, at most one per
// MinInterval each; changes within the interval are coalesced into the
// next one, which carries the state of its time (RFC 6665 §4.1.2.1).
func (n *Notifier) Changed(pkg, resource string) {
	pe := n.lookup(pkg)
	if pe == nil {
		return
	}
	var a after
	n.mu.Lock()
	now := n.now()
	subs := n.byRes[resKey{pe, resource}]
	a.hint = len(subs)
	for _, s := range subs {
		if s.State() != StateActive || s.term != "" {
			continue
		}
		if s.dirty {
			pe.m.coalesced.Inc()
			continue
		}
		s.dirty = true
		n.sendLocked(s, now, &a)
	}
	n.mu.Unlock()
	n.finish(&a)
}

// Reauthorize asks the package again about every subscription to resource
// (after the resource's owner changed her rules): a pending one that is
// now allowed becomes active (NOTIFY with the state), an active one now
// pending gets a NOTIFY pending without state, and a rejected one ends
// with terminated;reason=rejected (RFC 6665 §4.2.1.3, RFC 3857 §3.2.4).
func (n *Notifier) Reauthorize(pkg, resource string) {
	pe := n.lookup(pkg)
	if pe == nil {
		return
	}
	n.mu.Lock()
	subs := append([]*Subscription(nil), n.byRes[resKey{pe, resource}]...)
	n.mu.Unlock()
	if len(subs) == 0 {
		return
	}
	decs := make([]Decision, len(subs))
	for i, s := range subs {
		decs[i] = pe.p.Authorize(s.watcher, resource)
	}
	var a after
	n.mu.Lock()
	now := n.now()
	for i, s := range subs {
		if s.term != "" {
			continue
		}
		cur := s.State()
		switch {
		case decs[i] == Rejected:
			n.endLocked(s, "rejected", true, &a, now)
		case decs[i] == Active && cur == StatePending:
			n.setStateLocked(s, StateActive, "approved", &a, now)
		case decs[i] == Pending && cur == StateActive:
			n.setStateLocked(s, StatePending, "subscribe", &a, now)
		default:
			continue
		}
		n.sendLocked(s, now, &a)
	}
	n.mu.Unlock()
	n.finish(&a)
}

// setStateLocked moves a live subscription between pending and active; a
// NOTIFY telling so follows without waiting for the rate limit (it is the
// subscription's state that changed, not the resource's).
func (n *Notifier) setStateLocked(s *Subscription, st State, event string, a *after, now int64) {
	prev := s.State()
	s.pkg.m.gauge(prev).Dec()
	s.pkg.m.gauge(st).Inc()
	s.state.Store(int32(st))
	s.winfoEvent = event
	s.dirty, s.needFull, s.urgent = true, true, true
	n.storeDirtyLocked(s)
	a.events = append(a.events, watcherEvent{s.pkg, s.resource, s.info(now)})
}

// Watchers lists the subscriptions to resource in package pkg, for watcher
// info (RFC 3858).
func (n *Notifier) Watchers(pkg, resource string) []WatcherInfo {
	pe := n.lookup(pkg)
	if pe == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.now()
	subs := n.byRes[resKey{pe, resource}]
	out := make([]WatcherInfo, len(subs))
	for i, s := range subs {
		out[i] = s.info(now)
	}
	return out
}

// info describes s for watcher info. The mutex is held.
func (s *Subscription) info(now int64) WatcherInfo {
	w := WatcherInfo{ID: s.id, Watcher: s.watcher, Display: s.dn, State: s.State(), Event: s.winfoEvent,
		Duration: time.Duration(now - s.created)}
	if s.term == "" {
		w.Expires = max(time.Duration(s.expires.Load()-now), 0)
	}
	return w
}

// addLocked indexes a new subscription and arms its expiry.
func (n *Notifier) addLocked(s *Subscription, now int64) {
	d := s.d
	d.subs = append(d.subs, s)
	n.dialogs[d.localTag] = d
	k := resKey{s.pkg, s.resource}
	list := n.byRes[k]
	s.resIdx = int32(len(list))
	n.byRes[k] = append(list, s)
	n.count++
	s.pkg.m.gauge(s.State()).Inc()
	n.reschedLocked(s, now)
}

// endLocked ends a subscription: out of the indexes (and the store), with
// a final NOTIFY carrying reason when notify is set (sent by sendLocked,
// once the NOTIFY in flight, if any, is done). a may be nil when nobody
// needs to hear of it (a subscription whose 2xx was never sent).
func (n *Notifier) endLocked(s *Subscription, reason string, notify bool, a *after, now int64) {
	if s.term != "" {
		return
	}
	prev := s.State()
	s.prevState, s.term, s.winfoEvent = prev, reason, reason
	s.state.Store(int32(StateTerminated))
	if !notify {
		s.finalSent = true
	}
	if s.resIdx >= 0 {
		k := resKey{s.pkg, s.resource}
		list := n.byRes[k]
		last := list[len(list)-1]
		list[s.resIdx], last.resIdx = last, s.resIdx
		list[len(list)-1] = nil
		if list = list[:len(list)-1]; len(list) == 0 {
			delete(n.byRes, k)
		} else {
			n.byRes[k] = list
		}
		s.resIdx = -1
		n.count--
		s.pkg.m.gauge(prev).Dec()
		n.storeDirtyLocked(s)
		if a != nil {
			a.events = append(a.events, watcherEvent{s.pkg, s.resource, s.info(now)})
		}
	}
	d := s.d
	for i, x := range d.subs {
		if x == s {
			d.subs = append(d.subs[:i], d.subs[i+1:]...)
			break
		}
	}
	if len(d.subs) == 0 && n.dialogs[d.localTag] == d {
		delete(n.dialogs, d.localTag)
	}
	n.reschedLocked(s, now)
}

// sendLocked builds the subscription's NOTIFY when one is due and may go:
// its 2xx was sent, none is in flight, and (unless urgent or final) the
// rate-limit interval since the last one has passed; a slot under
// MaxPending is free, else it waits in the FIFO. Otherwise it is
// rescheduled for when it may.
func (n *Notifier) sendLocked(s *Subscription, now int64, a *after) {
	final := s.term != ""
	switch {
	case n.closed || !s.ready || s.inFlight || s.waiting || s.finalSent,
		!final && !s.dirty,
		!final && !s.urgent && now < s.lastSent+int64(n.cfg.MinInterval):
		n.reschedLocked(s, now)
		return
	}
	if n.inFlight >= n.cfg.MaxPending {
		s.waiting = true
		n.fifo = append(n.fifo, s)
		n.reschedLocked(s, now)
		return
	}
	st, body := s.State(), false
	switch {
	case final:
		st = s.prevState
		body = st == StateActive && s.term == "timeout"
		s.finalSent = true
	default:
		body = st == StateActive
	}
	req := s.d.notify(s, subscriptionState(st, time.Duration(s.expires.Load()-now), s.term), n.env.ServerName)
	s.inFlight = true
	n.inFlight++
	full := s.needFull
	s.dirty, s.urgent, s.needFull = false, false, false
	s.lastSent, s.deadline = now, now+int64(n.cfg.NotifyTimeout)
	n.flightPush(s)
	n.reschedLocked(s, now)
	n.armLocked(now)
	if a.jobs == nil {
		a.jobs = make([]job, 0, max(a.hint, 1))
	}
	a.jobs = append(a.jobs, job{s: s, req: req, flow: s.d.flow, body: body, full: full})
}

// drainLocked sends for the subscriptions waiting for a slot, while there
// are slots.
func (n *Notifier) drainLocked(now int64, a *after) {
	for n.inFlight < n.cfg.MaxPending && n.fifoHead < len(n.fifo) {
		s := n.fifo[n.fifoHead]
		n.fifo[n.fifoHead] = nil
		n.fifoHead++
		s.waiting = false
		n.sendLocked(s, now, a)
	}
	if n.fifoHead == len(n.fifo) {
		n.fifo, n.fifoHead = n.fifo[:0], 0
	} else if n.fifoHead > 1024 && n.fifoHead*2 > len(n.fifo) {
		k := copy(n.fifo, n.fifo[n.fifoHead:])
		clear(n.fifo[k:])
		n.fifo, n.fifoHead = n.fifo[:k], 0
	}
}

// ending reports the responses to a NOTIFY that end the subscription: 481
// and 408 (RFC 6665 §4.2.2), and the others RFC 5057 §5.1 says end the
// usage or the dialog.
func ending(code int) bool {
	switch code {
	case 404, 405, 408, 410, 416, 481, 482, 483, 484, 485, 489, 501, 502, 604:
		return true
	}
	return false
}

// notifyDone takes the outcome of a NOTIFY.
func (n *Notifier) notifyDone(s *Subscription, res *sip.Response, err error) {
	n.mu.Lock()
	if n.closed || !s.inFlight {
		n.mu.Unlock()
		return
	}
	s.inFlight = false
	n.inFlight--
	n.flightRemove(s)
	now := n.now()
	var a after
	if err == nil && res != nil && res.StatusCode < 300 {
		s.failures = 0
	} else {
		reason, end := "transport", true
		switch {
		case errors.Is(err, transaction.ErrTimeout):
			reason = "timeout"
		case err == nil && res != nil:
			reason, end = strconv.Itoa(res.StatusCode), ending(res.StatusCode)
		}
		s.pkg.m.failures.WithLabelValues(reason).Inc()
		n.log.Debug("NOTIFY failed", "id", s.id, "package", s.pkg.name, "resource", s.resource, "reason", reason)
		s.failures++
		if end || s.failures >= maxFailures {
			n.endLocked(s, "timeout", false, &a, now)
			s.finalSent = true
		} else if s.term == "" {
			s.dirty, s.needFull = true, true
		}
	}
	n.sendLocked(s, now, &a)
	n.drainLocked(now, &a)
	n.mu.Unlock()
	n.finish(&a)
}

// End ends every subscription to resource in pkg with a final NOTIFY,
// terminated;reason=reason and no state: the resource is gone (a deleted
// list: noresource, RFC 6665 §4.2.2).
func (n *Notifier) End(pkg, resource, reason string) {
	pe := n.lookup(pkg)
	if pe == nil {
		return
	}
	var a after
	n.mu.Lock()
	now := n.now()
	for _, s := range append([]*Subscription(nil), n.byRes[resKey{pe, resource}]...) {
		if s.term != "" {
			continue
		}
		n.endLocked(s, reason, true, &a, now)
		n.sendLocked(s, now, &a)
	}
	n.mu.Unlock()
	n.finish(&a)
}
