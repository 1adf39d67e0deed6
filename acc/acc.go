package acc

import (
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/media"
	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
	"github.com/hlas-voip/hlas/store"
)

// Kinds of record.
const (
	KindCall     = "call"
	KindMessage  = "message"
	KindRegister = "register"
)

// Statuses of a record.
const (
	StatusAnswered  = "answered"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
)

// Who ended a call (store.CDR.EndedBy).
const (
	ByCaller = "caller"
	ByCallee = "callee"
	ByProxy  = "proxy"
)

// How a call ended (store.CDR.EndReason).
const (
	EndBye            = "bye"
	EndCancel         = "cancel"
	EndRejected       = "rejected"
	EndTimeout        = "timeout"
	EndMaxDuration    = "max-duration"
	EndSessionExpired = "session-expired"
	EndShutdown       = "shutdown"
	EndUntracked      = "untracked"
	// EndMediaTimeout: the media stopped flowing and the call was ended
	// by the proxy's decision (a media relay's inactivity timeout, see
	// EndCall).
	EndMediaTimeout = "media-timeout"
	// EndAPI: an operator hung the call up through the REST API.
	EndAPI = "api"
)

// Env is what Accounting needs from the server.
type Env struct {
	// Store keeps the records. Required.
	Store store.CDRs
	// Clock runs the call timers: the transaction layer's, so tests can
	// use a transaction.FakeClock. Nil: the wall clock.
	Clock transaction.Clock
	// Logger receives the logs, with feature=acc. Nil discards them.
	Logger *slog.Logger
	// Registerer gets the metrics (hlas_acc_*). Nil skips them.
	Registerer prometheus.Registerer
}

// Accounting tracks calls through the proxy and writes their records. It
// implements proxy.Accounting. Safe for concurrent use.
type Accounting struct {
	cfg   Config
	env   Env
	clock transaction.Clock
	log   *slog.Logger
	met   *metrics
	w     *writer
	// purger deletes expired records; nil when Retention is 0.
	purger *purger

	mu sync.Mutex
	// calls holds the tracked calls by Call-ID, those sharing one chained
	// (call.next).
	calls map[string]*call
	n     int // calls tracked
	// perUser counts the tracked calls of each authenticated user, for the
	// limit on concurrent calls against toll fraud (ActiveCalls).
	perUser map[string]int
	closed  bool
	// expiring holds the answered calls by deadline; one timer, sweep,
	// fires at the earliest (sweepAt) and ends those due. sweepGen tells
	// a stale firing from the current one.
	expiring expiryQueue
	sweep    transaction.Timer // nil when not armed
	sweepAt  time.Time
	sweepGen uint64
	// media holds the media relay's statistics of the tracked calls that
	// have them (MediaStats), until their record is made: only relayed
	// calls pay for them, and never more than the calls tracked. Nil
	// when empty, so that a burst of relayed calls leaves no buckets.
	media map[*call]media.Stats
	// INVITEs refused lately, oldest first in refusedQ (see Refused).
	refused  map[refusalKey]time.Time
	refusedQ []refusalKey
}

