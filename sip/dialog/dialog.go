// Package dialog keeps the state of SIP dialogs (RFC 3261 §12-15): their
// identifiers, early and confirmed states, route sets with loose and strict
// routing, remote targets and their refresh, local and remote CSeq numbers,
// the ACK for a 2xx, and the RSeq/RAck bookkeeping of reliable provisional
// responses (RFC 3262). It builds in-dialog requests and checks incoming
// ones; sending them (Via, transport, transactions) is its user's business.
//
// A Dialog is safe for concurrent use. A Table indexes dialogs by ID,
// including the several early dialogs a forked INVITE creates (one per To
// tag, RFC 3261 §12.1.2, §13.2.2.4).
package dialog

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transport"
)

// State is a dialog state (RFC 3261 §12).
type State int

// Dialog states.
const (
	// Early: created by a provisional response with a To tag.
	Early State = iota + 1
	// Confirmed: a 2xx was sent or received.
	Confirmed
	// Terminated: ended by BYE, a final non-2xx, a 481 or 408 (§12.3).
	Terminated
)

// String returns "early", "confirmed" or "terminated".
func (s State) String() string {
	switch s {
	case Early:
		return "early"
	case Confirmed:
		return "confirmed"
	case Terminated:
		return "terminated"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// ID identifies a dialog from one side: the Call-ID, the local tag and the
// remote tag (RFC 3261 §12). For the UAC the local tag is the From tag,
// for the UAS the To tag.
type ID struct {
	CallID    string
	LocalTag  string
	RemoteTag string
}

// String writes the ID as "Call-ID;local-tag;remote-tag", for logs.
func (id ID) String() string { return id.CallID + ";" + id.LocalTag + ";" + id.RemoteTag }

// IDForRequest is the ID, as seen by the receiver, of the dialog an
// incoming request belongs to: Call-ID, To tag (ours), From tag (theirs).
func IDForRequest(req *sip.Request) ID {
	return ID{CallID: req.CallID, LocalTag: req.To.Tag(), RemoteTag: req.From.Tag()}
}

// IDForResponse is the ID, as seen by the UAC, of the dialog a response to
// its request belongs to: Call-ID, From tag (ours), To tag (theirs).
func IDForResponse(res *sip.Response) ID {
	return ID{CallID: res.CallID, LocalTag: res.From.Tag(), RemoteTag: res.To.Tag()}
}

// Error is a request a dialog refuses, with the status code to answer it.
type Error struct {
	Code   int
	Reason string
}

// Error implements error.
func (e *Error) Error() string { return fmt.Sprintf("dialog: %d %s", e.Code, e.Reason) }

// Errors returned for in-dialog requests.
var (
	// ErrOutOfOrder is a request whose CSeq is lower than the last one
	// received in the dialog: answer 500 (RFC 3261 §12.2.2).
	ErrOutOfOrder = &Error{Code: 500, Reason: "CSeq Out Of Order"}
	// ErrTerminated is a request in a terminated dialog: answer 481.
	ErrTerminated = &Error{Code: 481, Reason: "Call/Transaction Does Not Exist"}
)

// Dialog is one dialog (RFC 3261 §12.1).
type Dialog struct {
	mu           sync.Mutex
	id           ID
	uac          bool
	state        State
	local        sip.Address // our From in requests, with our tag
	remote       sip.Address // our To in requests, with their tag
	remoteTarget sip.URI
	routeSet     []sip.Address
	secure       bool
	localSeq     uint32
	remoteSeq    uint32
	hasRemoteSeq bool
	// RFC 3262: last in-order RSeq received (UAC), last RSeq sent (UAS).
	rseqIn    uint32
	hasRSeqIn bool
	rseqOut   uint32
	conn      *transport.Conn
}

// errNoTag is a response or request that cannot make a dialog.
var errNoTag = errors.New("dialog: no To tag in the response")

// NewUAC creates the UAC's dialog from a response with a To tag to a
// dialog-creating request (RFC 3261 §12.1.2): the route set is the
// response's Record-Route in reverse order, the remote target its Contact,
// the local CSeq the request's, the remote CSeq empty. A 101-199 response
// makes an early dialog, a 2xx a confirmed one.
func NewUAC(req *sip.Request, res *sip.Response) (*Dialog, error) {
	if res.To.Tag() == "" {
		return nil, errNoTag
	}
	if res.StatusCode <= 100 || res.StatusCode >= 300 {
		return nil, fmt.Errorf("dialog: a %d response creates no dialog", res.StatusCode)
	}
	d := &Dialog{
		id:       IDForResponse(res),
		uac:      true,
		state:    Early,
		local:    req.From,
		remote:   res.To,
		localSeq: req.CSeq.Seq,
		secure:   req.URI.Scheme == sip.SchemeSIPS,
	}
	if res.StatusCode >= 200 {
		d.state = Confirmed
	}
	d.setRouteSetUAC(res.RecordRoute)
	d.remoteTarget = req.URI
	if len(res.Contact) > 0 {
		d.remoteTarget = res.Contact[0].URI
	}
	return d, nil
}

// NewUAS creates the UAS's dialog for a dialog-creating request it answers
// with a To tag of localTag (RFC 3261 §12.1.1): the route set is the
// request's Record-Route in order, the remote target its Contact, the
// remote CSeq the request's, the local CSeq empty. The dialog is early
// until Confirm.
func NewUAS(req *sip.Request, localTag string) (*Dialog, error) {
	if localTag == "" {
		return nil, errors.New("dialog: empty local tag")
	}
	if req.From.Tag() == "" {
		return nil, errors.New("dialog: no From tag in the request")
	}
	d := &Dialog{
		id:           ID{CallID: req.CallID, LocalTag: localTag, RemoteTag: req.From.Tag()},
		state:        Early,
		local:        req.To,
		remote:       req.From,
		remoteSeq:    req.CSeq.Seq,
		hasRemoteSeq: true,
		secure:       req.URI.Scheme == sip.SchemeSIPS,
	}
	d.local.Params = d.local.Params.Set("tag", localTag)
	d.routeSet = append([]sip.Address(nil), req.RecordRoute...)
	if len(req.Contact) > 0 {
		d.remoteTarget = req.Contact[0].URI
	}
	return d, nil
}

func (d *Dialog) setRouteSetUAC(rr []sip.Address) {
	d.routeSet = make([]sip.Address, len(rr))
	for i := range rr {
		d.routeSet[len(rr)-1-i] = rr[i]
	}
}

// ID returns the dialog's identifier.
func (d *Dialog) ID() ID { return d.id }

// IsUAC reports whether this side sent the dialog-creating request.
func (d *Dialog) IsUAC() bool { return d.uac }

// State returns the current state.
func (d *Dialog) State() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state
}

// Confirm moves an early dialog to confirmed: the UAS sent its 2xx
// (RFC 3261 §12.1.1).
func (d *Dialog) Confirm() {
	d.mu.Lock()
	if d.state == Early {
		d.state = Confirmed
	}
	d.mu.Unlock()
}

// Terminate ends the dialog (RFC 3261 §12.3, §15).
func (d *Dialog) Terminate() {
	d.mu.Lock()
	d.state = Terminated
	d.mu.Unlock()
}

// RemoteTarget returns the URI in-dialog requests are sent to.
func (d *Dialog) RemoteTarget() sip.URI {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.remoteTarget
}

// RouteSet returns a copy of the route set.
func (d *Dialog) RouteSet() []sip.Address {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]sip.Address(nil), d.routeSet...)
}

