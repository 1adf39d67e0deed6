// Package subscriber is the subscriber side of RFC 6665: the server's own
// subscriptions to resources elsewhere, such as the presence of the
// members of a resource list (RFC 4662) that live in other domains
// ("back-end subscriptions").
//
// A Client keeps each subscription alive on its own: it sends the initial
// SUBSCRIBE, builds the dialog from the 2xx (or from a NOTIFY that
// overtook it, §4.1.2.4), refreshes at about two thirds of the granted
// duration, follows 423 with the Min-Expires asked for, starts over after
// a 481 or a lapse, and after a failure or a NOTIFY ending the
// subscription either subscribes again (at once, or after a back-off or
// the Retry-After given) or gives up, as §4.1.3 says for each reason. What
// the NOTIFYs carry is handed to Env.OnState.
//
// # Concurrency and timers
//
// One mutex guards the subscriptions. Every timed event (retries,
// refreshes, expiries, Timer N, deadlines of requests in flight) waits in
// one heap behind a single Clock timer: no goroutine per subscription.
// Requests are built under the mutex and handed to the Sender after it is
// released, so a Sender may answer synchronously; OnState is called
// without it too, in order per subscription.
//
// Logs: feature=subscriber.
package subscriber

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hlas-voip/hlas/handler"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
)

// Defaults of Config.
const (
	DefaultExpires  = time.Hour
	DefaultRetryMin = 30 * time.Second
	DefaultRetryMax = 30 * time.Minute
	DefaultMax      = 100000
)

const (
	// requestTimeout is how long the Sender has to report a request's
	// outcome: longer than a transaction lasts (Timer F, 64×T1 = 32 s), so
	// it fires only for a Sender that never calls back.
	requestTimeout = 40 * time.Second
	// timerN is how long a subscription whose SUBSCRIBE was accepted waits
	// for its first NOTIFY before it counts as failed (RFC 6665 §4.1.2.4:
	// 64×T1).
	timerN = 32 * time.Second
	// maxMinExpires is the largest Min-Expires of a 423 that is followed;
	// a notifier asking for more gets no retry but a back-off.
	maxMinExpires = 24 * time.Hour
	// maxRetryAfter bounds the wait a Retry-After can impose.
	maxRetryAfter = 24 * time.Hour
	// endedCap is how many ended dialogs are remembered, so that their
	// late NOTIFYs are answered (481, or 200 to a final one) rather than
	// passed on as strangers.
	endedCap = 4096
	// maxQueued bounds the states waiting for a slow OnState per
	// subscription; beyond it the oldest are dropped.
	maxQueued = 64
	// maxFails caps the failure count, which only grows the back-off.
	maxFails = 64
)

// Sender sends a request of the server's own: out of a dialog it is
// routed by its Request-URI, in one by its Route set and Request-URI. The
// Sender adds the Via. done gets the final response or an error
// (transaction.ErrTimeout, a transport error), once. An error returned
// means done will not be called. The request is the Sender's from then
// on.
type Sender interface {
	SendRequest(req *sip.Request, done func(*sip.Response, error)) error
}

// Config tunes a Client. The zero value takes the defaults.
type Config struct {
	// Expires is the duration asked for in SUBSCRIBE (whole seconds).
	// Default 1h.
	Expires time.Duration `yaml:"expires"`
	// RetryMin and RetryMax bound the back-off after a failure: the first
	// retry waits RetryMin to 1.5×RetryMin, each next one twice as long,
	// up to RetryMax. Defaults 30s and 30m.
	RetryMin time.Duration `yaml:"retry_min"`
	RetryMax time.Duration `yaml:"retry_max"`
	// Max bounds the subscriptions held; Subscribe beyond it fails.
	// Default 100000.
	Max int `yaml:"max"`
}

