package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/event"
	"github.com/hlas-voip/hlas/event/publish"
	"github.com/hlas-voip/hlas/event/subscriber"
	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transport"
	"github.com/hlas-voip/hlas/store"
)

// Events is the presence and events section of the configuration
// (docs/events.md): the server is the notifier (RFC 6665) and the event
// state compositor (RFC 3903) for the users of its domains.
type Events struct {
	// Enabled turns the server's event packages on; off, SUBSCRIBE and
	// PUBLISH are routed like any request. Default true.
	Enabled *bool `yaml:"enabled"`
	// Subscriptions bounds and times subscriptions: min_expires,
	// max_expires, min_notify_interval, max_subscriptions, max_pending;
	// see event.Config.
	Subscriptions event.Config `yaml:"subscriptions"`
	// Publish bounds publications and times their commits: min_expires,
	// max_expires, default_expires, max_body, max_publications,
	// max_per_resource, max_bytes, commit_window; see publish.Config.
	Publish publish.Config `yaml:"publish"`
}

func (c Events) on() bool { return c.Enabled == nil || *c.Enabled }

// events is the server's notifier with its packages.
type events struct {
	s   *Server
	log *slog.Logger
	n   *event.Notifier
	pub *publish.State

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	// docs caches the composed presence documents (event_packages.go).
	docs presenceDocs

	// rls is the resource list server (event_rls.go).
	rls *rls

	// ended are the presence watchers whose subscriptions ended lately,
	// by presentity, for the next watcher-info NOTIFYs (RFC 3857 §5.1);
	// winfoSeen is, per watcher-info subscription, the last of them it
	// was sent.
	endedMu   sync.Mutex
	ended     map[string][]endedWatcher
	endSeq    uint64
	winfoSeen map[string]uint64

	// rules are the presentities' allow and block lists (hlas presence),
	// read from the store when its version changes.
	rulesLoad    sync.Mutex // orders the reloads (events goroutine, XCAP)
	rulesMu      sync.RWMutex
	rules        map[string]map[string]string // presentity → watcher → allow|block
	rulesVersion int64
}

// openEvents builds the notifier and the publication state over the
// store, with the packages of the files server/event_*.go.
func (s *Server) openEvents(log *slog.Logger) (*events, error) {
	if !s.cfg.Events.on() {
		return nil, nil
	}
	ev := &events{s: s, log: log.With("feature", "events"), stop: make(chan struct{}),
		docs: presenceDocs{m: map[string]*presenceDoc{}}, ended: map[string][]endedWatcher{}, winfoSeen: map[string]uint64{}}
	ev.rls = newRLS(ev)
	var err error
	ev.pub, err = publish.New(s.cfg.Events.Publish, publish.Env{
		Store: s.store, Logger: log, Callers: s.cfg.Workers, // PUBLISHes are served by the workers
		OnExpire: func(pkg, resource string) {
			if pkg == "presence" {
				ev.docs.forget(resource)
			}
			if ev.n != nil {
				ev.changed(pkg, resource)
			}
		},
	}, map[string]publish.Codec{"presence": pidfCodec{}, "dialog": dialogCodec{}})
	if err != nil {
		return nil, err
	}
	if err := ev.loadRules(); err != nil {
		return nil, err
	}
	ev.rls.back, err = subscriber.New(subscriber.Config{}, subscriber.Env{
		Sender: backSender{s}, Clock: s.txl.Config().Clock, Logger: ev.log,
		Contact:   func() sip.Address { return s.ownContact("UDP", netip.AddrPort{}) },
		OnState:   ev.rls.backChanged,
		UserAgent: s.cfg.ServerName,
	})
	if err != nil {
		return nil, err
	}
	ev.n, err = event.New(s.cfg.Events.Subscriptions, event.Env{
		Sender: eventSender{s}, Clock: s.txl.Config().Clock, Logger: log, Registerer: s.reg,
		Store:       subscriptionStore{s.store},
		Contact:     s.ownContact,
		NewResponse: s.response, ServerName: s.cfg.ServerName,
		OnWatcher: ev.onWatcher,
	}, presencePackage{ev}, winfoPackage{ev}, dialogPackage{ev}, mwiPackage{ev}, regPackage{ev})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	v, err := s.store.XCAPVersion(ctx)
	cancel()
	if err != nil {
		return nil, err
	}
	if err := ev.rls.load(v); err != nil {
		return nil, err
	}
	return ev, nil
}

// start runs the goroutine that expires publications and watches the
// store's mailboxes.
func (ev *events) start() {
	if ev == nil {
		return
	}
	ev.wg.Add(1)
	go ev.run()
}