// LocalSeq returns the local CSeq number last used (0 when none yet).
func (d *Dialog) LocalSeq() uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.localSeq
}

// RemoteSeq returns the remote CSeq number and whether one was seen.
func (d *Dialog) RemoteSeq() (uint32, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.remoteSeq, d.hasRemoteSeq
}

// Local returns the address this side writes in From, with its tag.
func (d *Dialog) Local() sip.Address { return d.local }

// Remote returns the address this side writes in To, with the peer's tag.
func (d *Dialog) Remote() sip.Address {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.remote
}

// Secure reports a dialog whose requests must use sips (RFC 3261 §12.1).
func (d *Dialog) Secure() bool { return d.secure }

// SetConn records the stream connection (TCP, TLS) the dialog runs on, so
// that in-dialog requests reuse it while it is open rather than opening a
// new one (RFC 3261 §18, RFC 5923 §2).
func (d *Dialog) SetConn(c *transport.Conn) {
	d.mu.Lock()
	d.conn = c
	d.mu.Unlock()
}

// Conn returns the dialog's connection while it is open, else nil.
func (d *Dialog) Conn() *transport.Conn {
	d.mu.Lock()
	c := d.conn
	d.mu.Unlock()
	if c == nil {
		return nil
	}
	select {
	case <-c.Done():
		return nil
	default:
		return c
	}
}