// Validate reports settings that cannot work, naming the field.
func (c Config) Validate() error {
	switch {
	case c.Expires < 0 || (c.Expires > 0 && c.Expires < time.Second):
		return fmt.Errorf("subscriber: expires %v: want at least 1s", c.Expires)
	case c.Expires > maxDelta*time.Second:
		return fmt.Errorf("subscriber: expires %v too long", c.Expires)
	case c.RetryMin < 0:
		return fmt.Errorf("subscriber: retry_min %v is negative", c.RetryMin)
	case c.RetryMax < 0:
		return fmt.Errorf("subscriber: retry_max %v is negative", c.RetryMax)
	case c.Max < 0:
		return fmt.Errorf("subscriber: max %d is negative", c.Max)
	}
	d := c.withDefaults()
	if d.RetryMin > d.RetryMax {
		return fmt.Errorf("subscriber: retry_min %v above retry_max %v", d.RetryMin, d.RetryMax)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Expires == 0 {
		c.Expires = DefaultExpires
	}
	if c.RetryMin == 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax == 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.Max == 0 {
		c.Max = DefaultMax
	}
	return c
}

// Env is what the Client needs from the server.
type Env struct {
	// Sender sends the SUBSCRIBEs. Required.
	Sender Sender
	// Clock times retries, refreshes and expiries. Nil: the wall clock.
	Clock transaction.Clock
	// Logger receives the logs, with feature=subscriber. Nil discards
	// them.
	Logger *slog.Logger
	// Contact is the server's Contact for the dialogs: where the NOTIFYs
	// come. It may be called with the Client's lock held, so it must not
	// call the Client. Required.
	Contact func() sip.Address
	// OnState reports a subscription's news: the body of each NOTIFY
	// (its type and a copy of it) with its Subscription-State, and the
	// failures. It is called outside the Client's lock, in order per
	// subscription, and may call the Client. Nil: nobody listens.
	OnState func(key string, st State)
	// UserAgent goes in the User-Agent of requests and the Server of
	// responses ("": none).
	UserAgent string
}

// State is a subscription's news.
type State struct {
	// Status is "pending", "active" or "terminated" (from a NOTIFY's
	// Subscription-State, or "terminated" when the subscription lapsed
	// unrefreshed), or "failed" when a SUBSCRIBE failed.
	Status string
	// Reason is the reason of "terminated" (RFC 6665 §4.1.3: deactivated,
	// probation, rejected, timeout, giveup, noresource, invariant, or ""
	// when none was given), and for "failed" the status code of the
	// response ("403"), "timeout" (no response, or no NOTIFY after the
	// 2xx), "transport" or "malformed" (a 2xx without To tag).
	Reason string
	// ContentType and Body are the NOTIFY's body ("" and nil without).
	ContentType string
	Body        []byte
}

// Client is the server's subscriber. It is safe for concurrent use.
type Client struct {
	cfg   Config
	env   Env
	clock transaction.Clock
	log   *slog.Logger

	mu        sync.Mutex
	subs      map[string]*sub // by key
	byTag     map[string]*sub // by our From tag of the current attempt
	ended     map[string]string
	endedRing []string
	endedNext int
	heap      wakeHeap
	timer     transaction.Timer
	timerAt   int64
	timerGen  uint64
	closed    bool
}

// sub is one subscription. Its fields change under the Client's mutex.
type sub struct {
	key     string
	from    sip.Address // without tag
	fromTxt string
	to      sip.URI
	toTxt   string
	event   string
	accept  string
	expires time.Duration // asked for; raised by a 423

	// The current attempt: its Call-ID and our tag (both "" between
	// attempts), our From with that tag, the dialog once made.
	callID    string
	localTag  string
	local     sip.Address
	localSeq  uint32
	d         *dialog
	attempt   uint64 // numbers the requests: an outcome of an older one is stale
	inFlight  bool
	refresh   bool  // the request in flight is a refresh
	deadline  int64 // unix ns: the Sender's last moment to report
	notifyBy  int64 // Timer N: 0 once a NOTIFY came
	expiresAt int64 // 0 while unknown
	refreshAt int64 // 0: none planned
	madeAt    int64 // when the dialog was made
	retryAt   int64 // between attempts: when the next begins

	fails    int
	dead     bool   // gave up: waits for Unsubscribe
	gone     bool   // unsubscribed or closed
	lastFail string // the "failed" reason last reported, so it is told once

	wake int64
	idx  int

	outq       []State
	delivering bool
}

// New returns a Client.
func New(cfg Config, env Env) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if env.Sender == nil {
		return nil, errors.New("subscriber: Env.Sender is required")
	}
	if env.Contact == nil {
		return nil, errors.New("subscriber: Env.Contact is required")
	}
	if env.Clock == nil {
		env.Clock = transaction.RealClock{}
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	return &Client{
		cfg: cfg, env: env, clock: env.Clock,
		log:       env.Logger.With("feature", "subscriber"),
		subs:      map[string]*sub{},
		byTag:     map[string]*sub{},
		ended:     map[string]string{},
		endedRing: make([]string, 0, 64),
	}, nil
}

func (c *Client) now() int64 { return c.clock.Now().UnixNano() }

// Len returns how many subscriptions are held, given-up ones included.
func (c *Client) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.subs)
}