// New builds an Accounting and starts its writer and, with a Retention,
// its purge of expired records; Close stops them.
func New(cfg Config, env Env) (*Accounting, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if env.Store == nil {
		return nil, errors.New("acc: no store")
	}
	cfg = cfg.withDefaults()
	if env.Clock == nil {
		env.Clock = transaction.RealClock{}
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Accounting{cfg: cfg, env: env, clock: env.Clock, log: env.Logger.With("feature", "acc"), calls: map[string]*call{}}
	// The writer exists before the metrics are registered: the
	// queue_length gauge reads it as soon as a scrape comes.
	a.w = newWriter(a, cfg.QueueSize)
	a.met = newMetrics(a)
	if env.Registerer != nil {
		if err := a.met.register(env.Registerer); err != nil {
			return nil, err
		}
	}
	a.w.start()
	if cfg.Retention > 0 {
		a.purger = startPurger(a)
	}
	return a, nil
}

// Config returns the effective configuration.
func (a *Accounting) Config() Config { return a.cfg }

// ActiveCalls returns the number of calls of the authenticated user (the
// CDR's User, "user@domain") being tracked: INVITEs forwarded and not yet
// failed, answered calls not yet ended.
func (a *Accounting) ActiveCalls(user string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.perUser[user]
}

// Calls returns the number of calls being tracked.
func (a *Accounting) Calls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

// Close stops the purge of expired records (a purge under way is
// interrupted), ends the calls still open (end reason shutdown), writes
// what is queued, then the records of those calls (all of them: they do
// not go through the bounded queue), and stops the writer. Records
// offered afterwards are dropped.
func (a *Accounting) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	now := a.clock.Now()
	open := make([]*call, 0, a.n)
	for _, c := range a.calls {
		for ; c != nil; c = c.next {
			open = append(open, c)
		}
	}
	recs := make([]store.CDR, 0, len(open))
	for _, c := range open {
		c.shutdown = true
		if c.answered {
			recs = append(recs, a.endLocked(c, now, ByProxy, EndShutdown))
			continue
		}
		r := a.recordLocked(c)
		r.Status, r.EndedBy, r.EndReason, r.End = StatusFailed, ByProxy, EndShutdown, now
		a.removeLocked(c)
		recs = append(recs, r)
	}
	a.stopSweepLocked()
	a.mu.Unlock()
	if a.purger != nil {
		a.purger.stop()
	}
	a.w.close(recs)
	return nil
}

// EndCall ends the answered call of the dialog e.CallID, e.CallerTag
// (the INVITE's From tag), e.CalleeTag (its 2xx's To tag) as the proxy's
// decision, now: ended_by proxy, end_reason e.Why (EndMediaTimeout when a
// media relay saw no media for too long; written as given). Its record
// is queued, and a BYE that comes later finds no call. It is for what
// learns that a call is dead when the signalling does not say so, as
// Config.MaxDuration and the session timer do. It reports whether a call
// ended: false when no answered call of that dialog is tracked (never
// answered, ended already, answered without the proxy's Record-Route, or
// beyond Config.MaxCalls) or after Close.
func (a *Accounting) EndCall(e proxy.CallEnd) bool {
	callID, why := e.CallID, e.Why
	end := a.clock.Now()
	a.mu.Lock()
	c, side := a.dialogLocked(callID, e.CallerTag, e.CalleeTag)
	if a.closed || c == nil || side != ByCaller {
		a.mu.Unlock()
		return false
	}
	a.recordUnlock(a.endLocked(c, end, ByProxy, why), nil)
	a.log.Debug("call ended", "call-id", callID, "why", why)
	return true
}

// MediaStats implements proxy.MediaRecorder: st is what the media relay
// relayed for the call callID, which it has just let go of. The call's
// record gets them: the proxy reports them before the response or the
// EndCall that completes the record (the BYE's final response, the
// failed INVITE's, a media timeout). A call not tracked (never, or ended
// already) is ignored. The relay knows calls by Call-ID alone; of the
// rare calls sharing one (other From tags), the answered one gets them,
// else the latest. A second report replaces the first.
func (a *Accounting) MediaStats(callID string, st media.Stats) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.calls[callID]
	for o := c; o != nil; o = o.next {
		if o.answered {
			c = o
			break
		}
	}
	if c == nil {
		return
	}
	if a.media == nil {
		a.media = make(map[*call]media.Stats)
	}
	a.media[c] = st
}

// The proxy finds these by type assertion: a signature that drifts from
// its interface must fail the build, not silently lose records.
var (
	_ proxy.Accounting    = (*Accounting)(nil)
	_ proxy.MediaRecorder = (*Accounting)(nil)
	_ proxy.CallEnder     = (*Accounting)(nil)
)

