package proxy

import (
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/hlas-voip/hlas/sip"
)

// The calls an operator sees and ends (the REST API's /calls): with
// Env.TrackCalls the proxy keeps every INVITE it forwards statefully with
// its Record-Route in the table the media relay uses (mediaCalls), so a
// later BYE, CANCEL or hang-up finds the dialog.

// DefaultCallMaxAge is Env.CallMaxAge's default: as long as the
// accounting holds an answered call whose BYE never came.
const DefaultCallMaxAge = 4 * time.Hour

// maxTrackedCalls bounds the calls Env.TrackCalls keeps (a few hundred
// bytes each); beyond it new calls are not listed, and relaying, bounded
// apart, is not held up by them.
const maxTrackedCalls = 1 << 18

// sweepEvery is how often, at most, a new call sweeps the table of
// tracked calls that outlived Env.CallMaxAge.
const sweepEvery = time.Minute

// Call states in CallInfo.
const (
	CallTrying    = "trying"    // the INVITE is on its way
	CallEarly     = "early"     // a callee rings (a 180 or 183)
	CallConfirmed = "confirmed" // answered
)

// Hangup actions.
const (
	HangupCancel = "cancel" // the unanswered INVITE's branches were cancelled
	HangupBye    = "bye"    // a BYE went to each side
)

// ErrNoCall is Hangup's answer for a Call-ID the proxy does not track.
var ErrNoCall = errors.New("proxy: no such call")

// CallInfo is one call the proxy tracks (Calls).
type CallInfo struct {
	CallID string
	// From and To are the URIs of the INVITE's From and To.
	From, To string
	// Source is where the INVITE came from, "udp:192.0.2.1:5060".
	Source string
	// State is CallTrying, CallEarly or CallConfirmed.
	State string
	// Started is when the INVITE came; Answered when its first 2xx went
	// upstream (zero before).
	Started, Answered time.Time
	// Relayed says its media goes through the relay.
	Relayed bool
}

// callInfo is the part of a tracked call only Calls reads; guarded by
// mediaCalls.mu.
type callInfo struct {
	from, to, source  string
	started, answered time.Time
	early             bool
	// rc is the INVITE's response context until its first 2xx: what
	// ending the unanswered call cancels.
	rc *rctx
}

func newCallInfo(req *sip.Request, in Flow, rc *rctx, now time.Time) *callInfo {
	ci := &callInfo{from: req.From.URI.String(), to: req.To.URI.String(), started: now, rc: rc}
	if in.Remote.IsValid() {
		ci.source = strings.ToLower(in.Proto) + ":" + in.Remote.String()
	}
	return ci
}

// sweepCallsLocked forgets, at most once per sweepEvery, the tracked
// calls older than Env.CallMaxAge that are not relayed (the relay's own
// inactivity timeout ends those): answered calls whose BYE took another
// path or never came.
func (p *Proxy) sweepCallsLocked() {
	mc := &p.mcalls
	now := p.clock.Now()
	if now.Sub(mc.swept) < sweepEvery {
		return
	}
	mc.swept = now
	maxAge := p.env.CallMaxAge
	if maxAge <= 0 {
		maxAge = DefaultCallMaxAge
	}
	for id, c := range mc.m {
		if c.info != nil && !c.isRelayed() && now.Sub(c.info.started) > maxAge {
			mc.delLocked(id)
		}
	}
}

// Calls lists the calls the proxy tracks (Env.TrackCalls), oldest first.
func (p *Proxy) Calls() []CallInfo {
	mc := &p.mcalls
	mc.mu.Lock()
	out := make([]CallInfo, 0, len(mc.m))
	for id, c := range mc.m {
		if c.info != nil {
			out = append(out, c.infoLocked(id))
		}
	}
	mc.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.Before(out[j].Started)
		}
		return out[i].CallID < out[j].CallID
	})
	return out
}

// Call returns the tracked call callID.
func (p *Proxy) Call(callID string) (CallInfo, bool) {
	mc := &p.mcalls
	mc.mu.Lock()
	defer mc.mu.Unlock()
	c := mc.m[callID]
	if c == nil || c.info == nil {
		return CallInfo{}, false
	}
	return c.infoLocked(callID), true
}