// Subscribe starts a subscription named key: from is our side's From (its
// tag is the Client's), to the resource's URI (Request-URI and To, without
// URI headers), event the Event type ("presence"), accept the Accept
// values. It returns at once; the SUBSCRIBE goes out on the Sender. When
// key exists with the same from, to, event and accept, the subscription is
// kept as it is (a given-up one too: Unsubscribe first to try again);
// with other values it is ended and started anew.
func (c *Client) Subscribe(key string, from sip.Address, to sip.URI, event string, accept []string) error {
	switch {
	case key == "":
		return errors.New("subscriber: empty key")
	case from.URI.Scheme == "" || from.Wildcard:
		return errors.New("subscriber: no From URI")
	case to.Scheme == "":
		return errors.New("subscriber: no resource URI")
	case !isToken(event):
		return fmt.Errorf("subscriber: event %q is not a token", event)
	}
	from.Params = from.Params.Del("tag")
	from = ownAddress(from)
	to.Headers = ""
	to = ownURI(to)
	fromTxt, toTxt, acc := from.String(), to.String(), acceptValue(accept)

	var o outbox
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errors.New("subscriber: closed")
	}
	now := c.now()
	if s := c.subs[key]; s != nil {
		if s.fromTxt == fromTxt && s.toTxt == toTxt && s.event == event && s.accept == acc {
			c.mu.Unlock()
			return nil
		}
		c.removeLocked(s, now, &o)
	}
	if len(c.subs) >= c.cfg.Max {
		c.mu.Unlock()
		c.finish(&o)
		return fmt.Errorf("subscriber: %d subscriptions held, the most allowed", c.cfg.Max)
	}
	s := &sub{key: key, from: from, fromTxt: fromTxt, to: to, toTxt: toTxt, event: event, accept: acc,
		expires: c.cfg.Expires, idx: -1}
	c.subs[key] = s
	c.newAttemptLocked(s)
	c.sendInitialLocked(s, now, &o)
	c.reschedLocked(s, now)
	c.mu.Unlock()
	c.finish(&o)
	return nil
}

// Unsubscribe ends the subscription named key (a SUBSCRIBE with Expires: 0
// when a dialog exists, RFC 6665 §4.1.2.3) and forgets it. A NOTIFY that
// follows gets 200 when it is the final one, else 481 (which also ends a
// subscription whose 2xx had not come yet).
func (c *Client) Unsubscribe(key string) {
	var o outbox
	c.mu.Lock()
	if s := c.subs[key]; s != nil {
		c.removeLocked(s, c.now(), &o)
	}
	c.mu.Unlock()
	c.finish(&o)
}

// Close ends every subscription (Expires: 0, best effort) and stops the
// timers. Outcomes that come later are ignored; NOTIFYs of the ended
// dialogs are still answered by HandleNOTIFY.
func (c *Client) Close() error {
	var o outbox
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	for _, s := range c.subs {
		s.gone = true
		c.endAttemptLocked(s, true, &o)
		s.outq = nil
		s.idx = -1
	}
	clear(c.subs)
	c.heap = nil
	c.closed = true
	c.timerGen++
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.mu.Unlock()
	c.finish(&o)
	return nil
}

// removeLocked ends and forgets s.
func (c *Client) removeLocked(s *sub, now int64, o *outbox) {
	delete(c.subs, s.key)
	s.gone = true
	s.outq = nil
	c.endAttemptLocked(s, true, o)
	c.reschedLocked(s, now)
}

// outbox is what a change under the mutex leaves to do once it is
// released: requests to send and subscriptions with news to deliver.
type outbox struct {
	reqs  []outReq
	notes []*sub
}

// outReq is a request to send. s is nil for one whose outcome nobody
// waits for (an unsubscription).
type outReq struct {
	s   *sub
	gen uint64
	req *sip.Request
}

