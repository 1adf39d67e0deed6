// Package tpcc is third party call control (RFC 3725): a controller that
// connects two parties, A and B, by calling each of them from its own user
// agent, and then stays in the signalling path between them. It is the
// click-to-call behind the REST API's POST /api/v1/calls.
//
// Setup follows RFC 3725 §4.4 ("Flow IV", recommended when B is a person
// who may not answer at once):
//
//	controller → A   INVITE without SDP (From: B's identity, so A sees whom it will talk to)
//	A → controller   200 offer1
//	controller → A   ACK answer1: offer1's streams held (c=0.0.0.0, a=inactive), A hears silence
//	controller → B   INVITE offer1 (From: A's identity)
//	B → controller   200 answer2, ACK
//	controller → A   re-INVITE answer2
//	A → controller   200 answer3, ACK
//	controller → B   re-INVITE answer3, only if answer3 differs from offer1 in
//	                 what B needs (addresses, ports, formats, directions)
//
// Every description is passed on unchanged but for its o= line: the
// controller writes its own origin towards each leg, with a version that
// grows with each description that leg is given (RFC 3264 §8).
//
// Once connected, an offer from one leg (re-INVITE or UPDATE with SDP) is
// passed to the other in a re-INVITE, and the answer comes back; a
// re-INVITE without SDP gets the other party's last description as the
// offer, and an answer in the ACK that changes the party's media is passed
// on in a re-INVITE. Glare on the other leg comes back as 491. A BYE from
// either leg ends the other with BYE; Call.Hangup ends both.
//
// Failures: A rejecting or not answering within Config.RingTimeout (then
// CANCEL) fails the call and B is never called; B rejecting or not
// answering ends A with BYE and fails the call with B's code. A hang-up
// while a leg rings CANCELs it. A redirection (3xx) fails its leg like
// any refusal: the controller is trusted by the server it runs in, so the
// party it calls must not choose whom it calls next.
//
// Before the call connects, an offer from A (while B rings) is held as the
// first one was, and any offer while the setup re-INVITEs run gets 491, so
// that the peer retries once the setup is done (RFC 3261 §14.1).
//
// Progress is told through Config.OnEvent, in order per call. Every call
// runs on one goroutine of the Controller's, at most Config.MaxCalls at
// once; Close ends them all and waits for them.
//
// The API:
//
//	ctl, err := tpcc.New(tpcc.Config{UA: u, OnEvent: publish})
//	call, err := ctl.Originate(ctx, "alice", "sip:+15551234@example.test", tpcc.Options{})
//	call.ID(); call.CallIDs(); call.State(); <-call.Done(); call.Err()
//	call.Hangup(ctx)
//	ctl.Close() // before u.Close()
//
// Limits: descriptions must be readable by media/sdpedit (IP literal
// connection addresses); the held answer to A carries no a=crypto, so
// SDES-SRTP phones may refuse it; when B changes its media again in answer
// to A's final answer, the controller does not re-offer (that could
// ping-pong, RFC 3725 §4.2).
package tpcc

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
	"github.com/hlas-voip/hlas/ua"
)

// Call states, as Event.State and Call.State report them.
const (
	StateCallingA  = "calling-a"  // INVITE sent to A
	StateRingingA  = "ringing-a"  // A sent a provisional response (180, 183)
	StateAnsweredA = "answered-a" // A answered; it hears silence until B answers
	StateCallingB  = "calling-b"  // INVITE sent to B
	StateRingingB  = "ringing-b"  // B sent a provisional response
	StateConnected = "connected"  // A and B exchange media
	StateFailed    = "failed"     // a leg failed; Event.Code says how
	StateEnded     = "ended"      // the call was hung up; Event.Reason says by whom
)

// End reasons of an ended call (Event.Reason with StateEnded).
const (
	ReasonHangupA  = "a-hangup" // A sent BYE
	ReasonHangupB  = "b-hangup" // B sent BYE
	ReasonHangup   = "hangup"   // Call.Hangup
	ReasonShutdown = "shutdown" // Controller.Close
)