func (c *mcall) infoLocked(id string) CallInfo {
	in := c.info
	ci := CallInfo{CallID: id, From: in.from, To: in.to, Source: in.source, Started: in.started,
		Answered: in.answered, Relayed: c.isRelayed(), State: CallTrying}
	switch {
	case c.dlg != nil || !in.answered.IsZero():
		ci.State = CallConfirmed
	case in.early:
		ci.State = CallEarly
	}
	return ci
}

// Hangup ends the tracked call callID as an operator's decision, with
// why as the end reason of its record ("api"): an answered call gets a
// BYE on each side (RFC 3261 §15: the proxy speaks for each party to the
// other, along the route sets it saw), an unanswered one has its
// branches cancelled (§16.10, as if the caller had sent CANCEL: the
// caller gets 487). It returns HangupBye or HangupCancel, or ErrNoCall.
func (p *Proxy) Hangup(callID, why string) (string, error) {
	mc := &p.mcalls
	mc.mu.Lock()
	c := mc.m[callID]
	if c == nil || c.info == nil {
		mc.mu.Unlock()
		return "", ErrNoCall
	}
	if c.dlg == nil {
		rc := c.info.rc
		mc.mu.Unlock()
		if rc == nil || !rc.kill(why) {
			return "", ErrNoCall // answered without a dialog the proxy saw, or ending
		}
		p.log.Info("call cancelled by an operator", "call-id", callID, "why", why)
		return HangupCancel, nil
	}
	mc.delLocked(callID)
	mc.mu.Unlock()
	p.log.Info("call hung up by an operator", "call-id", callID, "why", why)
	p.endDialog(callID, c, "hung up by the operator")
	if c.isRelayed() && p.env.Media != nil {
		p.releaseMedia(callID)
	}
	if e, ok := p.env.Accounting.(CallEnder); ok {
		e.EndCall(c.end(callID, why))
	}
	return HangupBye, nil
}

// kill cancels the unanswered request as an operator's decision: the
// caller gets 487, the record the end reason why. It reports false when
// the request was answered already. A 2xx that crosses the CANCELs is
// still forwarded (RFC 3261 §16.7 step 10), and the call it answers is
// then ended with BYEs (endKilled).
func (c *rctx) kill(why string) bool {
	c.mu.Lock()
	if c.answered {
		c.mu.Unlock()
		return false
	}
	if c.cancelled {
		c.mu.Unlock()
		return true // the caller's CANCEL came first: its record says so
	}
	c.killed = why
	c.mu.Unlock()
	c.onCancel()
	return true
}

// endKilled ends the call a 2xx answered after an operator cancelled it
// (the 2xx crossed the CANCEL): once the 2xx has gone upstream, a BYE to
// each side, as Hangup sends.
func (c *rctx) endKilled() {
	c.mu.Lock()
	why := c.killed
	c.mu.Unlock()
	if why == "" || c.req.Method != sip.INVITE {
		return
	}
	if _, err := c.p.Hangup(c.req.CallID, why); err == nil {
		c.p.log.Info("a call answered after an operator's cancel was ended", "call-id", c.req.CallID)
	}
}

// byeEndsLocked reports whether bye ends c's dialog: its tags are the
// dialog's (in either direction), or no dialog is known yet. A BYE of
// another dialog with the same Call-ID (another fork's 2xx) leaves c
// alone. The call table's lock is held.
func (c *mcall) byeEndsLocked(bye *sip.Request) bool {
	return c.dlg == nil || c.inDialogLocked(bye)
}

// inDialogLocked reports whether req belongs to c's dialog: its tags are
// the dialog's, in either direction. Another fork's dialog shares the
// Call-ID, not the tags. The call table's lock is held and c.dlg is set.
func (c *mcall) inDialogLocked(req *sip.Request) bool {
	from, to := req.From.Tag(), req.To.Tag()
	return from == c.callerTag && to == c.dlg.calleeTag || from == c.dlg.calleeTag && to == c.callerTag
}
