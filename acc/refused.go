package acc

import (
	"strings"
	"time"

	"github.com/hlas-voip/hlas/sip"
)

// EndRedirected is the end reason of a call the server answered with a
// redirection (3xx) instead of forwarding it.
const EndRedirected = "redirected"

// refusalMemory is how long a refused INVITE is remembered: RFC 3261's
// 64*T1, the longest a client retransmits it. The server answers
// refusals statelessly (the transaction ends with the response), so a
// retransmission after a lost response is processed anew; it must not
// make a second record.
const refusalMemory = 32 * time.Second

// refusalKey identifies one INVITE: its retransmissions share it, the
// retry with credentials after a 407 (a new CSeq) does not.
type refusalKey struct {
	callID, fromTag string
	cseq            uint32
}

// Refused records a call attempt the server answered itself without
// forwarding it: an INVITE outside a dialog refused (404 unknown user,
// 480 no contacts, 403 caller-ID spoofing, 482, 483, 503 overload, a
// reject rule) or redirected (3xx). send sends the response; it runs once
// the record is committed, like every response that completes a record.
// Digest challenges (401, 407) are not call attempts — the retry with
// credentials is — and make no record (nor do those from downstream on
// a forwarded INVITE, see inviteObs); nor do other requests, responses
// below 300, the inner pass of a spiral (the outer forwarded INVITE
// records the outcome) and retransmissions of an INVITE already
// recorded. source is "transport:ip:port", user the authenticated user
// ("user@domain") or "".
func (a *Accounting) Refused(req *sip.Request, res *sip.Response, source, user string, send func()) {
	if req.Method != sip.INVITE || req.To.Tag() != "" || res.StatusCode < 300 || Challenge(res) {
		send()
		return
	}
	now := a.clock.Now()
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		send()
		return
	}
	if a.lookupLocked(req.CallID, req.From.Tag()) != nil {
		// A spiral (or a loop: 482) inside a call being forwarded or
		// already answered.
		a.mu.Unlock()
		send()
		return
	}
	if a.seenLocked(refusalKey{req.CallID, req.From.Tag(), req.CSeq.Seq}, now) {
		a.mu.Unlock()
		send()
		return
	}
	a.mu.Unlock()
	r := a.NewRecord(KindCall, req, source, user)
	r.Start, r.End = now, now
	SetFinal(&r, res)
	r.Status, r.EndedBy, r.EndReason = StatusFailed, ByProxy, EndRejected
	if res.StatusCode < 400 {
		r.EndReason = EndRedirected
	}
	a.w.enqueue(r, send)
}

// seenLocked reports whether k was refused within refusalMemory, and
// remembers it if not. The memory holds at most Config.MaxCalls keys: a
// flood of refused INVITEs costs bounded memory (and at worst a duplicate
// record for a retransmission after a lost response).
func (a *Accounting) seenLocked(k refusalKey, now time.Time) bool {
	for len(a.refusedQ) > 0 {
		old := a.refusedQ[0]
		if now.Sub(a.refused[old]) < refusalMemory && len(a.refusedQ) < a.cfg.MaxCalls {
			break
		}
		delete(a.refused, old)
		a.refusedQ[0] = refusalKey{}
		a.refusedQ = a.refusedQ[1:]
	}
	if _, ok := a.refused[k]; ok {
		return true
	}
	if a.refused == nil {
		a.refused = map[refusalKey]time.Time{}
	}
	k.callID, k.fromTag = strings.Clone(k.callID), strings.Clone(k.fromTag)
	a.refused[k] = now
	a.refusedQ = append(a.refusedQ, k)
	return false
}