// finish sends the requests of o and delivers its news, without the mutex.
func (c *Client) finish(o *outbox) {
	for _, r := range o.reqs {
		done := func(*sip.Response, error) {}
		if r.s != nil {
			s, gen := r.s, r.gen
			done = func(res *sip.Response, err error) { c.onOutcome(s, gen, res, err) }
		}
		if err := c.env.Sender.SendRequest(r.req, done); err != nil {
			c.log.Debug("SUBSCRIBE not sent", "uri", r.req.URI.String(), "err", err)
			if r.s != nil {
				c.onOutcome(r.s, r.gen, nil, err)
			}
		}
	}
	for _, s := range o.notes {
		c.deliver(s)
	}
}

// deliver calls OnState with the news of s, oldest first. One caller at a
// time drains a subscription's queue, which keeps them in order whatever
// goroutines produced them.
func (c *Client) deliver(s *sub) {
	c.mu.Lock()
	if s.delivering {
		c.mu.Unlock()
		return
	}
	s.delivering = true
	for len(s.outq) > 0 && !s.gone {
		st := s.outq[0]
		s.outq[0] = State{}
		s.outq = s.outq[1:]
		c.mu.Unlock()
		c.env.OnState(s.key, st)
		c.mu.Lock()
	}
	s.outq = nil
	s.delivering = false
	c.mu.Unlock()
}

// queueLocked adds news of s for OnState.
func (c *Client) queueLocked(s *sub, st State, o *outbox) {
	if c.env.OnState == nil || s.gone {
		return
	}
	if len(s.outq) >= maxQueued {
		c.log.Warn("state dropped: OnState too slow", "key", s.key, "status", s.outq[0].Status)
		s.outq[0] = State{}
		s.outq = s.outq[1:]
	}
	s.outq = append(s.outq, st)
	o.notes = append(o.notes, s)
}

// failLocked reports a failure, unless it is the one reported last.
func (c *Client) failLocked(s *sub, reason string, o *outbox) {
	if s.lastFail == reason {
		return
	}
	s.lastFail = reason
	c.queueLocked(s, State{Status: "failed", Reason: reason}, o)
}

// newCallID returns a random Call-ID.
func newCallID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newAttemptLocked gives s a new Call-ID and From tag, for an initial
// SUBSCRIBE.
func (c *Client) newAttemptLocked(s *sub) {
	s.callID, s.localTag = newCallID(), sip.NewTag()
	s.local = s.from
	s.local.Params = s.local.Params.Set("tag", s.localTag)
	s.localSeq = 0
	s.d = nil
	s.expiresAt, s.refreshAt, s.notifyBy, s.madeAt, s.retryAt = 0, 0, 0, 0, 0
	c.byTag[s.localTag] = s
}

// endAttemptLocked ends the current attempt: its request in flight is
// forgotten, its dialog too (after a SUBSCRIBE with Expires: 0 when
// unsubscribe is set), and its tag is remembered as ended.
func (c *Client) endAttemptLocked(s *sub, unsubscribe bool, o *outbox) {
	if unsubscribe && s.d != nil {
		s.localSeq++
		r := s.d.request(sip.SUBSCRIBE, s.callID, s.localSeq)
		r.Contact = []sip.Address{c.env.Contact()}
		subscribeHeaders(r, s.event, s.accept, 0, c.env.UserAgent)
		o.reqs = append(o.reqs, outReq{req: r})
	}
	if s.localTag != "" {
		if c.byTag[s.localTag] == s {
			delete(c.byTag, s.localTag)
		}
		c.rememberLocked(s.localTag, s.callID)
	}
	s.callID, s.localTag, s.d = "", "", nil
	s.inFlight = false
	s.attempt++
	s.expiresAt, s.refreshAt, s.notifyBy, s.retryAt = 0, 0, 0, 0
}

// rememberLocked records an ended dialog's tag and Call-ID, forgetting the
// oldest beyond endedCap.
func (c *Client) rememberLocked(tag, callID string) {
	if len(c.endedRing) < endedCap {
		c.endedRing = append(c.endedRing, tag)
	} else {
		delete(c.ended, c.endedRing[c.endedNext])
		c.endedRing[c.endedNext] = tag
		c.endedNext = (c.endedNext + 1) % endedCap
	}
	c.ended[tag] = callID
}

// secs is d in whole seconds, at least 1.
func secs(d time.Duration) int64 { return max(int64(d/time.Second), 1) }

