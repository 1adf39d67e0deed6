package tpcc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
	"github.com/hlas-voip/hlas/ua"
)

const t1 = 500 * time.Millisecond

func newClock() *transaction.FakeClock { return transaction.NewFakeClock(time.Unix(1_700_000_000, 0)) }

// party is a phone: a UA that answers calls as onCall says, recording
// what it receives.
type party struct {
	*ua.UA
	port  int
	calls chan *ua.Call // calls it answered

	mu   sync.Mutex
	reqs []seenReq // requests received within its calls
}

type seenReq struct {
	method string
	body   []byte
}

// behaviours of a party
var (
	answers = func(c *ua.Call) error {
		if err := c.Ring(context.Background()); err != nil {
			return err
		}
		return c.Answer(context.Background())
	}
	busy      = func(c *ua.Call) error { return c.Reject(486, "") }
	ringsOnly = func(c *ua.Call) error { _ = c.Ring(context.Background()); <-c.Done(); return nil }
)

func newParty(t *testing.T, user string, port int, clock transaction.Clock, onCall func(*ua.Call) error) *party {
	t.Helper()
	p := &party{port: port, calls: make(chan *ua.Call, 10)}
	u, err := ua.New(ua.Config{User: user + "@example.test", MediaPort: port, Clock: clock,
		OnCall: func(c *ua.Call) {
			if err := onCall(c); err == nil && c.State() == ua.Established {
				p.calls <- c
			}
		},
		OnRequest: func(_ *ua.Call, r *sip.Request) {
			p.mu.Lock()
			p.reqs = append(p.reqs, seenReq{r.Method, append([]byte(nil), r.Body...)})
			p.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	p.UA = u
	return p
}

func (p *party) target() string { return "sip:" + p.AOR().User + "@" + p.Addr().String() }

func (p *party) seen() []seenReq {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]seenReq(nil), p.reqs...)
}

// received returns the requests of a method received so far.
func (p *party) received(method string) []seenReq {
	var out []seenReq
	for _, r := range p.seen() {
		if r.method == method {
			out = append(out, r)
		}
	}
	return out
}

func (p *party) call(t *testing.T) *ua.Call {
	t.Helper()
	select {
	case c := <-p.calls:
		return c
	case <-time.After(waitLimit):
		t.Fatal("no call answered")
		return nil
	}
}

// events records a controller's events.
type events struct {
	mu  sync.Mutex
	all []Event
}

func (e *events) add(ev Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
}

// states returns the states seen for call id.
func (e *events) states(id string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.all {
		if ev.ID == id {
			out = append(out, ev.State)
		}
	}
	return out
}

func (e *events) last(id string) Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.all) - 1; i >= 0; i-- {
		if e.all[i].ID == id {
			return e.all[i]
		}
	}
	return Event{}
}