// Config configures a Controller. Zero fields take the defaults in their
// comments.
type Config struct {
	// UA is the controller's user agent: it places both legs, through its
	// Server (the outbound proxy) when set. Required. The caller owns it
	// and closes it after the Controller.
	UA *ua.UA
	// RingTimeout is how long each leg may ring before it is cancelled.
	// Default 30s.
	RingTimeout time.Duration
	// MaxCalls bounds the calls in progress; Originate beyond it returns
	// ErrBusy. Default 100. Each call holds two of the UA's calls: its
	// ua.Config.MaxCalls should be at least twice this.
	MaxCalls int
	// Logger receives logs with feature=tpcc. Nil discards them.
	Logger *slog.Logger
	// OnEvent is told every change of a call's state, in order per call.
	// It must not block.
	OnEvent func(Event)
	// NewID returns a call's identifier. Default 16 random hex digits.
	NewID func() string
	// Clock drives the ring timeouts. Default the wall clock.
	Clock transaction.Clock
}

// Event is a change in a call's state.
type Event struct {
	// ID is the call's identifier (Call.ID).
	ID string
	// State is one of the State constants.
	State string
	// CallIDA and CallIDB are the legs' Call-IDs (CallIDB is known from
	// StateCallingB on).
	CallIDA, CallIDB string
	// Leg is "a" or "b": the leg a failure came from.
	Leg string
	// Code is the SIP status of a failure: the leg's final response, 408
	// for no answer within RingTimeout, 503 when it could not be reached.
	// For an end before the call connected, 487.
	Code int
	// Reason is the reason phrase of a failure, or one of the Reason
	// constants for an end.
	Reason string
}

// Errors of Originate.
var (
	// ErrBusy is an origination beyond Config.MaxCalls.
	ErrBusy = errors.New("tpcc: too many calls in progress")
	// ErrClosed is an origination after Close.
	ErrClosed = errors.New("tpcc: controller closed")
)

// Error is why a call failed: the leg, and the status that failed it.
type Error struct {
	Leg    string // "a" or "b"
	Code   int
	Reason string
	Err    error // the user agent's error
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("tpcc: leg %s failed: %d %s", e.Leg, e.Code, e.Reason)
}

// Unwrap returns the user agent's error.
func (e *Error) Unwrap() error { return e.Err }

// reinviteTimeout bounds a re-INVITE the controller sends: it stays
// below the 32 s a peer waits for the answer to its own UPDATE (RFC 3261
// §17.1.2.2 Timer F) that the re-INVITE relays.
const reinviteTimeout = 16 * time.Second

// hangupTimeout bounds the wait for the response to a BYE.
const hangupTimeout = 10 * time.Second

// Controller places and connects third party calls. Its methods are safe
// for concurrent use.
type Controller struct {
	cfg  Config
	log  *slog.Logger
	addr netip.Addr // written in o= lines

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	calls  map[string]*Call
}