// sendInitialLocked queues the attempt's SUBSCRIBE (RFC 6665 §4.1.2.1)
// and starts Timer N.
func (c *Client) sendInitialLocked(s *sub, now int64, o *outbox) {
	s.localSeq++
	r := &sip.Request{Method: sip.SUBSCRIBE, URI: s.to, Version: "SIP/2.0"}
	r.From, r.To, r.CallID = s.local, sip.Address{URI: s.to}, s.callID
	r.CSeq = sip.CSeq{Seq: s.localSeq, Method: sip.SUBSCRIBE}
	r.MaxForwards = 70
	r.Contact = []sip.Address{c.env.Contact()}
	subscribeHeaders(r, s.event, s.accept, secs(s.expires), c.env.UserAgent)
	s.notifyBy = now + int64(timerN)
	c.sendLocked(s, r, false, now, o)
}

// sendRefreshLocked queues a refresh in the dialog (RFC 6665 §4.1.2.2).
func (c *Client) sendRefreshLocked(s *sub, now int64, o *outbox) {
	s.localSeq++
	r := s.d.request(sip.SUBSCRIBE, s.callID, s.localSeq)
	r.Contact = []sip.Address{c.env.Contact()}
	subscribeHeaders(r, s.event, s.accept, secs(s.expires), c.env.UserAgent)
	c.sendLocked(s, r, true, now, o)
}

func (c *Client) sendLocked(s *sub, r *sip.Request, refresh bool, now int64, o *outbox) {
	s.attempt++
	s.inFlight, s.refresh = true, refresh
	s.deadline = now + int64(requestTimeout)
	o.reqs = append(o.reqs, outReq{s: s, gen: s.attempt, req: r})
}

// errNoOutcome stands for the outcome of a request the Sender never
// reported.
var errNoOutcome = errors.New("subscriber: no outcome from the Sender")

// onOutcome takes the outcome of a SUBSCRIBE.
func (c *Client) onOutcome(s *sub, gen uint64, res *sip.Response, err error) {
	if err == nil && res != nil && res.StatusCode < 200 {
		return
	}
	if err == nil && res == nil {
		err = errNoOutcome
	}
	var o outbox
	c.mu.Lock()
	if c.closed || s.gone || !s.inFlight || gen != s.attempt {
		c.mu.Unlock()
		return
	}
	now := c.now()
	s.inFlight = false
	c.outcomeLocked(s, res, err, now, &o)
	c.reschedLocked(s, now)
	c.mu.Unlock()
	c.finish(&o)
}

// outcomeLocked handles the outcome of the request in flight (already
// marked done): res, or err when there is no response.
func (c *Client) outcomeLocked(s *sub, res *sip.Response, err error, now int64, o *outbox) {
	code, reason, retryAfter := 0, "transport", int64(-1)
	switch {
	case err == nil:
		code, reason = res.StatusCode, strconv.Itoa(res.StatusCode)
		retryAfter = leadingDelta(res.Get("Retry-After"))
	case errors.Is(err, transaction.ErrTimeout), errors.Is(err, errNoOutcome):
		reason = "timeout"
	}
	if s.refresh {
		c.refreshDoneLocked(s, res, code, retryAfter, now, o)
		return
	}
	switch {
	case code >= 200 && code < 300:
		if s.d == nil {
			d, ok := dialogFromResponse(s.local, s.to, res)
			if !ok {
				c.failedLocked(s, "malformed", 0, -1, now, o)
				return
			}
			s.d, s.madeAt = d, now
		}
		c.grantedLocked(s, res, now)
		return
	case s.d != nil:
		// A NOTIFY made the dialog: the subscription exists whatever
		// this branch of a fork says.
		return
	case code == 423 && c.raiseExpiresLocked(s, res):
		c.sendInitialLocked(s, now, o)
		return
	}
	c.failedLocked(s, reason, code, retryAfter, now, o)
}

// raiseExpiresLocked follows the Min-Expires of a 423 (RFC 6665
// §4.1.2.1) when it asks for more than was asked, within reason.
func (c *Client) raiseExpiresLocked(s *sub, res *sip.Response) bool {
	n, ok := parseDelta(strings.TrimSpace(res.Get("Min-Expires")))
	if !ok {
		return false
	}
	m := time.Duration(n) * time.Second
	if m <= s.expires || m > maxMinExpires {
		return false
	}
	s.expires = m
	return true
}

