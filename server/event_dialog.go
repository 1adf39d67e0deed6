package server

import (
	"context"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hlas-voip/hlas/acc"
	"github.com/hlas-voip/hlas/event"
	"github.com/hlas-voip/hlas/event/dialoginfo"
	"github.com/hlas-voip/hlas/media"
	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/sip"
)

// The dialog event package (RFC 4235, the busy lamp field): the server
// makes the dialog state of its users from the calls it proxies
// statefully — trying when the INVITE is forwarded, early at its first
// provisional response, confirmed at the 2xx, terminated at the failure or
// the BYE — and adds what phones PUBLISH as dialog-info.

// dialogWatch sits in front of the accounting (proxy.Accounting) to see
// the calls go by; it hands everything on to the accounting unchanged.
type dialogWatch struct {
	s    *Server
	next proxy.Accounting // nil when accounting is off
	now  func() time.Time
	// maxAge bounds how long an answered call is shown without its BYE
	// (one that ended out of the proxy's sight): the accounting's
	// max_duration.
	maxAge time.Duration

	mu    sync.Mutex
	calls map[string]*blfCall // by Call-ID
}

// maxBLFCalls bounds the calls tracked for the dialog package; beyond it
// new calls are not shown (the lamps of a server at that load matter
// less than its memory).
const maxBLFCalls = 100000

// blfKeep is how long an ended call stays in the documents (as
// terminated), so that a NOTIFY coming after the rate limit still tells
// watchers how it ended.
const blfKeep = 30 * time.Second

// blfCall is one call between users, as the lamps see it.
type blfCall struct {
	id             string
	callID         string
	fromTag, toTag string
	caller, callee string // AORs; "" when not one of our users
	callerURI      string
	calleeURI      string
	state          string // trying, early, confirmed, terminated
	why            string // for terminated: rejected, cancelled, local-bye, remote-bye
	code           int
	start, ended   time.Time
}

func newDialogWatch(s *Server, next proxy.Accounting) *dialogWatch {
	maxAge := s.cfg.Accounting.MaxDuration
	if maxAge <= 0 {
		maxAge = acc.DefaultMaxDuration
	}
	return &dialogWatch{s: s, next: next, now: time.Now, maxAge: maxAge, calls: map[string]*blfCall{}}
}

// sweep forgets the calls that ended more than blfKeep ago and those
// answered longer than maxAge ago. The events goroutine runs it every
// second: documents are built only for users someone watches, so the
// table cannot rely on them to be emptied.
func (w *dialogWatch) sweep(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, c := range w.calls {
		if c.state == "terminated" && now.Sub(c.ended) > blfKeep || now.Sub(c.start) > w.maxAge {
			delete(w.calls, id)
		}
	}
}

// ourAOR is the AOR of u when it is a user of our domains.
func (w *dialogWatch) ourAOR(u *sip.URI) string {
	if u.User == "" || !u.IsSIP() {
		return ""
	}
	domain, ok := w.s.aorDomain(u)
	if !ok {
		return ""
	}
	return strings.ToLower(sip.Unescape(u.User)) + "@" + domain
}

// Forwarding implements proxy.Accounting.
func (w *dialogWatch) Forwarding(ctx context.Context, req *sip.Request, info proxy.Forwarded) proxy.RequestObserver {
	var inner proxy.RequestObserver
	if w.next != nil {
		inner = w.next.Forwarding(ctx, req, info)
	}
	switch {
	case req.Method == sip.INVITE && req.To.Tag() == "":
		c := &blfCall{callID: req.CallID, fromTag: req.From.Tag(), caller: w.ourAOR(&req.From.URI),
			callee: w.ourAOR(&req.URI), callerURI: req.From.URI.String(), calleeURI: req.URI.String(),
			state: "trying", start: w.now()}
		if c.caller == "" && c.callee == "" {
			return inner
		}
		h := fnv.New64a()
		h.Write([]byte(req.CallID + ";" + c.fromTag))
		c.id = "d" + strconv.FormatUint(h.Sum64(), 36)
		w.mu.Lock()
		if _, dup := w.calls[req.CallID]; dup || len(w.calls) >= maxBLFCalls {
			w.mu.Unlock()
			return inner
		}
		w.calls[req.CallID] = c
		w.mu.Unlock()
		w.changed(c)
		return &blfObs{w: w, c: c, inner: inner}
	case req.Method == sip.BYE && req.To.Tag() != "":
		w.mu.Lock()
		c := w.calls[req.CallID]
		w.mu.Unlock()
		if c == nil {
			return inner
		}
		why := "remote-bye" // from the callee, for the caller's lamp
		if req.From.Tag() == c.fromTag {
			why = "local-bye"
		}
		return &blfObs{w: w, c: c, inner: inner, bye: why}
	}
	return inner
}

// changed tells the notifier about the lamps of both parties.
func (w *dialogWatch) changed(c *blfCall) {
	ev := w.s.events
	if ev == nil {
		return
	}
	if c.caller != "" {
		ev.changed("dialog", c.caller)
	}
	if c.callee != "" && c.callee != c.caller {
		ev.changed("dialog", c.callee)
	}
}

// set moves a call to state and notifies when it changed.
func (w *dialogWatch) set(c *blfCall, state, why string, code int, toTag string) {
	w.mu.Lock()
	if c.state == state || c.state == "terminated" {
		w.mu.Unlock()
		return
	}
	c.state, c.why, c.code = state, why, code
	if toTag != "" && c.toTag == "" {
		c.toTag = toTag
	}
	if state == "terminated" {
		c.ended = w.now()
	}
	w.mu.Unlock()
	w.changed(c)
}