// recordLocked returns c's record as it stands (call.record) with the
// media relay's statistics of it, if any.
func (a *Accounting) recordLocked(c *call) store.CDR {
	r := c.record()
	st, ok := a.media[c]
	if !ok {
		return r
	}
	r.MediaRelayed, r.MediaStreams = true, st.Streams
	r.CallerPackets, r.CallerBytes, r.CallerDropped = st.Caller.Packets, st.Caller.Bytes, st.Caller.Dropped
	r.CallerLost, r.CallerJitterMS = st.Caller.Lost, st.Caller.JitterMS
	r.CalleePackets, r.CalleeBytes, r.CalleeDropped = st.Callee.Packets, st.Callee.Bytes, st.Callee.Dropped
	r.CalleeLost, r.CalleeJitterMS = st.Callee.Lost, st.Callee.JitterMS
	return r
}

// Record writes a record made elsewhere (the server's failed REGISTERs);
// done, when not nil, runs once it is committed (or lost).
func (a *Accounting) Record(rec store.CDR, done func()) {
	if rec.ID == "" {
		rec.ID = newID()
	}
	a.w.enqueue(rec, done)
}

// Forwarding implements proxy.Accounting.
func (a *Accounting) Forwarding(ctx context.Context, req *sip.Request, info proxy.Forwarded) proxy.RequestObserver {
	inDialog := req.To.Tag() != ""
	switch {
	case req.Method == sip.INVITE && !inDialog:
		return a.startCall(req, info)
	case req.Method == sip.MESSAGE && !inDialog && a.cfg.Messages:
		return &messageObs{a: a, rec: a.newRecord(KindMessage, req, info)}
	case inDialog:
		return a.inDialog(req)
	}
	return nil
}

// newID returns 16 random hex digits.
func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newRecord starts a record from the request that opens it. Strings are
// cloned: the parser's refer into the transport's buffer.
func (a *Accounting) newRecord(kind string, req *sip.Request, info proxy.Forwarded) store.CDR {
	r := store.CDR{
		ID:         newID(),
		Kind:       kind,
		CallID:     strings.Clone(req.CallID),
		FromURI:    req.From.URI.String(),
		FromTag:    strings.Clone(req.From.Tag()),
		ToURI:      req.To.URI.String(),
		RequestURI: req.URI.String(),
		Caller:     AOR(req.From.URI),
		Callee:     AOR(req.To.URI),
		UserAgent:  strings.Clone(req.Get("User-Agent")),
		Start:      a.clock.Now(),
	}
	if info.Authenticated {
		r.User = AOR(info.User)
	}
	if info.Source.Remote.IsValid() {
		r.Source = strings.ToLower(info.Source.Proto) + ":" + info.Source.Remote.String()
	}
	return r
}

// NewRecord starts a record of kind for req, as the proxy's hook would:
// for records made outside the proxy (failed REGISTERs). source is
// "transport:ip:port", user the authenticated user or "".
func (a *Accounting) NewRecord(kind string, req *sip.Request, source, user string) store.CDR {
	r := a.newRecord(kind, req, proxy.Forwarded{})
	r.Source, r.User = source, user
	return r
}

// AOR returns a URI's address of record as user@host (host lower case,
// no port): what Caller, Callee and User hold.
func AOR(u sip.URI) string {
	host := strings.ToLower(u.Hostname())
	if u.User == "" {
		// ToLower returns a lower-case host as it is: a substring of the
		// packet the URI was parsed from, which the record must not keep
		// alive.
		return strings.Clone(host)
	}
	return sip.Unescape(u.User) + "@" + host
}

// startCall begins tracking an INVITE.
func (a *Accounting) startCall(req *sip.Request, info proxy.Forwarded) proxy.RequestObserver {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	if a.lookupLocked(req.CallID, req.From.Tag()) != nil {
		// A spiral (the request came back through the proxy, maybe after
		// another branch answered) or a retransmission: the outer
		// response context sees the outcome, and an answered call keeps
		// its entry for its BYE.
		return nil
	}
	if a.n >= a.cfg.MaxCalls {
		a.met.dropped.WithLabelValues("limit").Inc()
		return nil
	}
	r := a.newRecord(KindCall, req, info)
	c := newCall(&r, info.RecordRoute)
	c.next = a.calls[c.callID]
	a.calls[c.callID] = c
	a.n++
	if r.User != "" {
		if a.perUser == nil {
			a.perUser = make(map[string]int)
		}
		a.perUser[r.User]++
	}
	return &inviteObs{a: a, c: c}
}