// NewRequest builds a request within the dialog (RFC 3261 §12.2.1.1): To
// with the remote tag, From with the local tag, the Call-ID, the next local
// CSeq number, Max-Forwards 70, and the Request-URI and Route header from
// the remote target and route set. With a loose-routing first route (lr)
// the Request-URI is the remote target and Route the route set; with a
// strict router the Request-URI is the first route (without the parameters
// a Request-URI may not carry) and Route the rest of the set followed by
// the remote target. The caller adds Via, Contact and a body.
func (d *Dialog) NewRequest(method string) *sip.Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.localSeq == 0 {
		// An empty local sequence number starts anywhere below 2**31
		// (RFC 3261 §8.1.1.5, §12.2.1.1).
		d.localSeq = 1 + rand.Uint32N(1<<20)
	} else {
		d.localSeq++
	}
	return d.requestLocked(method, d.localSeq)
}

// NewACK builds the ACK for a 2xx to the INVITE invite sent in this dialog
// (RFC 3261 §13.2.2.4): like any in-dialog request, but with the INVITE's
// CSeq number and method ACK, and with the INVITE's Authorization and
// Proxy-Authorization. It does not use up a CSeq number. The caller adds a
// Via with a new branch.
func (d *Dialog) NewACK(invite *sip.Request) *sip.Request {
	d.mu.Lock()
	ack := d.requestLocked(sip.ACK, invite.CSeq.Seq)
	d.mu.Unlock()
	for _, f := range invite.Fields {
		switch sip.CanonicalName(f.Name) {
		case "Authorization", "Proxy-Authorization":
			ack.Add(f.Name, f.Value)
		}
	}
	return ack
}

func (d *Dialog) requestLocked(method string, seq uint32) *sip.Request {
	r := &sip.Request{Method: method, Version: "SIP/2.0"}
	r.From, r.To, r.CallID = d.local, d.remote, d.id.CallID
	r.CSeq = sip.CSeq{Seq: seq, Method: method}
	r.MaxForwards = 70
	switch {
	case len(d.routeSet) == 0:
		r.URI = d.remoteTarget
	case d.routeSet[0].URI.Params.Has("lr"):
		r.URI = d.remoteTarget
		r.Route = append([]sip.Address(nil), d.routeSet...)
	default:
		// Strict routing (§12.2.1.1, §16.12.1.1).
		r.URI = d.routeSet[0].URI
		r.URI.Params = r.URI.Params.Del("method")
		r.URI.Headers = ""
		r.Route = make([]sip.Address, 0, len(d.routeSet))
		r.Route = append(r.Route, d.routeSet[1:]...)
		r.Route = append(r.Route, sip.Address{URI: d.remoteTarget})
	}
	return r
}

// targetRefresh reports the methods whose Contact replaces the remote
// target (RFC 3261 §12.2, RFC 3311 §5.1, RFC 6665 §4.1.2.1).
func targetRefresh(method string) bool {
	switch method {
	case sip.INVITE, sip.UPDATE, sip.SUBSCRIBE, sip.NOTIFY, sip.REFER:
		return true
	}
	return false
}