// New checks cfg and returns a Controller.
func New(cfg Config) (*Controller, error) {
	if cfg.UA == nil {
		return nil, errors.New("tpcc: Config.UA is required")
	}
	if cfg.RingTimeout <= 0 {
		cfg.RingTimeout = 30 * time.Second
	}
	if cfg.MaxCalls <= 0 {
		cfg.MaxCalls = 100
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NewID == nil {
		cfg.NewID = func() string { return randHex(8) }
	}
	if cfg.Clock == nil {
		cfg.Clock = transaction.RealClock{}
	}
	addr, err := netip.ParseAddr(strings.Trim(cfg.UA.Contact().URI.Host, "[]"))
	if err != nil {
		addr = cfg.UA.Addr().Addr()
	}
	c := &Controller{cfg: cfg, log: cfg.Logger.With("feature", "tpcc"), addr: addr, calls: map[string]*Call{}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Options are the optional parts of an origination.
type Options struct {
	// FromName and ToName are the display names of A and B: A sees B's
	// as the caller, B sees A's.
	FromName, ToName string
	// Headers are extra header fields of both INVITEs (Subject,
	// Call-Info, X-...); see ua.CallOptions.Headers.
	Headers []sip.Field
}

// Originate starts a call that connects from (A, called first) with to
// (B): "alice", "alice@example.test", "sip:alice@host:port", "tel:+1...".
// It returns once the call has started, with its identifier and A's
// Call-ID; the outcome comes through Config.OnEvent and the Call. ctx only
// bounds Originate itself: the call outlives it.
func (c *Controller) Originate(ctx context.Context, from, to string, o Options) (*Call, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := (&ua.CallOptions{Headers: o.Headers}).Check(); err != nil {
		return nil, fmt.Errorf("tpcc: %w", err)
	}
	if !displayName(o.FromName) || !displayName(o.ToName) {
		return nil, errors.New("tpcc: a display name holds control characters or is not UTF-8")
	}
	aURI, err := c.target(from)
	if err != nil {
		return nil, fmt.Errorf("tpcc: from %q: %w", from, err)
	}
	bURI, err := c.target(to)
	if err != nil {
		return nil, fmt.Errorf("tpcc: to %q: %w", to, err)
	}
	call := &Call{ctl: c, id: c.cfg.NewID(), aURI: aURI, bURI: bURI, headers: o.Headers,
		done: make(chan struct{}), state: StateCallingA}
	call.aID, call.bID = c.callID(), c.callID()
	call.aShown = identity(bURI, o.ToName)
	call.bShown = identity(aURI, o.FromName)
	for i := range call.orig {
		call.orig[i] = origin{sessID: randUint(), addr: c.addr}
	}
	call.ctx, call.cancel = context.WithCancel(c.ctx)
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		call.cancel()
		return nil, ErrClosed
	case len(c.calls) >= c.cfg.MaxCalls:
		c.mu.Unlock()
		call.cancel()
		return nil, ErrBusy
	case c.calls[call.id] != nil:
		c.mu.Unlock()
		call.cancel()
		return nil, fmt.Errorf("tpcc: call id %q in use", call.id)
	}
	c.calls[call.id] = call
	c.wg.Add(1)
	c.mu.Unlock()
	call.emit(Event{State: StateCallingA})
	go call.run()
	return call, nil
}

// target turns what the API was given into a URI; a bare user is one of
// the UA's domain.
func (c *Controller) target(s string) (sip.URI, error) {
	s = strings.TrimSpace(s)
	if s != "" && !strings.ContainsAny(s, "@:") {
		s += "@" + c.cfg.UA.AOR().Host
	}
	u, err := ua.ParseTarget(s)
	if err != nil {
		return sip.URI{}, err
	}
	if u.Host == "" {
		return sip.URI{}, errors.New("no host")
	}
	return u, nil
}

// displayName reports a name that QuoteDisplay can make a quoted-string
// of: UTF-8 without control characters (RFC 3261 §25.1 quoted-pair
// excludes CR and LF), at most 128 bytes.
func displayName(s string) bool {
	if len(s) > 128 || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return false
		}
	}
	return true
}

// identity is the From a leg shows: the other party's URI without
// parameters or headers, and its display name.
func identity(u sip.URI, name string) *sip.Address {
	u.Params, u.Headers = "", ""
	a := &sip.Address{URI: u}
	if name != "" {
		a.Display = sip.QuoteDisplay(name)
	}
	return a
}

func (c *Controller) callID() string {
	return randHex(10) + "@" + strings.Trim(c.cfg.UA.Contact().URI.Host, "[]")
}

// Calls returns the calls in progress.
func (c *Controller) Calls() []*Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Call, 0, len(c.calls))
	for _, call := range c.calls {
		out = append(out, call)
	}
	return out
}

// Owns reports whether callID is a leg of a call in progress: what a
// server that trusts the controller's requests checks, so that it trusts
// no other request from the controller's address.
func (c *Controller) Owns(callID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, call := range c.calls {
		if call.aID == callID || call.bID == callID {
			return true
		}
	}
	return false
}

// Get returns the call in progress with that identifier, or nil.
func (c *Controller) Get(id string) *Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[id]
}

