package subscriber

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/event"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
)

// presencePkg is a presence package for the server's own notifier whose
// document is a version the test bumps.
type presencePkg struct {
	mu sync.Mutex
	v  int
}

func (p *presencePkg) Name() string                  { return "presence" }
func (p *presencePkg) Accept() []string              { return []string{"application/pidf+xml"} }
func (p *presencePkg) DefaultExpires() time.Duration { return time.Hour }
func (p *presencePkg) Authorize(_, _ string) event.Decision {
	return event.Active
}
func (p *presencePkg) Document(s *event.Subscription, _ bool) (string, []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return "application/pidf+xml", fmt.Appendf(nil, "%s v%d", s.Resource(), p.v)
}

// reparse writes a message and parses it back, as the far end reads it.
func reparse[M sip.Message](t testing.TB, m M) M {
	t.Helper()
	p, err := sip.ParseString(m.String())
	if err != nil {
		t.Fatalf("does not parse: %v\n%s", err, m.String())
	}
	return p.(M)
}

// relayTx is the notifier's server transaction of a SUBSCRIBE: its final
// response goes back to the Client's done.
type relayTx struct {
	t    testing.TB
	done func(*sip.Response, error)
}

func (x *relayTx) Respond(r *sip.Response) error {
	x.done(reparse(x.t, r), nil)
	return nil
}
func (x *relayTx) RespondStateless(r *sip.Response) error { return x.Respond(r) }
func (x *relayTx) Source() netip.AddrPort                 { return netip.MustParseAddrPort("192.0.2.1:5060") }
func (x *relayTx) Transport() string                      { return "UDP" }

// toNotifier is the Client's Sender: each SUBSCRIBE goes to the Notifier.
type toNotifier struct {
	t    testing.TB
	n    *event.Notifier
	mu   sync.Mutex
	sent int
}

func (s *toNotifier) SendRequest(req *sip.Request, done func(*sip.Response, error)) error {
	s.mu.Lock()
	s.sent++
	s.mu.Unlock()
	in := wire(s.t, req)
	flow := event.Flow{Proto: "UDP", Local: netip.MustParseAddrPort("198.51.100.7:5060"), Remote: netip.MustParseAddrPort("192.0.2.1:5060")}
	s.n.HandleSUBSCRIBE(context.Background(), &relayTx{t: s.t, done: done}, in, flow, "friends@example.com", "bob@example.net")
	return nil
}

// toClient is the Notifier's Sender: each NOTIFY goes to the Client.
type toClient struct {
	t testing.TB
	c *Client
}

func (s *toClient) SendRequest(req *sip.Request, _ event.Flow, done func(*sip.Response, error)) error {
	in := wire(s.t, req)
	tx := &fakeTx{}
	if !s.c.HandleNOTIFY(tx, in) {
		done(nil, errors.New("no one took the NOTIFY"))
		return nil
	}
	done(reparse(s.t, tx.final(s.t)), nil)
	return nil
}

// The Client against the server's own notifier: subscribe, state changes,
// refresh, unsubscribe.
func TestAgainstNotifier(t *testing.T) {
	clock := transaction.NewFakeClock(t0)
	pkg := &presencePkg{}
	toC := &toClient{t: t}
	n, err := event.New(event.Config{}, event.Env{Sender: toC, Clock: clock,
		Contact: func(string, netip.AddrPort) sip.Address { return mustAddr(t, "<sip:pres@198.51.100.7:5060>") }}, pkg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	toN := &toNotifier{t: t, n: n}
	var (
		mu     sync.Mutex
		states []State
	)
	c, err := New(Config{}, Env{Sender: toN, Clock: clock, Contact: testContact, OnState: func(_ string, st State) {
		mu.Lock()
		states = append(states, st)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	toC.c = c
	last := func() State {
		mu.Lock()
		defer mu.Unlock()
		if len(states) == 0 {
			t.Fatal("no state")
		}
		return states[len(states)-1]
	}

	if err := c.Subscribe("bob", mustAddr(t, "<sip:friends@example.com>"), mustURI(t, "sip:bob@example.net"), "presence", []string{"application/pidf+xml"}); err != nil {
		t.Fatal(err)
	}
	if n.Count() != 1 {
		t.Fatalf("notifier holds %d subscriptions", n.Count())
	}
	if st := last(); st.Status != "active" || string(st.Body) != "bob@example.net v0" || st.ContentType != "application/pidf+xml" {
		t.Fatalf("first state %+v", st)
	}

	pkg.mu.Lock()
	pkg.v = 1
	pkg.mu.Unlock()
	n.Changed("presence", "bob@example.net")
	clock.Advance(5 * time.Second) // the notifier's rate limit
	if st := last(); string(st.Body) != "bob@example.net v1" {
		t.Fatalf("after change %+v", st)
	}

	// The refresh at 2/3 of an hour is accepted and answered with the
	// state again.
	clock.Advance(2400 * time.Second)
	toN.mu.Lock()
	sent := toN.sent
	toN.mu.Unlock()
	if sent != 2 || n.Count() != 1 {
		t.Fatalf("%d SUBSCRIBEs, %d subscriptions at the notifier", sent, n.Count())
	}
	mu.Lock()
	got := len(states)
	mu.Unlock()
	if got != 3 || last().Status != "active" {
		t.Fatalf("%d states after the refresh, last %+v", got, last())
	}
	// Still alive past the first hour.
	clock.Advance(1500 * time.Second)
	if n.Count() != 1 || last().Status != "active" {
		t.Fatalf("lapsed: %d at the notifier, last %+v", n.Count(), last())
	}

	c.Unsubscribe("bob")
	if n.Count() != 0 {
		t.Errorf("notifier still holds %d after Unsubscribe", n.Count())
	}
	if c.Len() != 0 {
		t.Errorf("Len %d", c.Len())
	}
}