// ReceiveRequest checks an incoming request for the dialog (RFC 3261
// §12.2.2): a CSeq lower than the last one received is out of order
// (ErrOutOfOrder, answer 500); otherwise the remote CSeq advances, and a
// target refresh request (re-INVITE, UPDATE) with a Contact replaces the
// remote target. ACK and CANCEL carry the CSeq of the request they belong
// to and are not checked.
func (d *Dialog) ReceiveRequest(req *sip.Request) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == Terminated {
		return ErrTerminated
	}
	if req.Method == sip.ACK || req.Method == sip.CANCEL {
		return nil
	}
	if d.hasRemoteSeq && req.CSeq.Seq < d.remoteSeq {
		return ErrOutOfOrder
	}
	d.remoteSeq, d.hasRemoteSeq = req.CSeq.Seq, true
	if targetRefresh(req.Method) && len(req.Contact) > 0 && !req.Contact[0].Wildcard {
		d.remoteTarget = req.Contact[0].URI
	}
	return nil
}

// ReceiveResponse updates the UAC's dialog with a response to a request
// it sent in it (RFC 3261 §12.2.1.2, §13.2.2.4): a 2xx to the initial
// INVITE confirms an early dialog and recomputes its route set from the
// 2xx; a 1xx or 2xx to a target refresh request with a Contact replaces
// the remote target; 481 and 408 to any request end the dialog (§12.2.1.2).
func (d *Dialog) ReceiveResponse(req *sip.Request, res *sip.Response) {
	d.mu.Lock()
	defer d.mu.Unlock()
	code := res.StatusCode
	if code == 481 || code == 408 {
		d.state = Terminated
		return
	}
	if code < 101 || code >= 300 || d.state == Terminated {
		return
	}
	if d.state == Early && req.Method == sip.INVITE && code >= 200 {
		d.state = Confirmed
		d.setRouteSetUAC(res.RecordRoute)
	}
	if targetRefresh(req.Method) && len(res.Contact) > 0 && !res.Contact[0].Wildcard &&
		(code >= 200 || d.state == Early) {
		d.remoteTarget = res.Contact[0].URI
	}
}

// RAck is the RAck header of a PRACK (RFC 3262 §7.2): the RSeq of the
// reliable provisional response and the CSeq of its request.
type RAck struct {
	RSeq   uint32
	CSeq   uint32
	Method string
}

// String writes the header value, "RSeq CSeq Method".
func (r RAck) String() string {
	return strconv.FormatUint(uint64(r.RSeq), 10) + " " + strconv.FormatUint(uint64(r.CSeq), 10) + " " + r.Method
}

// ParseRAck parses a RAck header value (RFC 3262 §7.2).
func ParseRAck(s string) (RAck, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return RAck{}, fmt.Errorf("dialog: malformed RAck %q", s)
	}
	rs, err1 := strconv.ParseUint(f[0], 10, 32)
	cs, err2 := strconv.ParseUint(f[1], 10, 32)
	if err1 != nil || err2 != nil || rs == 0 {
		return RAck{}, fmt.Errorf("dialog: malformed RAck %q", s)
	}
	return RAck{RSeq: uint32(rs), CSeq: uint32(cs), Method: f[2]}, nil
}

// ParseRSeq parses an RSeq header value (RFC 3262 §7.1): 1 to 2**32-1.
func ParseRSeq(s string) (uint32, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("dialog: malformed RSeq %q", s)
	}
	return uint32(n), nil
}

// IsReliable reports a reliable provisional response: 101-199 with
// Require: 100rel and an RSeq (RFC 3262 §4).
func IsReliable(res *sip.Response) bool {
	return res.StatusCode > 100 && res.StatusCode < 200 &&
		res.HasOption("Require", "100rel") && res.Get("RSeq") != ""
}