// lookupLocked returns the call tracked under callID that an INVITE
// outside a dialog with From tag tag would repeat: the caller's tag is
// tag, or the callee's of an answered call.
func (a *Accounting) lookupLocked(callID, tag string) *call {
	for c := a.calls[callID]; c != nil; c = c.next {
		if from, to := c.tags(); from == tag || c.answered && to == tag {
			return c
		}
	}
	return nil
}

// dialogLocked returns the answered call of the dialog callID with tags
// from and to (RFC 3261 §12), and the side the From tag is: ByCaller
// when it is the caller's, ByCallee when the callee's.
func (a *Accounting) dialogLocked(callID, from, to string) (*call, string) {
	for _, side := range [...]string{ByCaller, ByCallee} {
		for c := a.calls[callID]; c != nil; c = c.next {
			if !c.answered {
				continue
			}
			ft, tt := c.tags()
			if side == ByCaller && ft == from && tt == to || side == ByCallee && ft == to && tt == from {
				return c, side
			}
		}
	}
	return nil, ""
}

// inDialog finds the answered call an in-dialog request belongs to: its
// BYE ends it, a refresh (re-INVITE, UPDATE) restarts its session timer.
func (a *Accounting) inDialog(req *sip.Request) proxy.RequestObserver {
	if req.Method != sip.BYE && req.Method != sip.INVITE && req.Method != sip.UPDATE {
		return nil
	}
	from, to := req.From.Tag(), req.To.Tag()
	a.mu.Lock()
	defer a.mu.Unlock()
	c, side := a.dialogLocked(req.CallID, from, to)
	if c == nil || c.done {
		return nil
	}
	if req.Method != sip.BYE {
		return &refreshObs{a: a, c: c}
	}
	cause, text := Q850(&req.Header)
	return &byeObs{a: a, c: c, at: a.clock.Now(), side: side, cause: cause, text: text}
}

// removeLocked forgets c.
func (a *Accounting) removeLocked(c *call) {
	if c.done {
		return
	}
	c.done = true
	a.n--
	if len(a.perUser) > 0 {
		var f [pFields]string
		c.text.unpack(f[:])
		if u := f[pUser]; u != "" {
			if a.perUser[u] <= 1 {
				delete(a.perUser, u)
			} else {
				a.perUser[u]--
			}
		}
	}
	if a.media != nil {
		delete(a.media, c)
		if len(a.media) == 0 {
			a.media = nil
		}
	}
	if c.idx >= 0 {
		heap.Remove(&a.expiring, int(c.idx))
		if len(a.expiring) == 0 {
			a.stopSweepLocked()
		}
	}
	switch head := a.calls[c.callID]; {
	case head == c && c.next == nil:
		delete(a.calls, c.callID)
	case head == c:
		// The key is the next call's copy of the Call-ID from now on.
		delete(a.calls, c.callID)
		a.calls[c.next.callID] = c.next
	default:
		for p := head; p != nil; p = p.next {
			if p.next == c {
				p.next = c.next
				break
			}
		}
	}
	c.next = nil
}

// endLocked ends an answered call at end, and returns its record.
func (a *Accounting) endLocked(c *call, end time.Time, by, why string) store.CDR {
	r := a.recordLocked(c)
	r.End, r.EndedBy, r.EndReason = end, by, why
	if d := end.Sub(r.Answer); d > 0 {
		r.Duration = d
	}
	a.removeLocked(c)
	return r
}

// expireAtLocked sets the deadline of the answered call c to the earlier
// of its maximum duration and its session's expiry (sessionEnd; zero
// without a session timer), and keeps it in a.expiring.
func (a *Accounting) expireAtLocked(c *call, sessionEnd time.Time) {
	maxEnd := c.answer.Add(a.cfg.MaxDuration)
	c.deadline, c.sessionTimer = maxEnd, false
	if !sessionEnd.IsZero() && !sessionEnd.After(maxEnd) {
		c.deadline, c.sessionTimer = sessionEnd, true
	}
	if c.idx < 0 {
		heap.Push(&a.expiring, c)
	} else {
		heap.Fix(&a.expiring, int(c.idx))
	}
	a.armLocked()
}

