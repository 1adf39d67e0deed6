package subscriber

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// sent is one request handed to the fake Sender.
type sent struct {
	req  *sip.Request
	done func(*sip.Response, error)
}

// fakeSender records requests; the test answers them. With err set,
// SendRequest fails at once.
type fakeSender struct {
	mu   sync.Mutex
	reqs []sent
	err  error
}

func (f *fakeSender) SendRequest(req *sip.Request, done func(*sip.Response, error)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.reqs = append(f.reqs, sent{req, done})
	return nil
}

func (f *fakeSender) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

func (f *fakeSender) get(t testing.TB, i int) sent {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if i >= len(f.reqs) {
		t.Fatalf("request %d not sent (%d sent)", i, len(f.reqs))
	}
	return f.reqs[i]
}

func (f *fakeSender) last(t testing.TB) sent {
	t.Helper()
	n := f.count()
	if n == 0 {
		t.Fatal("nothing sent")
	}
	return f.get(t, n-1)
}

// wire writes req and parses it back, as the peer would read it.
func wire(t testing.TB, req *sip.Request) *sip.Request {
	t.Helper()
	c := *req
	if len(c.Via) == 0 {
		c.Via = []sip.Via{{Proto: "SIP/2.0", Transport: "UDP", Host: "192.0.2.1", Port: 5060, Params: ";branch=z9hG4bKtest"}}
	}
	m, err := sip.ParseString(c.String())
	if err != nil {
		t.Fatalf("request does not parse: %v\n%s", err, c.String())
	}
	return m.(*sip.Request)
}

// answer answers request i with code; lines are extra header lines of the
// response ("Expires: 600", "Record-Route: <sip:p1;lr>"); a 2xx gets the
// To tag "nt" and the notifier's Contact unless given.
func (f *fakeSender) answer(t testing.TB, i, code int, lines ...string) {
	t.Helper()
	s := f.get(t, i)
	req := wire(t, s.req)
	var b strings.Builder
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, sip.StatusText(code))
	fmt.Fprintf(&b, "Via: %s\r\n", req.Via[0].String())
	fmt.Fprintf(&b, "From: %s\r\n", req.From.String())
	to := req.To
	if code >= 200 && code < 300 && to.Tag() == "" {
		to.Params = to.Params.Set("tag", "nt")
	}
	fmt.Fprintf(&b, "To: %s\r\n", to.String())
	fmt.Fprintf(&b, "Call-ID: %s\r\n", req.CallID)
	fmt.Fprintf(&b, "CSeq: %d %s\r\n", req.CSeq.Seq, req.CSeq.Method)
	hasContact := false
	for _, l := range lines {
		if strings.HasPrefix(l, "Contact:") {
			hasContact = true
		}
		b.WriteString(l + "\r\n")
	}
	if code >= 200 && code < 300 && !hasContact {
		b.WriteString("Contact: <sip:pres@198.51.100.7:5060>\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	m, err := sip.ParseString(b.String())
	if err != nil {
		t.Fatalf("response does not parse: %v\n%s", err, b.String())
	}
	s.done(m.(*sip.Response), nil)
}

// fail reports err as the outcome of request i.
func (f *fakeSender) fail(t testing.TB, i int, err error) {
	t.Helper()
	f.get(t, i).done(nil, err)
}

// fakeTx records the responses.
type fakeTx struct {
	mu   sync.Mutex
	res  []*sip.Response
	stat []bool
}

func (t *fakeTx) Respond(r *sip.Response) error {
	t.mu.Lock()
	t.res, t.stat = append(t.res, r), append(t.stat, false)
	t.mu.Unlock()
	return nil
}
func (t *fakeTx) RespondStateless(r *sip.Response) error {
	t.mu.Lock()
	t.res, t.stat = append(t.res, r), append(t.stat, true)
	t.mu.Unlock()
	return nil
}
func (t *fakeTx) Source() netip.AddrPort { return netip.MustParseAddrPort("198.51.100.7:5060") }
func (t *fakeTx) Transport() string      { return "UDP" }

func (t *fakeTx) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.res)
}

func (t *fakeTx) final(tb testing.TB) *sip.Response {
	tb.Helper()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.res) != 1 {
		tb.Fatalf("%d responses, want 1", len(t.res))
	}
	return t.res[0]
}

// keyState is one OnState call.
type keyState struct {
	key string
	st  State
}

// rig is a Client under test with its fakes.
type rig struct {
	c     *Client
	clock *transaction.FakeClock
	snd   *fakeSender

	mu     sync.Mutex
	states []keyState
}

func testContact() sip.Address {
	u, _ := sip.ParseURI("sip:rls@192.0.2.1:5060")
	return sip.Address{URI: u}
}