// giveUp reports the responses to an initial SUBSCRIBE after which trying
// again is pointless: refused (403, 603), an event the notifier does not
// serve (489), no SUBSCRIBE there at all (405, 501), no such resource
// anywhere (604).
func giveUp(code int) bool {
	switch code {
	case 403, 405, 489, 501, 603, 604:
		return true
	}
	return false
}

// failedLocked ends a failed attempt, reports it, and gives up or plans
// the next attempt after the back-off (or the Retry-After, when longer).
func (c *Client) failedLocked(s *sub, reason string, code int, retryAfter int64, now int64, o *outbox) {
	c.endAttemptLocked(s, false, o)
	c.failLocked(s, reason, o)
	if giveUp(code) {
		c.log.Info("subscription given up", "key", s.key, "uri", s.toTxt, "reason", reason)
		s.dead = true
		return
	}
	c.log.Debug("SUBSCRIBE failed", "key", s.key, "uri", s.toTxt, "reason", reason)
	delay := c.failDelayLocked(s, now)
	if retryAfter > 0 {
		delay = max(delay, min(time.Duration(retryAfter)*time.Second, maxRetryAfter))
	}
	c.retryLocked(s, delay, now, o)
}

// refreshDoneLocked handles the outcome of a refresh (RFC 6665
// §4.1.2.2): a 2xx sets the new expiry; 481 means the notifier forgot the
// subscription, which starts anew; 423 is followed; any other failure
// leaves the subscription valid until its expiry, with a new refresh after
// the back-off.
func (c *Client) refreshDoneLocked(s *sub, res *sip.Response, code int, retryAfter int64, now int64, o *outbox) {
	switch {
	case code >= 200 && code < 300:
		s.fails = 0
		s.d.setTarget(res.Contact)
		c.grantedLocked(s, res, now)
	case code == 481:
		c.endAttemptLocked(s, false, o)
		c.retryLocked(s, c.atOnceDelayLocked(s, now), now, o)
	case code == 423 && c.raiseExpiresLocked(s, res):
		c.sendRefreshLocked(s, now, o)
	default:
		delay := c.failDelayLocked(s, now)
		if retryAfter > 0 {
			delay = max(delay, min(time.Duration(retryAfter)*time.Second, maxRetryAfter))
		}
		s.refreshAt = now + int64(delay)
	}
}

// grantedLocked takes the duration a 2xx grants (its Expires; what was
// asked for without one): refresh at two thirds of it. A 2xx granting 0
// announces the final NOTIFY; Timer N's worth of time is left for it.
func (c *Client) grantedLocked(s *sub, res *sip.Response, now int64) {
	g := s.expires
	if n, ok := parseDelta(strings.TrimSpace(res.Get("Expires"))); ok {
		g = time.Duration(n) * time.Second
	}
	if g <= 0 {
		s.expiresAt, s.refreshAt = now+int64(timerN), 0
		return
	}
	s.expiresAt, s.refreshAt = now+int64(g), now+int64(g/3*2)
}

// shortenLocked takes the expires of a NOTIFY's Subscription-State: the
// subscription lapses no later than it says.
func (c *Client) shortenLocked(s *sub, n int64, now int64) {
	g := time.Duration(n) * time.Second
	if e := now + int64(g); s.expiresAt == 0 || e < s.expiresAt {
		s.expiresAt = e
	}
	if r := now + int64(g/3*2); s.refreshAt == 0 || r < s.refreshAt {
		s.refreshAt = r
	}
}

// forgiveLocked clears the failure count when the dialog that ends had
// lived at least RetryMin: its end is news, not a repeat.
func (c *Client) forgiveLocked(s *sub, madeAt, now int64) {
	if madeAt != 0 && now-madeAt >= int64(c.cfg.RetryMin) {
		s.fails = 0
	}
}

// failDelayLocked counts a failure and returns the back-off before the
// next attempt.
func (c *Client) failDelayLocked(s *sub, now int64) time.Duration {
	c.forgiveLocked(s, s.madeAt, now)
	s.fails = min(s.fails+1, maxFails)
	return c.backoff(s.fails)
}