// armLocked makes sure the sweep runs by the earliest deadline. A sweep
// armed for an earlier time stays: it finds nothing due and arms anew.
func (a *Accounting) armLocked() {
	if len(a.expiring) == 0 || a.closed {
		return
	}
	next := a.expiring[0].deadline
	if a.sweep != nil && !next.Before(a.sweepAt) {
		return
	}
	a.stopSweepLocked()
	gen := a.sweepGen
	a.sweepAt = next
	a.sweep = a.clock.AfterFunc(max(next.Sub(a.clock.Now()), 0), func() { a.expire(gen) })
}

// stopSweepLocked stops the sweep timer; a firing under way is ignored.
func (a *Accounting) stopSweepLocked() {
	a.sweepGen++
	if a.sweep != nil {
		a.sweep.Stop()
		a.sweep = nil
	}
}

// expire ends the calls whose BYE did not come in time, then arms the
// sweep for the next deadline. A call ends at its deadline, whenever the
// sweep runs.
func (a *Accounting) expire(gen uint64) {
	a.mu.Lock()
	if gen != a.sweepGen {
		a.mu.Unlock()
		return
	}
	a.sweep = nil
	now := a.clock.Now()
	var ended, lost []store.CDR
	for len(a.expiring) > 0 && !a.expiring[0].deadline.After(now) {
		c := a.expiring[0]
		why := EndMaxDuration
		if c.sessionTimer {
			why = EndSessionExpired
		}
		// Queued under the lock that marks the call done, the record
		// comes before any barrier for that call (afterEndLocked).
		r := a.endLocked(c, c.deadline, ByProxy, why)
		if !a.w.tryEnqueue(r, nil) {
			lost = append(lost, r)
		}
		ended = append(ended, r)
	}
	a.armLocked()
	a.mu.Unlock()
	for _, r := range lost {
		a.w.dropped(r, nil)
	}
	for _, r := range ended {
		a.log.Debug("call timed out", "call-id", r.CallID, "why", r.EndReason)
	}
}

// recordUnlock queues rec, the record of a call that has just ended,
// then releases a.mu: queued under the lock that marked the call done, the
// record comes before any barrier for that call (afterEndLocked). A record
// the queue refuses is counted, and send run, once the lock is released.
func (a *Accounting) recordUnlock(rec store.CDR, send func()) {
	ok := a.w.tryEnqueue(rec, send)
	a.mu.Unlock()
	if !ok {
		a.w.dropped(rec, send)
	}
}

// afterEndLocked sends send, a response on the call c that has ended,
// once c's record is committed (or given up): a party told anything
// after the end (the 200 of the second BYE of a glare, a retransmitted
// 2xx) must not learn it before the record is on disk. c's record was
// queued under a.mu when c was marked done, so a barrier queued now comes
// after it; the records of calls Close ended bypass the queue, so for
// those send waits for the writer to finish.
func (a *Accounting) afterEndLocked(c *call, send func()) {
	if c.shutdown {
		a.w.afterFinish(send)
		return
	}
	a.w.barrier(send)
}

// Challenge reports whether a final response is a digest challenge (RFC
// 3261 §22.2, §22.3): not the end of a call attempt but a request for the
// retry with credentials, which is the attempt.
func Challenge(res *sip.Response) bool {
	return res.StatusCode == 401 || res.StatusCode == 407
}

// SetFinal copies what a record keeps of the final response that refused
// its request: code, reason, the refuser's To tag and the Q.850 cause.
func SetFinal(r *store.CDR, res *sip.Response) {
	r.Code, r.Reason = res.StatusCode, strings.Clone(res.Reason)
	r.ToTag = strings.Clone(res.To.Tag())
	r.Q850, r.Q850Text = Q850(&res.Header)
}

// maxSessionExpires caps a Session-Expires interval, in seconds: beyond
// it (68 years) a number would overflow a time.Duration.
const maxSessionExpires = 1<<31 - 1