// Close ends every call (BYE to connected legs, CANCEL to ringing ones),
// refuses new ones, and waits for the calls' goroutines. The UA stays
// open: it belongs to the caller.
func (c *Controller) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
}

// leg indices
const (
	legA = 0
	legB = 1
)

var legNames = [2]string{"a", "b"}

// Call is one third party call. Its methods are safe for concurrent use.
type Call struct {
	ctl            *Controller
	id             string
	aURI, bURI     sip.URI
	aShown, bShown *sip.Address // the From each leg sees
	aID, bID       string       // Call-IDs
	headers        []sip.Field
	ctx            context.Context // ends on Hangup or Close
	cancel         context.CancelFunc
	done           chan struct{}

	mu    sync.Mutex
	state string
	err   error
	legs  [2]*ua.Call
	orig  [2]origin // the o= line written towards each leg
	given [2][]byte // the last description each leg was given
	got   [2][]byte // the last description each leg gave
	// relaying says a leg's changed answer is being passed to the other
	// leg; pending is the latest that came meanwhile (relayAnswer).
	relaying [2]bool
	pending  [2][]byte
	rang     [2]bool
	hungBy   string // the end reason, once known
	setupOK  bool   // the setup re-INVITEs are done: offers are relayed
	bCalled  bool   // B's INVITE went out: events carry its Call-ID
}

// ID returns the call's identifier.
func (c *Call) ID() string { return c.id }

// CallIDs returns the Call-IDs of the A and B legs.
func (c *Call) CallIDs() (a, b string) { return c.aID, c.bID }

// State returns the call's state (one of the State constants).
func (c *Call) State() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Done is closed when the call is over and both legs are ended.
func (c *Call) Done() <-chan struct{} { return c.done }

// Err returns why the call failed (an *Error), or nil: while it lasts,
// and after it ended by a hang-up.
func (c *Call) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Hangup ends the call: BYE to the connected legs, CANCEL to a ringing
// one. It waits until the call is over or ctx ends.
func (c *Call) Hangup(ctx context.Context) error {
	c.mu.Lock()
	if c.hungBy == "" {
		c.hungBy = ReasonHangup
	}
	c.mu.Unlock()
	c.cancel()
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// emit sets the state and tells OnEvent.
func (c *Call) emit(e Event) {
	c.mu.Lock()
	c.state = e.State
	if e.State == StateCallingB {
		c.bCalled = true
	}
	if c.bCalled {
		e.CallIDB = c.bID
	}
	c.mu.Unlock()
	e.ID, e.CallIDA = c.id, c.aID
	c.ctl.log.Debug("call", "id", c.id, "state", e.State, "code", e.Code, "reason", e.Reason)
	if f := c.ctl.cfg.OnEvent; f != nil {
		f(e)
	}
}

// ringing reports the first provisional response of a leg.
func (c *Call) ringing(leg int) func(*sip.Response) {
	state := StateRingingA
	if leg == legB {
		state = StateRingingB
	}
	return func(*sip.Response) {
		c.mu.Lock()
		first := !c.rang[leg]
		c.rang[leg] = true
		c.mu.Unlock()
		if first {
			c.emit(Event{State: state})
		}
	}
}

// ringContext is ctx ended after the ring timeout, on the controller's
// clock.
func (c *Call) ringContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(c.ctx)
	t := c.ctl.cfg.Clock.AfterFunc(c.ctl.cfg.RingTimeout, cancel)
	return ctx, func() { t.Stop(); cancel() }
}