// dialogs returns the calls of aor as dialog-info.
func (w *dialogWatch) dialogs(aor string) []dialoginfo.Dialog {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []dialoginfo.Dialog
	for _, c := range w.calls {
		if c.state == "terminated" && now.Sub(c.ended) > blfKeep || c.caller != aor && c.callee != aor {
			continue
		}
		d := dialoginfo.Dialog{ID: c.id, CallID: c.callID, State: c.state, Code: c.code}
		if c.state == "terminated" {
			d.Event = c.why
		}
		if c.state == "confirmed" {
			d.Duration = now.Sub(c.start).Truncate(time.Second)
		}
		if c.caller == aor {
			d.Direction, d.LocalTag, d.RemoteTag = "initiator", c.fromTag, c.toTag
			d.Local = dialoginfo.Participant{Identity: c.callerURI}
			d.Remote = dialoginfo.Participant{Identity: c.calleeURI}
		} else {
			d.Direction, d.LocalTag, d.RemoteTag = "recipient", c.toTag, c.fromTag
			d.Local = dialoginfo.Participant{Identity: c.calleeURI}
			d.Remote = dialoginfo.Participant{Identity: c.callerURI}
		}
		out = append(out, d)
	}
	return out
}

// blfObs follows one INVITE or BYE through the proxy.
type blfObs struct {
	w     *dialogWatch
	c     *blfCall
	inner proxy.RequestObserver
	bye   string // for a BYE: local-bye or remote-bye (the caller's view)
}

// Provisional implements proxy.ProvisionalObserver.
func (o *blfObs) Provisional(res *sip.Response) {
	if o.bye == "" && res.StatusCode > 100 {
		o.w.set(o.c, "early", "", 0, res.To.Tag())
	}
	if po, ok := o.inner.(proxy.ProvisionalObserver); ok {
		po.Provisional(res)
	}
}

// Respond implements proxy.RequestObserver.
func (o *blfObs) Respond(res *sip.Response, up proxy.Upstream, send func()) {
	switch {
	case o.bye != "":
		if res.StatusCode >= 200 {
			o.w.set(o.c, "terminated", o.bye, 0, "")
		}
	case res.StatusCode/100 == 2:
		o.w.set(o.c, "confirmed", "", 0, res.To.Tag())
	case res.StatusCode >= 300:
		why := "rejected"
		if up.Cancelled || up.Killed != "" {
			why = "cancelled"
		}
		o.w.set(o.c, "terminated", why, res.StatusCode, res.To.Tag())
	}
	if o.inner != nil {
		o.inner.Respond(res, up, send)
		return
	}
	send()
}

// dialogPackage serves "dialog" (RFC 4235): the calls the server sees
// and the dialog-info phones publish. Who may watch is decided as for
// presence (events.decide).
type dialogPackage struct{ ev *events }

func (dialogPackage) Name() string                  { return "dialog" }
func (dialogPackage) Accept() []string              { return []string{"application/dialog-info+xml"} }
func (dialogPackage) DefaultExpires() time.Duration { return time.Hour }
func (d dialogPackage) Authorize(watcher, resource string) event.Decision {
	if svc := d.ev.rls.service(resource); svc != nil {
		return d.ev.rls.authorize(svc, "dialog", watcher)
	}
	return d.ev.decide(watcher, resource)
}

func (d dialogPackage) Document(sub *event.Subscription, full bool) (string, []byte) {
	if svc := d.ev.rls.service(sub.Resource()); svc != nil {
		return d.ev.rls.document(svc, sub, full)
	}
	var dialogs []dialoginfo.Dialog
	if !d.ev.politeBlocked(sub.Watcher(), sub.Resource()) {
		dialogs = d.ev.dialogsOf(sub.Resource())
	}
	return "application/dialog-info+xml", dialoginfo.Build("sip:"+sub.Resource(), sub.NextVersion(), true, dialogs)
}

// dialogsOf returns resource's dialogs: the calls the proxy tracks and
// what its phones published.
func (ev *events) dialogsOf(resource string) []dialoginfo.Dialog {
	var dialogs []dialoginfo.Dialog
	if w := ev.s.dialogs; w != nil {
		dialogs = w.dialogs(resource)
	}
	for _, pub := range ev.pub.Current("dialog", resource) {
		if info, err := dialoginfo.Parse(pub.Body); err == nil {
			dialogs = append(dialogs, info.Dialogs...)
		}
	}
	return dialogs
}

// dialogCodec checks published dialog-info.
type dialogCodec struct{}

func (dialogCodec) ContentTypes() []string { return []string{"application/dialog-info+xml"} }
func (dialogCodec) Validate(contentType string, body []byte) error {
	_, err := dialoginfo.Parse(body)
	return err
}

// MediaStats hands the relay's statistics on to the accounting
// (proxy.MediaRecorder).
func (w *dialogWatch) MediaStats(callID string, st media.Stats) {
	if r, ok := w.next.(proxy.MediaRecorder); ok {
		r.MediaStats(callID, st)
	}
}

// EndCall ends a call the proxy ended itself (no media): its lamps go
// out, and the accounting records it (proxy.CallEnder).
func (w *dialogWatch) EndCall(e proxy.CallEnd) bool {
	w.mu.Lock()
	c := w.calls[e.CallID]
	w.mu.Unlock()
	if c != nil {
		w.set(c, "terminated", "error", 0, "")
	}
	if n, ok := w.next.(proxy.CallEnder); ok {
		return n.EndCall(e)
	}
	return false
}

var (
	_ proxy.MediaRecorder = (*dialogWatch)(nil)
	_ proxy.CallEnder     = (*dialogWatch)(nil)
)