// atOnceDelayLocked is the wait before subscribing again after an end that
// asks for it at once (RFC 6665 §4.1.3: deactivated, timeout, a lapse, a
// 481): none, unless the subscription it replaces ended soon after it
// began, when the back-off applies so a notifier that ends every
// subscription at once is not flooded.
func (c *Client) atOnceDelayLocked(s *sub, now int64) time.Duration {
	c.forgiveLocked(s, s.madeAt, now)
	var d time.Duration
	if s.fails > 0 {
		d = c.backoff(s.fails)
	}
	s.fails = min(s.fails+1, maxFails)
	return d
}

// backoff is the wait after the n-th failure in a row: RetryMin doubled
// n-1 times, up to RetryMax, spread over half of it again (at RetryMax,
// over its last quarter) so that subscriptions failing together do not
// come back together. It stays within [RetryMin, RetryMax].
func (c *Client) backoff(n int) time.Duration {
	lo, top := c.cfg.RetryMin, c.cfg.RetryMax
	for i := 1; i < n && lo < top; i++ {
		if lo > top/2 {
			lo = top
			break
		}
		lo *= 2
	}
	lo = min(lo, top)
	hi := min(lo+lo/2, top)
	if hi == lo {
		lo = max(c.cfg.RetryMin, hi-hi/4)
	}
	if hi <= lo {
		return lo
	}
	return lo + mrand.N(hi-lo+1)
}

// retryLocked starts the next attempt now (delay 0) or plans it.
func (c *Client) retryLocked(s *sub, delay time.Duration, now int64, o *outbox) {
	if delay <= 0 {
		c.newAttemptLocked(s)
		c.sendInitialLocked(s, now, o)
		return
	}
	s.retryAt = now + int64(delay)
}

// dueLocked handles what came due for s (taken out of the heap).
func (c *Client) dueLocked(s *sub, now int64, o *outbox) {
	switch {
	case s.gone || s.dead:
	case s.inFlight && now >= s.deadline:
		s.inFlight = false
		s.attempt++
		c.outcomeLocked(s, nil, errNoOutcome, now, o)
	case s.d == nil:
		if !s.inFlight && s.retryAt != 0 && now >= s.retryAt {
			c.newAttemptLocked(s)
			c.sendInitialLocked(s, now, o)
		}
	case s.notifyBy != 0 && now >= s.notifyBy:
		// Timer N (RFC 6665 §4.1.2.4): accepted, but no NOTIFY came.
		c.log.Debug("no NOTIFY after the 2xx", "key", s.key)
		c.endAttemptLocked(s, true, o)
		c.failLocked(s, "timeout", o)
		c.retryLocked(s, c.failDelayLocked(s, now), now, o)
	case s.expiresAt != 0 && now >= s.expiresAt:
		// Not refreshed in time: the notifier has let it go too.
		c.endAttemptLocked(s, false, o)
		c.queueLocked(s, State{Status: "terminated", Reason: "timeout"}, o)
		c.retryLocked(s, c.atOnceDelayLocked(s, now), now, o)
	case !s.inFlight && s.refreshAt != 0 && now >= s.refreshAt:
		c.sendRefreshLocked(s, now, o)
	}
	c.reschedLocked(s, now)
}

// HandleNOTIFY answers a NOTIFY that belongs to one of the Client's
// dialogs: its Call-ID and To tag are those of a SUBSCRIBE of ours, its
// From tag the notifier's (a NOTIFY that comes before the SUBSCRIBE's 2xx
// makes the dialog, RFC 6665 §4.1.2.4). It answers 200 and reports the
// state; 481 to a NOTIFY of another fork or of an ended dialog (200 when
// that is the final NOTIFY); 400 without a usable Subscription-State,
// Event or dialog headers; 489 for another event; 500 when out of order.
// It returns false when the request is none of the Client's, for the
// caller to route on.
func (c *Client) HandleNOTIFY(tx handler.ServerTx, req *sip.Request) bool {
	if req.Method != sip.NOTIFY {
		return false
	}
	tag := req.To.Tag()
	if tag == "" {
		return false
	}
	ss, ssOK := parseSubState(req.Get("Subscription-State"))
	ev := eventType(req.Get("Event"))

	var o outbox
	c.mu.Lock()
	s := c.byTag[tag]
	if s == nil || s.callID != req.CallID {
		callID, known := c.ended[tag]
		c.mu.Unlock()
		if !known || callID != req.CallID {
			return false
		}
		if ssOK && ss.state == "terminated" {
			c.respond(tx, req, 200, "")
		} else {
			c.respond(tx, req, 481, "")
		}
		return true
	}
	now := c.now()
	code, phrase := c.notifyLocked(s, req, ss, ssOK, ev, now, &o)
	c.reschedLocked(s, now)
	c.mu.Unlock()
	c.respond(tx, req, code, phrase)
	c.finish(&o)
	return true
}