// run is the call's goroutine: the setup of RFC 3725 §4.4, then the wait
// for its end.
func (c *Call) run() {
	defer func() {
		c.ctl.mu.Lock()
		delete(c.ctl.calls, c.id)
		c.ctl.mu.Unlock()
		c.cancel()
		close(c.done)
		c.ctl.wg.Done()
	}()
	u := c.ctl.cfg.UA

	// (1)-(3): A, asked for an offer, is held with a black hole answer.
	ringA, stopA := c.ringContext()
	a, err := u.CallWith(ringA, c.aURI.String(), ua.CallOptions{
		NoOffer:       true,
		AnswerOffer:   c.holdA,
		From:          c.aShown,
		CallID:        c.aID,
		Headers:       c.headers,
		OnProvisional: c.ringing(legA),
		OnOffer:       c.relay(legA),
		OnAnswer:      c.relayAnswer(legA),
		NoRedirect:    true,
	})
	timedOut := ringA.Err() != nil && c.ctx.Err() == nil
	stopA()
	if err != nil {
		c.legFailed(legA, err, timedOut)
		return
	}
	c.mu.Lock()
	c.legs[legA] = a
	offer1 := c.got[legA]
	c.mu.Unlock()
	c.emit(Event{State: StateAnsweredA})

	// (4)-(6): B gets A's offer.
	c.mu.Lock()
	offer2, err := reorigin(offer1, &c.orig[legB])
	c.given[legB] = offer2
	c.mu.Unlock()
	if err != nil { // holdA parsed it already; defensive
		c.hangupLeg(a)
		c.fail(legA, 488, "unusable offer", err)
		return
	}
	c.emit(Event{State: StateCallingB})
	ringB, stopB := c.ringContext()
	stopWatch := context.AfterFunc(a.Context(), stopB) // A hung up while B rings
	b, err := u.CallWith(ringB, c.bURI.String(), ua.CallOptions{
		Offer:         offer2,
		From:          c.bShown,
		CallID:        c.bID,
		Headers:       c.headers,
		OnProvisional: c.ringing(legB),
		OnOffer:       c.relay(legB),
		OnAnswer:      c.relayAnswer(legB),
		NoRedirect:    true,
	})
	timedOut = ringB.Err() != nil && c.ctx.Err() == nil && a.Context().Err() == nil
	stopWatch()
	stopB()
	if err != nil {
		if a.Context().Err() != nil {
			c.ended(ReasonHangupA, 487)
			return
		}
		c.hangupLeg(a)
		c.legFailed(legB, err, timedOut)
		return
	}
	c.mu.Lock()
	c.legs[legB] = b
	c.got[legB] = b.RemoteSDP()
	c.mu.Unlock()

	// (7)-(9): A gets B's answer as a new offer; A's answer goes to B when
	// it changes what B was told.
	if err := c.connect(a, b); err != nil {
		c.mu.Lock()
		ending := c.hungBy != "" || c.ctx.Err() != nil
		c.mu.Unlock()
		c.hangupLeg(a)
		c.hangupLeg(b)
		if ending || a.Context().Err() != nil || b.Context().Err() != nil {
			c.endedAfter(a, b)
			return
		}
		code, reason := status(err, false)
		c.fail(legA, code, reason, err)
		return
	}
	c.emit(Event{State: StateConnected})

	select {
	case <-a.Done():
	case <-b.Done():
	case <-c.ctx.Done():
	}
	c.hangupLeg(a)
	c.hangupLeg(b)
	c.endedAfter(a, b)
}

// connect runs the re-INVITEs that connect A to B (RFC 3725 §4.4 steps 7
// to 9, and the re-INVITE of B when A's answer differs).
func (c *Call) connect(a, b *ua.Call) error {
	c.mu.Lock()
	offer3, err := reorigin(c.got[legB], &c.orig[legA])
	c.mu.Unlock()
	if err != nil {
		return err
	}
	res, err := c.reinvite(a, offer3)
	if err != nil {
		return err
	}
	answer3 := res.Body
	c.mu.Lock()
	c.given[legA], c.got[legA] = offer3, answer3
	known := c.given[legB]
	c.mu.Unlock()
	if !sameMedia(answer3, known) {
		c.mu.Lock()
		offer4, err := reorigin(answer3, &c.orig[legB])
		c.mu.Unlock()
		if err != nil {
			return err
		}
		res, err := c.reinvite(b, offer4)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.given[legB], c.got[legB] = offer4, res.Body
		c.mu.Unlock()
		if !sameMedia(res.Body, offer3) {
			// A further round could ping-pong (RFC 3725 §4.2): B's media as
			// A knows them may be stale until either side re-offers.
			c.ctl.log.Info("B changed its media after A's answer; not re-offered", "id", c.id)
		}
	}
	c.mu.Lock()
	c.setupOK = true
	c.mu.Unlock()
	return nil
}