func (ev *events) close() {
	if ev == nil {
		return
	}
	ev.once.Do(func() { close(ev.stop) })
	ev.wg.Wait()
	_ = ev.rls.back.Close()
	_ = ev.n.Close()
}

func (ev *events) run() {
	defer ev.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	since := time.Now()
	for {
		select {
		case <-ev.stop:
			return
		case now := <-tick.C:
			ev.pub.Sweep(now)
			if w := ev.s.dialogs; w != nil {
				w.sweep(now)
			}
			since = ev.pollMailboxes(since)
			ev.pollRules()
			ev.rls.poll()
			ev.rls.reconcile()
			ev.pruneEnded(now)
		case <-ev.rls.poke:
			ev.rls.reconcile()
		}
	}
}

// ownContact is the Contact of the server's side of a subscription
// dialog: the listener the SUBSCRIBE came in on, so in-dialog requests
// come back to it (and to the events step, which recognises the server's
// own address).
func (s *Server) ownContact(proto string, local netip.AddrPort) sip.Address {
	u := sip.URI{Scheme: "sip", Host: hostOf(local.Addr()), Port: int(local.Port())}
	if local.Addr().IsUnspecified() || !local.IsValid() {
		// A wildcard socket: the first bound address of the protocol.
		for _, a := range s.Addrs() {
			if strings.EqualFold(a.Proto, proto) && !a.Addr.Addr().IsUnspecified() {
				u.Host, u.Port = hostOf(a.Addr.Addr()), int(a.Addr.Port())
				break
			}
		}
	}
	if !strings.EqualFold(proto, "UDP") {
		u.Params = sip.Params(";transport=" + strings.ToLower(proto))
	}
	return sip.Address{URI: u}
}

func hostOf(ip netip.Addr) string {
	if ip.Is6() && !ip.Is4In6() {
		return "[" + ip.String() + "]"
	}
	return ip.Unmap().String()
}

// eventSender sends the notifier's NOTIFYs through the proxy. Their done
// never blocks (event.Sender), so their responses are handled where they
// are read.
type eventSender struct{ s *Server }

func (es eventSender) SendRequest(req *sip.Request, f event.Flow, done func(*sip.Response, error)) error {
	return es.s.proxy.SendRequestWith(req, proxyFlow(f), done, proxy.SendOptions{Inline: true})
}

func proxyFlow(f event.Flow) proxy.Flow {
	return proxy.Flow{Proto: f.Proto, Local: f.Local, Remote: f.Remote, Conn: f.Conn}
}

// Batch implements event.BatchSender: the NOTIFYs of one change over UDP
// leave in one sendmmsg per socket (transport.Batch).
func (es eventSender) Batch() event.SenderBatch {
	if eb, _ := es.s.batches.Get().(*eventBatch); eb != nil {
		return eb
	}
	return &eventBatch{s: es.s, b: es.s.tm.NewBatch()}
}

// eventBatch is a batch of NOTIFYs (event.SenderBatch), pooled in
// Server.batches with its buffers.
type eventBatch struct {
	s *Server
	b *transport.Batch
}

func (eb *eventBatch) SendRequest(req *sip.Request, f event.Flow, done func(*sip.Response, error)) error {
	return eb.s.proxy.SendRequestWith(req, proxyFlow(f), done, proxy.SendOptions{Inline: true, Batch: eb.b})
}

func (eb *eventBatch) Flush() {
	if err := eb.b.Flush(); err != nil {
		eb.s.log.Debug("NOTIFY batch", "err", err)
	}
	eb.s.batches.Put(eb)
}

func eventFlow(tx ServerTx) event.Flow {
	if ft, ok := tx.(proxy.FlowTx); ok {
		f := ft.Flow()
		return event.Flow{Proto: f.Proto, Local: f.Local, Remote: f.Remote, Conn: f.Conn}
	}
	return event.Flow{Proto: tx.Transport(), Remote: tx.Source()}
}

// inDialog is the step before localUAS: a SUBSCRIBE inside one of the
// notifier's dialogs (a refresh, an unsubscribe) is addressed to the
// server's own Contact, which localUAS would otherwise answer 405.
func (s *Server) eventsInDialog(next Handler) Handler {
	ev := s.events
	if ev == nil {
		return next
	}
	return HandlerFunc(func(ctx context.Context, tx ServerTx, req *sip.Request) {
		if req.To.Tag() != "" && req.URI.User == "" && s.self.isSelf(&req.URI) {
			switch req.Method {
			case sip.SUBSCRIBE:
				ev.n.HandleSUBSCRIBE(ctx, tx, req, eventFlow(tx), "", "")
				return
			case sip.NOTIFY:
				// The state of a list member of another domain.
				if ev.rls.back.HandleNOTIFY(tx, req) {
					return
				}
			}
		}
		next.ServeSIP(ctx, tx, req)
	})
}