// notifyLocked takes a NOTIFY of s's current attempt (RFC 6665 §4.1.3)
// and returns the answer.
func (c *Client) notifyLocked(s *sub, req *sip.Request, ss subState, ssOK bool, ev string, now int64, o *outbox) (int, string) {
	switch {
	case ev == "":
		return 400, "Missing or Malformed Event"
	case !strings.EqualFold(ev, s.event):
		return 489, ""
	case !ssOK:
		return 400, "Missing or Malformed Subscription-State"
	}
	switch {
	case s.d == nil:
		d, ok := dialogFromNotify(s.local, req)
		if !ok {
			return 400, "Malformed Dialog Headers"
		}
		s.d, s.madeAt = d, now
		// Until the 2xx says, the notifier may have granted what was
		// asked for, no more.
		s.expiresAt, s.refreshAt = now+int64(s.expires), now+int64(s.expires/3*2)
	case s.d.remoteTag != req.From.Tag():
		// Another fork accepted the SUBSCRIBE too: one dialog is kept,
		// and 481 ends the others' subscriptions (RFC 6665 §4.1.2.4).
		return 481, ""
	case s.d.hasRemote && req.CSeq.Seq < s.d.remoteSeq:
		return 500, "CSeq Out Of Order"
	default:
		s.d.remoteSeq, s.d.hasRemote = req.CSeq.Seq, true
		s.d.setTarget(req.Contact)
	}
	s.notifyBy = 0
	st := State{Status: ss.state}
	if len(req.Body) > 0 {
		st.ContentType, st.Body = req.ContentType, bytes.Clone(req.Body)
	}
	switch ss.state {
	case "active", "pending":
		if ss.expires >= 0 {
			c.shortenLocked(s, ss.expires, now)
		}
		s.lastFail = ""
		c.queueLocked(s, st, o)
	case "terminated":
		st.Reason = ss.reason
		s.lastFail = ""
		c.queueLocked(s, st, o)
		c.terminatedLocked(s, ss, now, o)
	default:
		// An extension substate: nothing this client can act on.
		c.log.Debug("NOTIFY with an unknown substate", "key", s.key, "state", ss.state)
	}
	return 200, ""
}

// terminatedLocked ends the attempt after a NOTIFY with "terminated" and
// acts on its reason (RFC 6665 §4.1.3): deactivated, timeout, no reason or
// one unknown: subscribe again at once; probation, giveup: after the
// retry-after, else the back-off; rejected, noresource, invariant: never.
func (c *Client) terminatedLocked(s *sub, ss subState, now int64, o *outbox) {
	c.endAttemptLocked(s, false, o)
	wait := time.Duration(-1)
	if ss.retryAfter >= 0 {
		wait = min(time.Duration(ss.retryAfter)*time.Second, maxRetryAfter)
	}
	switch ss.reason {
	case "rejected", "noresource", "invariant":
		c.log.Info("subscription ended for good", "key", s.key, "uri", s.toTxt, "reason", ss.reason)
		s.dead = true
	case "probation", "giveup":
		d := c.failDelayLocked(s, now)
		if wait >= 0 {
			d = wait
		}
		c.retryLocked(s, d, now, o)
	default:
		c.retryLocked(s, max(c.atOnceDelayLocked(s, now), wait), now, o)
	}
}

// respond answers a NOTIFY: a 2xx within its transaction, with our
// Contact (it may be the request that made the dialog); a rejection
// statelessly, as a retransmission would get the same.
func (c *Client) respond(tx handler.ServerTx, req *sip.Request, code int, phrase string) {
	r := sip.NewResponse(req, code, phrase)
	if c.env.UserAgent != "" {
		r.Add("Server", c.env.UserAgent)
	}
	var err error
	if code < 300 {
		r.Contact = []sip.Address{c.env.Contact()}
		err = tx.Respond(r)
	} else {
		err = tx.RespondStateless(r)
	}
	if err != nil {
		c.log.Debug("response to NOTIFY not sent", "code", code, "err", err)
	}
}