// reinvite sends a re-INVITE with offer and returns the 2xx, retrying
// after glare (491, or our own transaction refused while one of the
// peer's is pending) at the random interval of RFC 3261 §14.1 for the
// owner of the Call-ID (2.1 to 4 s), at most three times.
func (c *Call) reinvite(leg *ua.Call, offer []byte) (*sip.Response, error) {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(c.ctx, reinviteTimeout)
		res, err := leg.ReInvite(ctx, offer)
		cancel()
		if err == nil {
			if len(res.Body) == 0 {
				return nil, errors.New("tpcc: 2xx to a re-INVITE with an offer has no answer")
			}
			return res, nil
		}
		var se *ua.StatusError
		glare := errors.Is(err, ua.ErrState) || errors.As(err, &se) && se.Code == 491
		if !glare || attempt == 2 {
			return nil, err
		}
		wait := 2100*time.Millisecond + time.Duration(randUint()%1900)*time.Millisecond
		ch := make(chan struct{})
		t := c.ctl.cfg.Clock.AfterFunc(wait, func() { close(ch) })
		select {
		case <-ch:
		case <-c.ctx.Done():
			t.Stop()
			return nil, c.ctx.Err()
		case <-leg.Done():
			t.Stop()
			return nil, fmt.Errorf("tpcc: leg ended: %w", leg.Err())
		}
	}
}

// holdA answers A's offer in the ACK (RFC 3725 §4.4 step 3).
func (c *Call) holdA(offer []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ans, err := holdAnswer(offer, &c.orig[legA])
	if err != nil {
		return nil, err
	}
	c.got[legA], c.given[legA] = offer, ans
	return ans, nil
}

// relay is the offer handler of a leg: before the call is connected the
// offer is held, as the first one was; after, it goes to the other leg in
// a re-INVITE and the answer comes back. A nil offer (a re-INVITE without
// SDP) gets the other party's last description.
func (c *Call) relay(leg int) func([]byte) ([]byte, error) {
	other := 1 - leg
	return func(offer []byte) ([]byte, error) {
		c.mu.Lock()
		if offer == nil {
			defer c.mu.Unlock()
			src := c.got[other]
			if src == nil || !c.setupOK {
				src = c.given[leg] // before connect: the hold again
			}
			out, err := reorigin(src, &c.orig[leg])
			if err != nil {
				return nil, err
			}
			c.given[leg] = out
			return out, nil
		}
		peer, connected := c.legs[other], c.setupOK
		if !connected && peer != nil {
			// The controller's own setup re-INVITEs are under way: the
			// peer retries after them (RFC 3261 §14.2).
			c.mu.Unlock()
			return nil, &ua.StatusError{Code: 491, Reason: "Request Pending"}
		}
		if !connected {
			// B is not there yet: held, as A's first offer was.
			defer c.mu.Unlock()
			ans, err := holdAnswer(offer, &c.orig[leg])
			if err != nil {
				return nil, err
			}
			c.got[leg], c.given[leg] = offer, ans
			return ans, nil
		}
		fwd, err := reorigin(offer, &c.orig[other])
		c.mu.Unlock()
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(c.ctx, reinviteTimeout)
		res, err := peer.ReInvite(ctx, fwd)
		cancel()
		if err != nil {
			var se *ua.StatusError
			switch {
			case errors.Is(err, ua.ErrState):
				return nil, &ua.StatusError{Code: 491, Reason: "Request Pending"}
			case errors.As(err, &se) && se.Code == 491 || errors.As(err, &se) && se.Code == 488:
				return nil, err
			}
			return nil, &ua.StatusError{Code: 500, Reason: "Other Party Failed"}
		}
		if len(res.Body) == 0 {
			return nil, errors.New("tpcc: the other party answered without SDP")
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		out, err := reorigin(res.Body, &c.orig[leg])
		if err != nil {
			return nil, err
		}
		c.given[other], c.got[other] = fwd, res.Body
		c.got[leg], c.given[leg] = offer, out
		return out, nil
	}
}

// relayAnswer hears the answer a leg put in its ACK to the offer relay
// made for its re-INVITE without SDP: when it changes the leg's media as
// the other party knows them, the other party gets it in a re-INVITE.
func (c *Call) relayAnswer(leg int) func([]byte) {
	other := 1 - leg
	return func(answer []byte) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.got[leg] = answer
		if c.relaying[leg] {
			// One relay per leg at a time, the latest answer last: the
			// running one takes it when its re-INVITE is done.
			c.pending[leg] = answer
			return
		}
		c.relaying[leg] = true
		defer func() { c.relaying[leg] = false }()
		for {
			peer, known := c.legs[other], c.given[other]
			if peer == nil || !c.setupOK || sameMedia(answer, known) {
				return
			}
			fwd, err := reorigin(answer, &c.orig[other])
			if err != nil {
				return
			}
			c.mu.Unlock()
			res, err := c.reinvite(peer, fwd)
			c.mu.Lock()
			if err != nil {
				c.ctl.log.Info("re-INVITE with the new answer failed", "id", c.id, "leg", legNames[other], "err", err)
			} else {
				c.given[other], c.got[other] = fwd, res.Body
			}
			if c.pending[leg] == nil {
				return
			}
			answer, c.pending[leg] = c.pending[leg], nil
		}
	}
}