// eventsStep is the step after authentication: SUBSCRIBE and PUBLISH
// outside a dialog to a user of our domains are the server's (RFC 6665,
// RFC 3903); others are routed on. The watcher is the authenticated user,
// "" for a request nobody authenticated (a user of another domain).
func (s *Server) eventsStep(next Handler) Handler {
	ev := s.events
	if ev == nil {
		return next
	}
	return HandlerFunc(func(ctx context.Context, tx ServerTx, req *sip.Request) {
		if (req.Method != sip.SUBSCRIBE && req.Method != sip.PUBLISH) || req.To.Tag() != "" ||
			req.URI.User == "" || !req.URI.IsSIP() {
			next.ServeSIP(ctx, tx, req)
			return
		}
		domain, ok := s.aorDomain(&req.URI)
		if !ok {
			next.ServeSIP(ctx, tx, req)
			return
		}
		resource := strings.ToLower(sip.Unescape(req.URI.User)) + "@" + domain
		// The watcher is the authenticated user; a request nobody
		// authenticated comes from another domain (a From of ours would
		// have been challenged) or a trusted peer, and is known by its
		// From.
		watcher := ""
		if id, ok := auth.FromContext(ctx); ok && id.Authenticated {
			watcher = id.AOR()
		} else if d, ok := s.aorDomain(&req.From.URI); req.From.URI.User != "" && req.From.URI.IsSIP() {
			if !ok {
				d = strings.ToLower(req.From.URI.Hostname())
			}
			watcher = strings.ToLower(sip.Unescape(req.From.URI.User)) + "@" + d
		}
		if req.Method == sip.SUBSCRIBE {
			// A list's subscriber must take its state as a list (RFC
			// 4662 §5.1).
			if svc := ev.rls.service(resource); svc != nil && !req.HasOption("Supported", "eventlist") {
				pkg, _, _ := strings.Cut(req.Get("Event"), ";")
				if svc.serves(strings.ToLower(strings.TrimSpace(pkg))) {
					res := s.response(req, 421, "")
					res.Add("Require", "eventlist")
					_ = tx.Respond(res)
					return
				}
			}
			pkg, _, _ := strings.Cut(req.Get("Event"), ";")
			if svc := ev.rls.service(resource); svc == nil && ev.n.Serves(strings.TrimSpace(pkg)) && !ev.known(ctx, resource) {
				_ = tx.Respond(s.response(req, 404, ""))
				return
			}
			ev.n.HandleSUBSCRIBE(ctx, tx, req, eventFlow(tx), watcher, resource)
			return
		}
		ev.publish(tx, req, watcher, resource)
	})
}

// known reports whether a SUBSCRIBE to resource may be served (RFC 3856
// §6.6.2: a SUBSCRIBE to nobody gets 404): one of our users, or anyone in
// a domain without authentication (users there exist by registering).
func (ev *events) known(ctx context.Context, resource string) bool {
	_, domain, _ := strings.Cut(resource, "@")
	return ev.s.auth.IsOpen(domain) || ev.isUser(ctx, resource)
}

// isUser reports whether aor is a user's: a subscriber, registered, or a
// static location. A store failure counts as a user (it is not the user's
// absence).
func (ev *events) isUser(ctx context.Context, aor string) bool {
	if len(ev.s.registrar.Lookup(aor)) > 0 {
		return true
	}
	// The static locations as the proxy routes now: a reload may have
	// changed them since the server started.
	locations := ev.s.cfg.Routing.Locations
	if ev.s.proxy != nil {
		locations = ev.s.proxy.Config().Locations
	}
	if len(locations[aor]) > 0 {
		return true
	}
	user, domain, _ := strings.Cut(aor, "@")
	ok, err := ev.s.auth.IsSubscriber(ctx, user, domain)
	return ok || err != nil
}