// AcceptRSeq applies the UAC rules for a reliable provisional response
// with this RSeq (RFC 3262 §4): the first one sets the expected sequence,
// and after it only the next number (one higher) is in order. It returns
// true when the response is new and in order, to be processed and PRACKed;
// false for a retransmission or one out of order, which the UAC must
// neither PRACK nor process.
func (d *Dialog) AcceptRSeq(rseq uint32) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.hasRSeqIn {
		d.rseqIn, d.hasRSeqIn = rseq, true
		return true
	}
	if rseq != d.rseqIn+1 {
		return false
	}
	d.rseqIn = rseq
	return true
}

// NextRSeq returns the RSeq for the UAS's next reliable provisional
// response: a random start between 1 and 2**31-1, then one more each time
// (RFC 3262 §3).
func (d *Dialog) NextRSeq() uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rseqOut == 0 {
		d.rseqOut = 1 + rand.Uint32N(1<<31-2)
	} else {
		d.rseqOut++
	}
	return d.rseqOut
}

// NewPRACK builds the PRACK for the reliable provisional response res to
// the INVITE of this early dialog (RFC 3262 §7.2): an in-dialog request
// whose RAck carries the response's RSeq and CSeq.
func (d *Dialog) NewPRACK(res *sip.Response) (*sip.Request, error) {
	rseq, err := ParseRSeq(res.Get("RSeq"))
	if err != nil {
		return nil, err
	}
	p := d.NewRequest(sip.PRACK)
	p.Add("RAck", RAck{RSeq: rseq, CSeq: res.CSeq.Seq, Method: res.CSeq.Method}.String())
	return p, nil
}

// Table indexes dialogs by ID. It is safe for concurrent use.
type Table struct {
	mu sync.Mutex
	m  map[ID]*Dialog
}

// NewTable returns an empty table.
func NewTable() *Table { return &Table{m: map[ID]*Dialog{}} }

// Add stores d under its ID, replacing any dialog with the same ID.
func (t *Table) Add(d *Dialog) {
	t.mu.Lock()
	t.m[d.id] = d
	t.mu.Unlock()
}

// Get returns the dialog with that ID, or nil.
func (t *Table) Get(id ID) *Dialog {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[id]
}

// Remove deletes the dialog with that ID.
func (t *Table) Remove(id ID) {
	t.mu.Lock()
	delete(t.m, id)
	t.mu.Unlock()
}

// Len returns how many dialogs the table holds.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// Dialogs returns the dialogs in the table, in no particular order.
func (t *Table) Dialogs() []*Dialog {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*Dialog, 0, len(t.m))
	for _, d := range t.m {
		out = append(out, d)
	}
	return out
}

// MatchRequest returns the dialog an incoming in-dialog request (one with
// a To tag) belongs to, or nil (RFC 3261 §12.2.2).
func (t *Table) MatchRequest(req *sip.Request) *Dialog {
	return t.Get(IDForRequest(req))
}

// Response files a response to the INVITE invite, sent by this UAC, into
// the table (RFC 3261 §12.1.2, §13.2.2.4): a response with a To tag
// that matches a dialog updates it (a 2xx confirms an early dialog); one
// with a new To tag creates a dialog, early for 1xx, confirmed for 2xx, so
// a forked INVITE gets one early dialog per answering UAS. It returns the
// dialog and whether it was created; nil for 100 and for responses without
// a To tag or final non-2xx ones, which create nothing. It does not bound
// the dialogs one INVITE makes: a peer chooses the To tags, so the caller
// caps the forks it accepts (ua.Config.MaxForks) by looking the ID up
// with Get before filing a response with a new tag.
func (t *Table) Response(invite *sip.Request, res *sip.Response) (*Dialog, bool, error) {
	if res.StatusCode <= 100 || res.StatusCode >= 300 || res.To.Tag() == "" {
		return nil, false, nil
	}
	id := IDForResponse(res)
	t.mu.Lock()
	defer t.mu.Unlock()
	if d := t.m[id]; d != nil {
		d.ReceiveResponse(invite, res)
		return d, false, nil
	}
	d, err := NewUAC(invite, res)
	if err != nil {
		return nil, false, err
	}
	t.m[id] = d
	return d, true, nil
}