// waitLimit bounds a wait for what the peers do on loopback: generous,
// so that a machine loaded by parallel tests does not fail them.
const waitLimit = 20 * time.Second

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func waitDone(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// rig is a controller with its own UA, and the phones A and B.
type rig struct {
	clock  *transaction.FakeClock
	ctl    *Controller
	cua    *ua.UA
	a, b   *party
	ev     *events
	closed bool // close ran
}

func newRig(t *testing.T, aCall, bCall func(*ua.Call) error, mod func(*Config)) *rig {
	t.Helper()
	r := &rig{clock: newClock(), ev: &events{}}
	u, err := ua.New(ua.Config{User: "click@example.test", Clock: r.clock})
	if err != nil {
		t.Fatal(err)
	}
	r.cua = u
	r.a = newParty(t, "alice", 41000, r.clock, aCall)
	r.b = newParty(t, "bob", 42000, r.clock, bCall)
	cfg := Config{UA: u, RingTimeout: 5 * time.Second, OnEvent: r.ev.add, Clock: r.clock}
	if mod != nil {
		mod(&cfg)
	}
	if r.ctl, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	// A test that fails before close still lets go of everything, so
	// that the next tests' leak checks see only their own.
	t.Cleanup(func() {
		if !r.closed {
			r.ctl.Close()
			for _, u := range []*ua.UA{r.cua, r.a.UA, r.b.UA} {
				_ = u.Close()
			}
		}
	})
	return r
}

func (r *rig) originate(t *testing.T) *Call {
	t.Helper()
	c, err := r.ctl.Originate(context.Background(), r.a.target(), r.b.target(), Options{FromName: "Alice", ToName: "Bob",
		Headers: []sip.Field{{Name: "X-Hlas-Origination", Value: "test"}}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// close ends everything and checks that nothing is left.
func (r *rig) close(t *testing.T) {
	t.Helper()
	r.closed = true
	r.ctl.Close()
	for _, u := range []*ua.UA{r.cua, r.a.UA, r.b.UA} {
		waitFor(t, "calls to end", func() bool { return u.Stats().Calls == 0 })
	}
	time.Sleep(20 * time.Millisecond) // the last messages land
	for range 3 {
		r.clock.Advance(64*t1 + 6*time.Second)
		time.Sleep(5 * time.Millisecond)
	}
	for _, u := range []*ua.UA{r.cua, r.a.UA, r.b.UA} {
		waitFor(t, "UA at rest", func() bool {
			s := u.Stats()
			return s.Transactions.ClientActive == 0 && s.Transactions.ServerActive == 0 && s.Dialogs == 0
		})
		if err := u.Close(); err != nil {
			t.Error(err)
		}
	}
}

func audioPort(sdp []byte) string {
	for _, l := range strings.Split(string(sdp), "\r\n") {
		if strings.HasPrefix(l, "m=audio ") {
			return strings.Fields(l)[1]
		}
	}
	return ""
}

func version(s string) uint64 {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 1 << 63
	}
	return v
}

func originLine(sdp []byte) []string {
	for _, l := range strings.Split(string(sdp), "\r\n") {
		if strings.HasPrefix(l, "o=") {
			return strings.Fields(l)
		}
	}
	return nil
}

// RFC 3725 §4.4: A is called without SDP and held with a black hole
// answer; B gets A's offer; A gets B's answer in a re-INVITE; both end up
// with each other's media. Then B's hold re-INVITE reaches A, and A's BYE
// reaches B.
func TestFlowIV(t *testing.T) {
	defer goleak.VerifyNone(t)
	r := newRig(t, answers, answers, nil)
	call := r.originate(t)
	ac, bc := r.a.call(t), r.b.call(t)
	waitFor(t, "connected", func() bool { return call.State() == StateConnected })
	idA, idB := call.CallIDs()

	// A: an INVITE without SDP, from B's identity, with the extra header.
	inv := ac.Request()
	if len(inv.Body) != 0 {
		t.Errorf("INVITE to A carries SDP:\n%s", inv.Body)
	}
	if inv.From.DisplayName() != "Bob" || inv.From.URI.User != "bob" || inv.CallID != idA {
		t.Errorf("INVITE to A: From %s, Call-ID %s (want %s)", inv.From.String(), inv.CallID, idA)
	}
	if inv.Get("X-Hlas-Origination") != "test" {
		t.Error("extra header missing on A's INVITE")
	}
	// A's first ACK: the hold answer to A's offer.
	acks := r.a.received(sip.ACK)
	if len(acks) < 2 {
		t.Fatalf("A got %d ACKs, want the initial one and the re-INVITE's", len(acks))
	}
	bh := acks[0].body
	if !bytes.Contains(bh, []byte("c=IN IP4 0.0.0.0\r\n")) || !bytes.Contains(bh, []byte("a=inactive\r\n")) ||
		!bytes.Contains(bh, []byte("a=rtpmap:0 PCMU/8000\r\n")) || audioPort(bh) == "0" {
		t.Errorf("RFC 3725 §4.4 answer in A's ACK is not a held one:\n%s", bh)
	}
	// B: A's offer, from A's identity.
	binv := bc.Request()
	if audioPort(binv.Body) != "41000" || !bytes.Contains(binv.Body, []byte("c=IN IP4 127.0.0.1")) {
		t.Errorf("B's offer is not A's media:\n%s", binv.Body)
	}
	if binv.From.DisplayName() != "Alice" || binv.From.URI.User != "alice" || binv.CallID != idB {
		t.Errorf("INVITE to B: From %s, Call-ID %s (want %s)", binv.From.String(), binv.CallID, idB)
	}
	// Connected: each side's remote description is the other's media.
	if p := audioPort(ac.RemoteSDP()); p != "42000" || bytes.Contains(ac.RemoteSDP(), []byte("inactive")) {
		t.Errorf("A's remote SDP is not B's media:\n%s", ac.RemoteSDP())
	}
	if p := audioPort(bc.RemoteSDP()); p != "41000" {
		t.Errorf("B's remote SDP is not A's media:\n%s", bc.RemoteSDP())
	}
	// RFC 3264 §8: the controller's origin towards A keeps its id and
	// grows its version.
	o1, o2 := originLine(bh), originLine(ac.RemoteSDP())
	if len(o1) < 3 || len(o2) < 3 || o1[1] != o2[1] || version(o1[2]) >= version(o2[2]) {
		t.Errorf("o= lines towards A: %v then %v", o1, o2)
	}
	if got := strings.Join(r.ev.states(call.ID()), ","); got != "calling-a,ringing-a,answered-a,calling-b,ringing-b,connected" {
		t.Errorf("events %s", got)
	}
	if ev := r.ev.last(call.ID()); ev.CallIDA != idA || ev.CallIDB != idB {
		t.Errorf("event Call-IDs %+v", ev)
	}
	if !strings.Contains(ac.Request().From.URI.String(), "bob@") {
		t.Error("A's From")
	}

	// B puts the call on hold: the offer reaches A, A's answer reaches B.
	hold := bytes.Replace(ua.Offer("127.0.0.1", 42000, 9, 2), []byte("a=sendrecv"), []byte("a=sendonly"), 1)
	res, err := bc.ReInvite(context.Background(), hold)
	if err != nil {
		t.Fatalf("B's hold re-INVITE: %v", err)
	}
	invs := r.a.received(sip.INVITE)
	if len(invs) == 0 || !bytes.Contains(invs[len(invs)-1].body, []byte("a=sendonly")) || audioPort(invs[len(invs)-1].body) != "42000" {
		t.Fatalf("A did not get B's hold offer: %v", invs)
	}
	if audioPort(res.Body) != "41000" {
		t.Errorf("B's answer is not A's:\n%s", res.Body)
	}
	if !bytes.Contains(ac.RemoteSDP(), []byte("a=sendonly")) {
		t.Errorf("A's remote SDP after hold:\n%s", ac.RemoteSDP())
	}

	// A hangs up: B gets BYE.
	if err := ac.Hangup(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitDone(t, "B's end", bc.Done())
	if !errors.Is(bc.Err(), ua.ErrRemoteHangup) {
		t.Errorf("B ended with %v, want BYE", bc.Err())
	}
	waitDone(t, "the call's end", call.Done())
	if ev := r.ev.last(call.ID()); ev.State != StateEnded || ev.Reason != ReasonHangupA {
		t.Errorf("last event %+v", ev)
	}
	if call.Err() != nil {
		t.Errorf("Err %v after a hang-up", call.Err())
	}
	r.close(t)
}

// Hangup sends BYE to both; a BYE from B ends A.
func TestHangup(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, by := range []string{"api", "b"} {
		t.Run(by, func(t *testing.T) {
			r := newRig(t, answers, answers, nil)
			call := r.originate(t)
			ac, bc := r.a.call(t), r.b.call(t)
			waitFor(t, "connected", func() bool { return call.State() == StateConnected })
			want := ReasonHangup
			if by == "api" {
				if err := call.Hangup(context.Background()); err != nil {
					t.Fatal(err)
				}
			} else {
				want = ReasonHangupB
				if err := bc.Hangup(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			waitDone(t, "A's end", ac.Done())
			waitDone(t, "B's end", bc.Done())
			waitDone(t, "the call's end", call.Done())
			if !errors.Is(ac.Err(), ua.ErrRemoteHangup) {
				t.Errorf("A ended with %v, want BYE", ac.Err())
			}
			if by == "api" && !errors.Is(bc.Err(), ua.ErrRemoteHangup) {
				t.Errorf("B ended with %v, want BYE", bc.Err())
			}
			if ev := r.ev.last(call.ID()); ev.State != StateEnded || ev.Reason != want {
				t.Errorf("last event %+v, want ended %s", ev, want)
			}
			r.close(t)
		})
	}
}

// B busy: A, already answered, gets BYE; the call fails with 486.
func TestBRejects(t *testing.T) {
	defer goleak.VerifyNone(t)
	r := newRig(t, answers, busy, nil)
	call := r.originate(t)
	ac := r.a.call(t)
	waitDone(t, "the call's end", call.Done())
	waitDone(t, "A's end", ac.Done())
	if !errors.Is(ac.Err(), ua.ErrRemoteHangup) {
		t.Errorf("A ended with %v, want BYE", ac.Err())
	}
	ev := r.ev.last(call.ID())
	if ev.State != StateFailed || ev.Code != 486 || ev.Leg != "b" {
		t.Errorf("last event %+v, want failed 486 on b", ev)
	}
	var e *Error
	if !errors.As(call.Err(), &e) || e.Code != 486 || e.Leg != "b" {
		t.Errorf("Err %v", call.Err())
	}
	r.close(t)
}

// A never answers: CANCEL after RingTimeout, failed 408, B never called.
// A hang-up while A rings CANCELs too.
func TestANotAnswering(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, how := range []string{"ring timeout", "hangup"} {
		t.Run(how, func(t *testing.T) {
			r := newRig(t, ringsOnly, answers, nil)
			var mu sync.Mutex
			var aCall *ua.Call
			r.a.UA.Close() // replaced by one that keeps its call
			r.a = newParty(t, "alice", 41000, r.clock, func(c *ua.Call) error {
				mu.Lock()
				aCall = c
				mu.Unlock()
				return ringsOnly(c)
			})
			call := r.originate(t)
			waitFor(t, "A ringing", func() bool { return call.State() == StateRingingA })
			if how == "hangup" {
				if err := call.Hangup(context.Background()); err != nil {
					t.Fatal(err)
				}
			} else {
				r.clock.Advance(5 * time.Second)
			}
			waitDone(t, "the call's end", call.Done())
			mu.Lock()
			ac := aCall
			mu.Unlock()
			waitDone(t, "A's end", ac.Done())
			if !errors.Is(ac.Err(), ua.ErrCancelled) {
				t.Errorf("A ended with %v, want CANCEL", ac.Err())
			}
			ev := r.ev.last(call.ID())
			switch how {
			case "hangup":
				if ev.State != StateEnded || ev.Code != 487 || ev.Reason != ReasonHangup {
					t.Errorf("last event %+v", ev)
				}
			default:
				if ev.State != StateFailed || ev.Code != 408 || ev.Leg != "a" {
					t.Errorf("last event %+v", ev)
				}
			}
			if got := strings.Join(r.ev.states(call.ID()), ","); strings.Contains(got, "calling-b") {
				t.Errorf("B was called: %s", got)
			}
			if s := r.b.Stats(); s.Calls != 0 || len(r.b.calls) != 0 {
				t.Errorf("B has calls: %+v", s)
			}
			r.close(t)
		})
	}
}

// MaxCalls: one more origination is refused with ErrBusy; Close ends the
// calls in progress and refuses new ones.
func TestMaxCallsAndClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	r := newRig(t, answers, answers, func(c *Config) { c.MaxCalls = 2 })
	c1, c2 := r.originate(t), r.originate(t)
	var legs []*ua.Call
	for range 2 {
		legs = append(legs, r.a.call(t), r.b.call(t))
	}
	if _, err := r.ctl.Originate(context.Background(), r.a.target(), r.b.target(), Options{}); !errors.Is(err, ErrBusy) {
		t.Errorf("third call: %v, want ErrBusy", err)
	}
	waitFor(t, "connected", func() bool { return c1.State() == StateConnected && c2.State() == StateConnected })
	r.ctl.Close()
	for i, l := range legs {
		waitDone(t, fmt.Sprint("leg ", i), l.Done())
		if !errors.Is(l.Err(), ua.ErrRemoteHangup) {
			t.Errorf("leg %d ended with %v, want BYE", i, l.Err())
		}
	}
	for _, c := range []*Call{c1, c2} {
		if ev := r.ev.last(c.ID()); ev.State != StateEnded || ev.Reason != ReasonShutdown {
			t.Errorf("last event %+v", ev)
		}
	}
	if _, err := r.ctl.Originate(context.Background(), r.a.target(), r.b.target(), Options{}); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
	r.close(t)
}

// RFC 3725 §4.4: when A's final answer differs from the offer B was given
// (here: another port), B is re-INVITEd with it.
func TestAnswerDiffersReInvitesB(t *testing.T) {
	defer goleak.VerifyNone(t)
	r := newRig(t, answers, answers, nil)
	r.a.UA.Close()
	r.a = newParty(t, "alice", 41000, r.clock, func(c *ua.Call) error {
		c.OnOffer(func(offer []byte) ([]byte, error) {
			return ua.Answer(offer, "127.0.0.1", 41500, 1, 2)
		})
		return answers(c)
	})
	call := r.originate(t)
	ac, bc := r.a.call(t), r.b.call(t)
	waitFor(t, "connected", func() bool { return call.State() == StateConnected })
	if p := audioPort(bc.RemoteSDP()); p != "41500" {
		t.Errorf("B's remote SDP after A's new answer:\n%s", bc.RemoteSDP())
	}
	if n := len(r.b.received(sip.INVITE)); n != 1 {
		t.Errorf("B got %d re-INVITEs, want 1", n)
	}
	if p := audioPort(ac.RemoteSDP()); p != "42000" {
		t.Errorf("A's remote SDP:\n%s", ac.RemoteSDP())
	}
	r.close(t)
}

func TestOriginateBadTargets(t *testing.T) {
	defer goleak.VerifyNone(t)
	r := newRig(t, answers, answers, nil)
	for _, tc := range [][2]string{{"", "bob"}, {"alice", "sip:"}, {"a b@@", "bob"}, {"alice@x\r\nVia: evil", "bob"}} {
		if _, err := r.ctl.Originate(context.Background(), tc[0], tc[1], Options{}); err == nil {
			t.Errorf("Originate(%q, %q) accepted", tc[0], tc[1])
		}
	}
	for name, o := range map[string]Options{
		"CRLF in a display name": {FromName: "Alice\r\nVia: evil"},
		"not UTF-8":              {ToName: "\xff"},
		"typed header":           {Headers: []sip.Field{{Name: "Contact", Value: "<sip:x@y>"}}},
	} {
		if _, err := r.ctl.Originate(context.Background(), "alice", "bob", o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if n := len(r.ctl.Calls()); n != 0 {
		t.Errorf("%d calls after refused originations", n)
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New without UA accepted")
	}
	r.close(t)
}

// While B rings: a hang-up CANCELs B and sends BYE to A; A's BYE CANCELs B.
func TestEndWhileBRings(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, by := range []string{"api", "a"} {
		t.Run(by, func(t *testing.T) {
			var mu sync.Mutex
			var bCall *ua.Call
			r := newRig(t, answers, func(c *ua.Call) error {
				mu.Lock()
				bCall = c
				mu.Unlock()
				return ringsOnly(c)
			}, nil)
			call := r.originate(t)
			ac := r.a.call(t)
			waitFor(t, "B ringing", func() bool { return call.State() == StateRingingB })
			want := ReasonHangup
			if by == "api" {
				if err := call.Hangup(context.Background()); err != nil {
					t.Fatal(err)
				}
			} else {
				want = ReasonHangupA
				if err := ac.Hangup(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			waitDone(t, "the call's end", call.Done())
			mu.Lock()
			bc := bCall
			mu.Unlock()
			waitDone(t, "B's end", bc.Done())
			if !errors.Is(bc.Err(), ua.ErrCancelled) {
				t.Errorf("B ended with %v, want CANCEL", bc.Err())
			}
			waitDone(t, "A's end", ac.Done())
			if by == "api" && !errors.Is(ac.Err(), ua.ErrRemoteHangup) {
				t.Errorf("A ended with %v, want BYE", ac.Err())
			}
			if ev := r.ev.last(call.ID()); ev.State != StateEnded || ev.Reason != want || ev.Code != 487 {
				t.Errorf("last event %+v, want ended %s 487", ev, want)
			}
			r.close(t)
		})
	}
}

// After connect: an UPDATE offer from B reaches A as a re-INVITE; a
// re-INVITE without SDP from A is offered B's media, and an answer in its
// ACK that moves A's media is given to B.
func TestRelayUpdateAndOfferless(t *testing.T) {
	defer goleak.VerifyNone(t)
	r := newRig(t, answers, answers, nil)
	call := r.originate(t)
	ac, bc := r.a.call(t), r.b.call(t)
	waitFor(t, "connected", func() bool { return call.State() == StateConnected })

	upd := ua.Offer("127.0.0.1", 42002, 11, 3)
	res, err := bc.Update(context.Background(), upd)
	if err != nil || audioPort(res.Body) != "41000" {
		t.Fatalf("UPDATE from B: %v", err)
	}
	invs := r.a.received(sip.INVITE)
	if len(invs) == 0 || audioPort(invs[len(invs)-1].body) != "42002" {
		t.Fatalf("A did not get B's UPDATE offer")
	}
	if audioPort(ac.RemoteSDP()) != "42002" {
		t.Errorf("A's remote SDP:\n%s", ac.RemoteSDP())
	}

	// The handler as the UA calls it for A's re-INVITE without SDP.
	offer, err := call.relay(legA)(nil)
	if err != nil || audioPort(offer) != "42002" {
		t.Fatalf("offer for A's re-INVITE without SDP: %v\n%s", err, offer)
	}
	before := len(r.b.received(sip.INVITE))
	call.relayAnswer(legA)(ac.LocalSDP()) // unchanged: B is not bothered
	if n := len(r.b.received(sip.INVITE)); n != before {
		t.Errorf("B re-INVITEd for an unchanged answer")
	}
	moved, err := ua.Answer(offer, "127.0.0.1", 41900, 5, 1)
	if err != nil {
		t.Fatal(err)
	}
	call.relayAnswer(legA)(moved)
	if audioPort(bc.RemoteSDP()) != "41900" {
		t.Errorf("B's remote SDP after A's new answer:\n%s", bc.RemoteSDP())
	}
	if err := call.Hangup(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.close(t)
}

// RFC 3261 §14.1: A answers the controller's re-INVITE 491 (glare); the
// controller tries again after 2.1 to 4 s and connects.
func TestSetupReInviteGlare(t *testing.T) {
	defer goleak.VerifyNone(t)
	r := newRig(t, answers, answers, nil)
	r.a.UA.Close()
	var mu sync.Mutex
	refused := 0
	r.a = newParty(t, "alice", 41000, r.clock, func(c *ua.Call) error {
		c.OnOffer(func(offer []byte) ([]byte, error) {
			mu.Lock()
			defer mu.Unlock()
			if refused == 0 {
				refused++
				return nil, &ua.StatusError{Code: 491}
			}
			return ua.Answer(offer, "127.0.0.1", 41000, 1, 2)
		})
		return answers(c)
	})
	call := r.originate(t)
	ac, bc := r.a.call(t), r.b.call(t)
	waitFor(t, "the 491", func() bool { mu.Lock(); defer mu.Unlock(); return refused == 1 })
	for i := 0; call.State() != StateConnected; i++ {
		if i == 500 {
			t.Fatalf("not connected after the 491: %s", call.State())
		}
		r.clock.Advance(100 * time.Millisecond)
		time.Sleep(time.Millisecond)
	}
	if n := len(r.a.received(sip.INVITE)); n != 2 {
		t.Errorf("A got %d re-INVITEs, want 2", n)
	}
	if audioPort(ac.RemoteSDP()) != "42000" || audioPort(bc.RemoteSDP()) != "41000" {
		t.Error("media not connected after the retry")
	}
	r.close(t)
}