// publish answers a PUBLISH (RFC 3903 §4.1, §6): only a user may publish
// its own state.
func (ev *events) publish(tx ServerTx, req *sip.Request, watcher, resource string) {
	s := ev.s
	pkg, _, _ := strings.Cut(req.Get("Event"), ";")
	pkg = strings.ToLower(strings.TrimSpace(pkg))
	if pkg != "presence" && pkg != "dialog" {
		res := s.response(req, 489, "")
		res.Add("Allow-Events", "presence, dialog")
		_ = tx.Respond(res)
		return
	}
	if watcher != resource {
		_ = tx.Respond(s.response(req, 403, "Only the presentity may publish its state"))
		return
	}
	r := publish.Request{Event: pkg, Resource: resource, IfMatch: req.Get("SIP-If-Match"), Expires: -1,
		ContentType: req.ContentType, Body: req.Body}
	if v := req.Get("Expires"); v != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			res := s.response(req, 400, "")
			res.Add("Warning", `399 hlas "bad Expires"`)
			_ = tx.Respond(res)
			return
		}
		r.Expires = n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	out := ev.pub.Publish(ctx, r)
	cancel()
	res := s.response(req, out.Code, "")
	switch {
	case out.Code >= 200 && out.Code < 300:
		res.Add("SIP-ETag", out.ETag)
		res.Add("Expires", strconv.Itoa(out.Expires))
	case out.Code == 423:
		res.Add("Min-Expires", strconv.Itoa(out.MinExpires))
	case out.Code == 415:
		res.Add("Accept", strings.Join(out.Accept, ", "))
	case out.Code == 400 && out.Warning != "":
		res.Add("Warning", `399 hlas "`+warnEscape(out.Warning)+`"`)
	case out.Code == 503:
		res.Add("Retry-After", retryAfter)
	}
	if out.Changed && pkg == "presence" {
		ev.docs.forget(resource) // before the 200: a NOTIFY it triggers composes anew
	}
	_ = tx.Respond(res)
	if out.Changed {
		ev.changed(pkg, resource)
	}
}

// subscriptionStore keeps the notifier's subscriptions in the store, as
// JSON records.
type subscriptionStore struct{ st store.Subscriptions }

func (ss subscriptionStore) PutSubscription(ctx context.Context, s event.StoredSubscription) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return ss.st.PutSubscriptionRecord(ctx, s.ID, s.Expires, b)
}

func (ss subscriptionStore) DeleteSubscription(ctx context.Context, id string) error {
	return ss.st.DeleteSubscriptionRecord(ctx, id)
}

func (ss subscriptionStore) Subscriptions(ctx context.Context, now time.Time) ([]event.StoredSubscription, error) {
	recs, err := ss.st.SubscriptionRecords(ctx, now)
	if err != nil {
		return nil, err
	}
	out := make([]event.StoredSubscription, 0, len(recs))
	for _, r := range recs {
		var s event.StoredSubscription
		if json.Unmarshal(r, &s) == nil {
			out = append(out, s)
		}
	}
	return out, nil
}

// loadRules reads the presence rules and their version.
func (ev *events) loadRules() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := ev.s.store.PresenceRulesVersion(ctx)
	if err != nil {
		return err
	}
	list, err := ev.s.store.PresenceRules(ctx, "")
	if err != nil {
		return err
	}
	rules := map[string]map[string]string{}
	for _, r := range list {
		if rules[r.Presentity] == nil {
			rules[r.Presentity] = map[string]string{}
		}
		rules[r.Presentity][r.Watcher] = r.Action
	}
	ev.rulesMu.Lock()
	old := ev.rules
	ev.rules, ev.rulesVersion = rules, v
	ev.rulesMu.Unlock()
	if ev.n != nil {
		// The subscriptions of presentities whose rules changed are
		// decided again: a pending watcher now allowed gets the state, a
		// blocked one a final NOTIFY.
		for p := range old {
			if !maps.Equal(old[p], rules[p]) {
				ev.reauthorize(p)
			}
		}
		for p := range rules {
			if _, seen := old[p]; !seen {
				ev.reauthorize(p)
			}
		}
	}
	return nil
}

func (ev *events) reauthorize(presentity string) {
	ev.n.Reauthorize("presence", presentity)
	ev.n.Reauthorize("dialog", presentity)
	ev.rls.memberChanged("presence", presentity)
	ev.rls.memberChanged("dialog", presentity)
}

// changed tells the notifier that resource's state in pkg changed, for
// its own watchers and for the lists it is a member of.
func (ev *events) changed(pkg, resource string) {
	if ev.s != nil && ev.s.apiEvents != nil && presencePkg(pkg) {
		ev.s.apiEvents.presence(resource)
	}
	ev.n.Changed(pkg, resource)
	ev.rls.memberChanged(pkg, resource)
}

// backSender sends the back-end subscriptions' requests through the
// proxy, which routes them by their Route set or Request-URI.
type backSender struct{ s *Server }

func (b backSender) SendRequest(req *sip.Request, done func(*sip.Response, error)) error {
	return b.s.proxy.SendRequest(req, proxy.Flow{}, done)
}