// sessionExpires reads RFC 4028 Session-Expires ("1800;refresher=uac")
// from a 2xx; 0 when absent or unusable. An interval too long to count
// is maxSessionExpires (Config.MaxDuration ends the call first anyway).
func sessionExpires(res *sip.Response) time.Duration {
	v := res.Get("Session-Expires")
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	v = strings.TrimSpace(v)
	n, err := strconv.ParseUint(v, 10, 64)
	switch {
	case err != nil && errors.Is(err, strconv.ErrRange):
		n = maxSessionExpires
	case err != nil || n == 0:
		return 0
	}
	return time.Duration(min(n, maxSessionExpires)) * time.Second
}

// Q850 returns the Q.850 cause (1-127) and text of a Reason header (RFC
// 3326: Reason: Q.850;cause=16;text="Terminated"), 0 when there is none.
// White space may surround ";" and "=" (RFC 3261 §25.1), and the text is
// a quoted-string or a token.
func Q850(h *sip.Header) (int, string) {
	for _, v := range h.Values("Reason") {
		proto, params, _ := strings.Cut(v, ";")
		if !strings.EqualFold(strings.TrimSpace(proto), "Q.850") {
			continue
		}
		cause, text, hasCause, hasText := 0, "", false, false
		sip.Params(";" + params).Each(func(name, value string, _ bool) bool {
			switch name = strings.TrimSpace(name); {
			case strings.EqualFold(name, "cause") && !hasCause:
				hasCause = true
				if n, err := strconv.Atoi(strings.TrimSpace(value)); err == nil && n >= 1 && n <= 127 {
					cause = n
				}
			case strings.EqualFold(name, "text") && !hasText:
				hasText = true
				text = unquote(strings.TrimSpace(value))
			}
			return true
		})
		if cause == 0 {
			continue
		}
		return cause, strings.Clone(text)
	}
	return 0, ""
}

// unquote returns the content of a quoted-string, its quoted-pairs
// undone (RFC 3261 §25.1); anything else as it is.
func unquote(s string) string {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return s
	}
	s = s[1 : len(s)-1]
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// setBranch records the fork branch that answered: its target and where
// it was sent.
func setBranch(r *store.CDR, up proxy.Upstream) {
	if up.Target.Host != "" {
		r.Branch = up.Target.String()
	}
	if up.Addr.IsValid() {
		r.BranchAddr = strings.ToLower(up.Proto) + ":" + up.Addr.String()
	}
}

// inviteObs follows the initial INVITE of a call.
type inviteObs struct {
	a *Accounting
	c *call
}

func (o *inviteObs) Respond(res *sip.Response, up proxy.Upstream, send func()) {
	a, c := o.a, o.c
	now := a.clock.Now()
	a.mu.Lock()
	if c.done {
		// The call has ended (a 2xx retransmitted after an answer
		// recorded as untracked, or after the BYE or a timer ended the
		// call): the response follows its record.
		a.afterEndLocked(c, send)
		a.mu.Unlock()
		return
	}
	if c.answered {
		// A later 2xx of another branch (RFC 3261 §16.7 step 5): the
		// call has its answer.
		a.mu.Unlock()
		send()
		return
	}
	if Challenge(res) && !up.Cancelled && up.Killed == "" {
		// Challenged downstream (a gateway's 401/407): as for the
		// server's own challenges (Refused), no record; the retry with
		// credentials (same Call-ID and From tag, a new CSeq) is the call
		// attempt, tracked anew. A caller who cancelled will not retry:
		// that call is recorded as cancelled below.
		a.removeLocked(c)
		a.mu.Unlock()
		send()
		return
	}
	r := a.recordLocked(c)
	r.Code, r.Reason = res.StatusCode, strings.Clone(res.Reason)
	if res.StatusCode/100 == 2 {
		r.Status, r.Answer = StatusAnswered, now
		r.ToTag = strings.Clone(res.To.Tag())
		setBranch(&r, up)
		// The call keeps copies of the strings, none of res's.
		c.answered, c.answer, c.code, c.text = true, now, int32(r.Code), packRecord(&r)
		if !c.recordRoute || r.ToTag == "" {
			// The BYE will not pass here: record what is known now.
			a.recordUnlock(a.endLocked(c, now, "", EndUntracked), send)
			return
		}
		var sessionEnd time.Time
		if s := sessionExpires(res); s > 0 {
			sessionEnd = now.Add(s)
		}
		a.expireAtLocked(c, sessionEnd)
		a.mu.Unlock()
		send()
		return
	}
	SetFinal(&r, res) // the To tag is whoever refused
	r.End = now
	switch {
	case up.Killed != "":
		// An operator ended it (the REST API's hang-up): cancelled
		// by the proxy, with the reason given.
		r.Status, r.EndedBy, r.EndReason = StatusCancelled, ByProxy, up.Killed
	case up.Cancelled:
		r.Status, r.EndedBy, r.EndReason = StatusCancelled, ByCaller, EndCancel
	case up.Local && res.StatusCode == 408:
		r.Status, r.EndedBy, r.EndReason = StatusFailed, ByProxy, EndTimeout
	case up.Local:
		r.Status, r.EndedBy, r.EndReason = StatusFailed, ByProxy, EndRejected
	default:
		r.Status, r.EndedBy, r.EndReason = StatusFailed, ByCallee, EndRejected
	}
	a.removeLocked(c)
	a.recordUnlock(r, send)
}

