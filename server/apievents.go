package server

import (
	"context"
	"strings"
	"sync"

	"github.com/hlas-voip/hlas/sip"

	"github.com/hlas-voip/hlas/acc"
	"github.com/hlas-voip/hlas/api"
	"github.com/hlas-voip/hlas/media"
	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/security"
	"github.com/hlas-voip/hlas/store"
)

// maxTrackedAORs bounds the registrations the event stream remembers to
// tell added from refreshed from removed. Over it, a new AOR's bindings
// are announced but not remembered: its refreshes read as added.
const maxTrackedAORs = 1 << 17

// apiEvents feeds the REST API's event stream (GET /api/v1/events) from
// the registrar, the proxy, the accounting, the guard and the presence
// package. Every hook is a short lock and a non-blocking publish.
type apiEvents struct {
	s   *Server
	bus *api.Bus

	mu   sync.Mutex
	regs map[string]map[string]api.Registration // aor → binding id → last seen
}

func newAPIEvents(s *Server, buffer int) *apiEvents {
	return &apiEvents{s: s, bus: api.NewBus(buffer, nil), regs: map[string]map[string]api.Registration{}}
}

// registration is registrar OnChange: the AOR's bindings now, compared
// with those seen last, make one event per binding added, refreshed or
// removed.
func (ae *apiEvents) registration(aor string) {
	r := ae.s.registrar
	if r == nil {
		return
	}
	type change struct {
		action string
		reg    api.Registration
	}
	var out []change
	// The bindings are read under ae.mu: two changes of one AOR told at
	// once (a commit, an expiry) must not compare in one order and
	// record in the other. OnChange runs without the registrar's locks.
	ae.mu.Lock()
	now := map[string]api.Registration{}
	for _, b := range r.Lookup(aor) {
		now[b.ID] = api.LiveRegistration(b)
	}
	last, known := ae.regs[aor]
	for id, reg := range now {
		old, ok := last[id]
		switch {
		case !ok:
			out = append(out, change{"added", reg})
		case !old.Updated.Equal(reg.Updated) || !old.Expires.Equal(reg.Expires):
			out = append(out, change{"refreshed", reg})
		}
	}
	for id, reg := range last {
		if _, ok := now[id]; !ok {
			out = append(out, change{"removed", reg})
		}
	}
	switch {
	case len(now) == 0:
		delete(ae.regs, aor)
	case known || len(ae.regs) < maxTrackedAORs:
		ae.regs[aor] = now
	}
	// Published under the lock: two changes of one AOR are told in
	// the order they were seen.
	for _, c := range out {
		ae.bus.Publish(api.EventRegistration, c.action, c.reg)
	}
	ae.mu.Unlock()
}

// banned is told every ban the guard places.
func (ae *apiEvents) banned(b security.Ban) {
	d := map[string]any{"source": b.Prefix.String(), "reason": b.Reason, "created": b.Created.UTC(), "manual": b.Manual}
	if !b.Expires.IsZero() {
		d["expires"] = b.Expires.UTC()
	}
	ae.bus.Publish(api.EventBan, "added", d)
}

// unbanned is told every ban an operator lifts.
func (ae *apiEvents) unbanned(b security.Ban) {
	ae.bus.Publish(api.EventBan, "removed", map[string]any{"source": b.Prefix.String(), "reason": b.Reason})
}

// presence is told that an AOR's presence state changed.
func (ae *apiEvents) presence(aor string) {
	ae.bus.Publish(api.EventPresence, "changed", map[string]string{"aor": aor})
}

// cdrStore wraps the accounting's store: a call's record, once
// committed, is the call's "ended" event. With accounting off, callWatch
// tells the end itself.
type cdrStore struct {
	cdrs
	ae *apiEvents
}

// cdrs names the embedded store (a field named CDRs would hide the
// method of that name).
type cdrs = store.CDRs

// WriteCDRs implements store.CDRs.
func (c cdrStore) WriteCDRs(ctx context.Context, recs []store.CDR) error {
	err := c.cdrs.WriteCDRs(ctx, recs)
	if err == nil {
		for i := range recs {
			if recs[i].Kind == acc.KindCall {
				c.ae.bus.Publish(api.EventCall, "ended", acc.ToJSON(&recs[i]))
			}
		}
	}
	return err
}