// endedWatcher is a presence watcher whose subscription ended.
type endedWatcher struct {
	w   event.WatcherInfo
	seq uint64
	at  time.Time
}

// maxEnded bounds the ended watchers remembered per presentity.
const maxEnded = 100

// onWatcher is the notifier's news of a subscription's state: the
// watcher-info of presence keeps those that ended, the list server
// forgets its own.
func (ev *events) onWatcher(pkg, resource string, w event.WatcherInfo) {
	if w.State != event.StateTerminated {
		return
	}
	switch pkg {
	case "presence":
		ev.endedMu.Lock()
		ev.endSeq++
		l := append(ev.ended[resource], endedWatcher{w: w, seq: ev.endSeq, at: time.Now()})
		if len(l) > maxEnded {
			l = l[len(l)-maxEnded:]
		}
		ev.ended[resource] = l
		ev.endedMu.Unlock()
	case "presence.winfo":
		ev.endedMu.Lock()
		delete(ev.winfoSeen, w.ID)
		ev.endedMu.Unlock()
	}
	ev.rls.ended(w.ID)
}

// endedSince returns resource's ended watchers that the watcher-info
// subscription id has not been sent, and marks them sent.
func (ev *events) endedSince(sub *event.Subscription) []event.WatcherInfo {
	id := sub.ID()
	ev.endedMu.Lock()
	defer ev.endedMu.Unlock()
	seen := ev.winfoSeen[id]
	var out []event.WatcherInfo
	for _, e := range ev.ended[sub.Resource()] {
		if e.seq > seen {
			out = append(out, e.w)
		}
	}
	if sub.State() != event.StateTerminated {
		// An ended subscription's last NOTIFY remembers nothing: its
		// entry went with it.
		ev.winfoSeen[id] = ev.endSeq
	}
	return out
}

// pruneEnded forgets watchers that ended over a minute ago: by then every
// watcher-info subscription has been told (its NOTIFYs are at most
// min_notify_interval apart).
func (ev *events) pruneEnded(now time.Time) {
	keep := time.Minute + 2*ev.s.cfg.Events.Subscriptions.MinInterval
	ev.endedMu.Lock()
	defer ev.endedMu.Unlock()
	for r, l := range ev.ended {
		i := 0
		for i < len(l) && now.Sub(l[i].at) > keep {
			i++
		}
		if i == len(l) {
			delete(ev.ended, r)
		} else if i > 0 {
			ev.ended[r] = slices.Clone(l[i:])
		}
	}
}

// pollRules reloads the rules when `hlas presence` changed them.
func (ev *events) pollRules() {
	ev.rulesLoad.Lock()
	defer ev.rulesLoad.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	v, err := ev.s.store.PresenceRulesVersion(ctx)
	cancel()
	ev.rulesMu.RLock()
	same := v == ev.rulesVersion
	ev.rulesMu.RUnlock()
	if err != nil || same {
		return
	}
	if err := ev.loadRules(); err != nil {
		ev.log.Error("presence rules", "err", err)
	}
}

// decide is the authorization of presence and dialog watchers (RFC 3857,
// RFC 5025 sub-handling): the presentity's rule about the watcher, else
// about the watcher's domain ("*@domain"), else about everyone ("*");
// block ends the subscription, confirm leaves it pending, allow and
// polite-block activate it (a politely blocked watcher sees the
// presentity offline, politeBlocked). Without a rule, users of the
// presentity's own domain are allowed and others wait pending.
func (ev *events) decide(watcher, resource string) event.Decision {
	switch action := ev.rule(watcher, resource); {
	case action == "block":
		return event.Rejected
	case action == "allow" || action == "polite-block":
		return event.Active
	case action == "confirm":
		return event.Pending
	case watcher != "" && sameDomain(watcher, resource):
		return event.Active
	}
	return event.Pending
}

// rule returns the action of the presentity's most specific rule about
// watcher, "" when none applies.
func (ev *events) rule(watcher, resource string) string {
	ev.rulesMu.RLock()
	defer ev.rulesMu.RUnlock()
	rs := ev.rules[resource]
	if len(rs) == 0 {
		return ""
	}
	if watcher != "" {
		if a := rs[watcher]; a != "" {
			return a
		}
		if _, d, ok := strings.Cut(watcher, "@"); ok {
			if a := rs["*@"+d]; a != "" {
				return a
			}
		}
	}
	return rs["*"]
}

// politeBlocked reports whether resource's rules politely block watcher:
// its subscription is active, and shows the presentity offline (RFC 5025
// §3.2.1).
func (ev *events) politeBlocked(watcher, resource string) bool {
	return ev.rule(watcher, resource) == "polite-block"
}