// hangupLeg ends a leg that is still up with BYE.
func (c *Call) hangupLeg(l *ua.Call) {
	if l == nil || l.State() == ua.Ended {
		return
	}
	// Not the call's context: Hangup and Close have ended that one.
	ctx, cancel := context.WithTimeout(context.Background(), hangupTimeout)
	defer cancel()
	if err := l.Hangup(ctx); err != nil {
		c.ctl.log.Debug("hangup", "id", c.id, "err", err)
	}
}

// legFailed ends a call whose leg could not be established.
func (c *Call) legFailed(leg int, err error, timedOut bool) {
	if c.ctx.Err() != nil {
		c.ended(c.reason(), 487)
		return
	}
	code, reason := status(err, timedOut)
	c.fail(leg, code, reason, err)
}

// status maps a leg's failure to a SIP status.
func status(err error, timedOut bool) (int, string) {
	var se *ua.StatusError
	switch {
	case timedOut:
		return 408, "No Answer"
	case errors.As(err, &se):
		return se.Code, se.Reason
	case errors.Is(err, ua.ErrTimeout):
		return 408, "Request Timeout"
	case errors.Is(err, ua.ErrTransport):
		return 503, "Service Unavailable"
	case errors.Is(err, ua.ErrNoCommonCodec), errors.Is(err, errSDP):
		return 488, "Not Acceptable Here"
	}
	// The error itself stays in Error.Err (logs, the API's detail): a
	// Go error is no reason phrase.
	return 500, "Server Internal Error"
}

func (c *Call) fail(leg, code int, reason string, err error) {
	c.mu.Lock()
	c.err = &Error{Leg: legNames[leg], Code: code, Reason: reason, Err: err}
	c.mu.Unlock()
	c.emit(Event{State: StateFailed, Leg: legNames[leg], Code: code, Reason: reason})
}

// reason is the end reason set by Hangup or Close.
func (c *Call) reason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hungBy != "" {
		return c.hungBy
	}
	return ReasonShutdown
}

func (c *Call) ended(reason string, code int) {
	c.emit(Event{State: StateEnded, Reason: reason, Code: code})
}

// endedAfter reports the end of a connected (or connecting) call: who
// sent BYE first decides the reason.
func (c *Call) endedAfter(a, b *ua.Call) {
	reason := c.reason()
	switch {
	case errors.Is(a.Err(), ua.ErrRemoteHangup):
		reason = ReasonHangupA
	case errors.Is(b.Err(), ua.ErrRemoteHangup):
		reason = ReasonHangupB
	}
	c.ended(reason, 0)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// randUint returns a random number below 2^62 (an SDP session id must fit
// in 63 bits for some parsers).
func randUint() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:]) >> 2
}