var testCfg = Config{Expires: time.Hour, RetryMin: 30 * time.Second, RetryMax: 30 * time.Minute}

func newRig(t testing.TB, cfg Config) *rig {
	t.Helper()
	r := &rig{clock: transaction.NewFakeClock(t0), snd: &fakeSender{}}
	c, err := New(cfg, Env{Sender: r.snd, Clock: r.clock, Contact: testContact, UserAgent: "hlas-test",
		OnState: func(key string, st State) {
			r.mu.Lock()
			r.states = append(r.states, keyState{key, st})
			r.mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r.c = c
	return r
}

func (r *rig) got() []keyState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]keyState(nil), r.states...)
}

func (r *rig) lastState(t testing.TB) State {
	t.Helper()
	g := r.got()
	if len(g) == 0 {
		t.Fatal("no state reported")
	}
	return g[len(g)-1].st
}

func mustAddr(t testing.TB, s string) sip.Address {
	t.Helper()
	a, err := sip.ParseAddress(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustURI(t testing.TB, s string) sip.URI {
	t.Helper()
	u, err := sip.ParseURI(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// subscribe starts the subscription "k" from the list to bob and returns
// the index of its SUBSCRIBE.
func (r *rig) subscribe(t testing.TB, key string) int {
	t.Helper()
	err := r.c.Subscribe(key, mustAddr(t, `"Friends" <sip:friends@example.com>`), mustURI(t, "sip:bob@example.net"),
		"presence", []string{"application/pidf+xml", "multipart/related"})
	if err != nil {
		t.Fatal(err)
	}
	return r.snd.count() - 1
}

// notifyOpts shapes a NOTIFY.
type notifyOpts struct {
	fromTag string // default "nt"
	cseq    int    // default 1
	state   string // Subscription-State; "-" leaves it out
	event   string // default "presence"
	body    string
	lines   []string
}

// notify builds the notifier's NOTIFY in the dialog of SUBSCRIBE sub, as
// parsed off the wire.
func notify(t testing.TB, sub *sip.Request, o notifyOpts) *sip.Request {
	t.Helper()
	if o.fromTag == "" {
		o.fromTag = "nt"
	}
	if o.cseq == 0 {
		o.cseq = 1
	}
	if o.event == "" {
		o.event = "presence"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "NOTIFY sip:rls@192.0.2.1:5060 SIP/2.0\r\n")
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKn%d%s\r\n", o.cseq, o.fromTag)
	fmt.Fprintf(&b, "Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <%s>;tag=%s\r\n", sub.To.URI.String(), o.fromTag)
	fmt.Fprintf(&b, "To: %s\r\n", sub.From.String())
	fmt.Fprintf(&b, "Call-ID: %s\r\n", sub.CallID)
	fmt.Fprintf(&b, "CSeq: %d NOTIFY\r\n", o.cseq)
	fmt.Fprintf(&b, "Contact: <sip:pres@198.51.100.7:5060>\r\n")
	fmt.Fprintf(&b, "Event: %s\r\n", o.event)
	if o.state != "-" {
		fmt.Fprintf(&b, "Subscription-State: %s\r\n", o.state)
	}
	for _, l := range o.lines {
		b.WriteString(l + "\r\n")
	}
	if o.body != "" {
		b.WriteString("Content-Type: application/pidf+xml\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(o.body), o.body)
	m, err := sip.ParseString(b.String())
	if err != nil {
		t.Fatalf("NOTIFY does not parse: %v\n%s", err, b.String())
	}
	return m.(*sip.Request)
}

// deliver hands a NOTIFY to the Client and returns whether it was taken
// and the response (nil when none).
func (r *rig) deliver(t testing.TB, req *sip.Request) (bool, *sip.Response) {
	t.Helper()
	tx := &fakeTx{}
	ok := r.c.HandleNOTIFY(tx, req)
	if !ok {
		if tx.count() != 0 {
			t.Fatal("a NOTIFY not taken was answered")
		}
		return false, nil
	}
	return true, tx.final(t)
}

// establish subscribes key, answers 200 with lines, sends the first
// NOTIFY active and returns the SUBSCRIBE.
func (r *rig) establish(t testing.TB, key string, lines ...string) *sip.Request {
	t.Helper()
	i := r.subscribe(t, key)
	if len(lines) == 0 {
		lines = []string{"Expires: 3600"}
	}
	r.snd.answer(t, i, 200, lines...)
	sub := wire(t, r.snd.get(t, i).req)
	if ok, res := r.deliver(t, notify(t, sub, notifyOpts{state: "active;expires=3600", body: "<presence/>"})); !ok || res.StatusCode != 200 {
		t.Fatalf("first NOTIFY: taken %v, %v", ok, res)
	}
	return sub
}

var errRefused = errors.New("connection refused")