// byeObs follows a BYE: any final response ends the call (RFC 3261
// §15.1.2: the dialog is over whatever the answer), and goes upstream
// once the record is committed. So does the response to the other side's
// BYE when both hang up at once (glare).
type byeObs struct {
	a     *Accounting
	c     *call
	at    time.Time
	side  string
	cause int
	text  string
}

func (o *byeObs) Respond(res *sip.Response, up proxy.Upstream, send func()) {
	a, c := o.a, o.c
	a.mu.Lock()
	if c.done {
		a.afterEndLocked(c, send)
		a.mu.Unlock()
		return
	}
	r := a.endLocked(c, o.at, o.side, EndBye)
	r.Q850, r.Q850Text = o.cause, o.text
	a.recordUnlock(r, send)
}

// refreshObs follows a re-INVITE or UPDATE: its 2xx refreshes the
// session, and its Session-Expires (or the lack of one) sets the next
// interval (RFC 4028 §9, §10).
type refreshObs struct {
	a *Accounting
	c *call
}

func (o *refreshObs) Respond(res *sip.Response, up proxy.Upstream, send func()) {
	a, c := o.a, o.c
	a.mu.Lock()
	if c.done {
		// The call ended meanwhile: the response follows its record.
		a.afterEndLocked(c, send)
		a.mu.Unlock()
		return
	}
	if res.StatusCode/100 == 2 {
		var sessionEnd time.Time
		if s := sessionExpires(res); s > 0 {
			sessionEnd = a.clock.Now().Add(s)
		}
		a.expireAtLocked(c, sessionEnd)
	}
	a.mu.Unlock()
	send()
}

// messageObs records a MESSAGE at its first final response, except a
// digest challenge (401, 407): the retry with credentials is the MESSAGE
// recorded, as for calls.
type messageObs struct {
	a    *Accounting
	mu   sync.Mutex
	rec  store.CDR
	done bool
}

func (o *messageObs) Respond(res *sip.Response, up proxy.Upstream, send func()) {
	o.mu.Lock()
	if o.done || Challenge(res) {
		o.done = true
		o.mu.Unlock()
		send()
		return
	}
	o.done = true
	r := o.rec
	o.mu.Unlock()
	r.End = o.a.clock.Now()
	r.Code, r.Reason = res.StatusCode, strings.Clone(res.Reason)
	r.ToTag = strings.Clone(res.To.Tag())
	r.Status = StatusFailed
	switch {
	case res.StatusCode/100 == 2:
		r.Status = StatusAnswered
		setBranch(&r, up)
	case up.Local:
		r.EndedBy = ByProxy
	default:
		r.EndedBy = ByCallee
	}
	o.a.w.enqueue(r, send)
}