// callWatch sits in front of the proxy's accounting and tells calls
// started, ringing and answered (and, without accounting, ended). It
// keeps no state between requests: each INVITE's observer remembers
// what it told.
type callWatch struct {
	ae      *apiEvents
	next    proxy.Accounting
	withAcc bool // the CDR store tells the ends
}

// callData identifies a call in its events.
type callData struct {
	CallID string `json:"call_id"`
	From   string `json:"from"`
	To     string `json:"to"`
	Source string `json:"source,omitempty"`
	Code   int    `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Forwarding implements proxy.Accounting.
func (w *callWatch) Forwarding(ctx context.Context, req *sip.Request, info proxy.Forwarded) proxy.RequestObserver {
	var inner proxy.RequestObserver
	if w.next != nil {
		inner = w.next.Forwarding(ctx, req, info)
	}
	d := callData{CallID: req.CallID, From: req.From.URI.String(), To: req.To.URI.String()}
	switch {
	case req.Method == sip.INVITE && req.To.Tag() == "":
		if info.Source.Remote.IsValid() {
			d.Source = strings.ToLower(info.Source.Proto) + ":" + info.Source.Remote.String()
		}
		w.ae.bus.Publish(api.EventCall, "started", d)
		return &callObs{w: w, d: d, inner: inner}
	case req.Method == sip.BYE && !w.withAcc:
		return &callObs{w: w, d: d, inner: inner, bye: true}
	}
	return inner
}

// MediaStats passes the media counters on (proxy.MediaRecorder).
func (w *callWatch) MediaStats(callID string, st media.Stats) {
	if r, ok := w.next.(proxy.MediaRecorder); ok {
		r.MediaStats(callID, st)
	}
}

// EndCall passes the proxy's end of a call on (proxy.CallEnder).
func (w *callWatch) EndCall(e proxy.CallEnd) bool {
	if !w.withAcc {
		// No record to tell the end: tell it here.
		w.ae.bus.Publish(api.EventCall, "ended", callData{CallID: e.CallID, From: e.From, To: e.To, Reason: e.Why})
	}
	if n, ok := w.next.(proxy.CallEnder); ok {
		return n.EndCall(e)
	}
	return false
}

// callObs follows one INVITE (or, without accounting, BYE).
type callObs struct {
	w       *callWatch
	d       callData
	inner   proxy.RequestObserver
	bye     bool
	mu      sync.Mutex
	ringing bool
}

// Provisional implements proxy.ProvisionalObserver: the first 180 or 183
// is "ringing".
func (o *callObs) Provisional(res *sip.Response) {
	if !o.bye && (res.StatusCode == 180 || res.StatusCode == 183) {
		o.mu.Lock()
		first := !o.ringing
		o.ringing = true
		o.mu.Unlock()
		if first {
			d := o.d
			d.Code, d.Reason = res.StatusCode, res.Reason
			o.w.ae.bus.Publish(api.EventCall, "ringing", d)
		}
	}
	if po, ok := o.inner.(proxy.ProvisionalObserver); ok {
		po.Provisional(res)
	}
}

// Respond implements proxy.RequestObserver.
func (o *callObs) Respond(res *sip.Response, up proxy.Upstream, send func()) {
	d := o.d
	d.Code, d.Reason = res.StatusCode, res.Reason
	switch {
	case o.bye:
		if res.StatusCode >= 200 {
			d.Reason = "bye"
			o.w.ae.bus.Publish(api.EventCall, "ended", d)
		}
	case res.StatusCode/100 == 2:
		o.w.ae.bus.Publish(api.EventCall, "answered", d)
	case res.StatusCode >= 300 && !o.w.withAcc:
		switch {
		case up.Killed != "":
			d.Reason = up.Killed
		case up.Cancelled:
			d.Reason = "cancelled"
		}
		o.w.ae.bus.Publish(api.EventCall, "ended", d)
	}
	if o.inner != nil {
		o.inner.Respond(res, up, send)
		return
	}
	send()
}

// presencePkg reports whether an event package's change is presence.
func presencePkg(pkg string) bool { return strings.EqualFold(pkg, "presence") }
