package event

import (
	"context"
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

// sent is one NOTIFY handed to the fake Sender.
type sent struct {
	req  *sip.Request
	flow Flow
	done func(*sip.Response, error)
}

// fakeSender records NOTIFYs. With auto set it answers each at once with
// that code; otherwise the test answers them.
type fakeSender struct {
	mu   sync.Mutex
	reqs []sent
	auto int
	err  error // returned by SendRequest when set
}

func (f *fakeSender) SendRequest(req *sip.Request, flow Flow, done func(*sip.Response, error)) error {
	f.mu.Lock()
	if f.err != nil {
		f.mu.Unlock()
		return f.err
	}
	f.reqs = append(f.reqs, sent{req, flow, done})
	auto := f.auto
	f.mu.Unlock()
	if auto != 0 {
		done(sip.NewResponse(req, auto, ""), nil)
	}
	return nil
}

func (f *fakeSender) all() []sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sent(nil), f.reqs...)
}

func (f *fakeSender) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

func (f *fakeSender) last(t *testing.T) sent {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		t.Fatal("no NOTIFY sent")
	}
	return f.reqs[len(f.reqs)-1]
}

// answer answers NOTIFY i with code.
func (f *fakeSender) answer(i, code int) {
	s := f.all()[i]
	s.done(sip.NewResponse(s.req, code, ""), nil)
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
func (t *fakeTx) Source() netip.AddrPort { return netip.MustParseAddrPort("192.0.2.10:5060") }
func (t *fakeTx) Transport() string      { return "UDP" }

func (t *fakeTx) final(tb testing.TB) *sip.Response {
	tb.Helper()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.res) != 1 {
		tb.Fatalf("%d responses, want 1", len(t.res))
	}
	return t.res[0]
}

// fakePkg is an event package whose state per resource is a version
// number the test bumps.
type fakePkg struct {
	name   string
	accept []string
	exp    time.Duration

	mu    sync.Mutex
	dec   map[string]Decision // by watcher; default Active
	state map[string]int
	docs  int
	full  []bool
}

func newPkg(name string) *fakePkg {
	return &fakePkg{name: name, accept: []string{"application/" + name + "+xml", "text/plain"}, exp: time.Hour,
		dec: map[string]Decision{}, state: map[string]int{}}
}

func (p *fakePkg) Name() string                  { return p.name }
func (p *fakePkg) Accept() []string              { return p.accept }
func (p *fakePkg) DefaultExpires() time.Duration { return p.exp }
func (p *fakePkg) Authorize(watcher, resource string) Decision {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d, ok := p.dec[watcher]; ok {
		return d
	}
	return Active
}
func (p *fakePkg) Document(s *Subscription, full bool) (string, []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.docs++
	p.full = append(p.full, full)
	return s.Accept()[0], fmt.Appendf(nil, "%s v%d", s.Resource(), p.state[s.Resource()])
}
func (p *fakePkg) set(res string, v int) {
	p.mu.Lock()
	p.state[res] = v
	p.mu.Unlock()
}
func (p *fakePkg) decide(watcher string, d Decision) {
	p.mu.Lock()
	p.dec[watcher] = d
	p.mu.Unlock()
}

// fakeStore is a Store in a map.
type fakeStore struct {
	mu   sync.Mutex
	m    map[string]StoredSubscription
	fail error
	puts int
	dels int
}

func newStore() *fakeStore { return &fakeStore{m: map[string]StoredSubscription{}} }

func (f *fakeStore) PutSubscription(_ context.Context, s StoredSubscription) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.puts++
	f.m[s.ID] = s
	return nil
}
func (f *fakeStore) DeleteSubscription(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dels++
	delete(f.m, id)
	return nil
}
func (f *fakeStore) Subscriptions(_ context.Context, now time.Time) ([]StoredSubscription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []StoredSubscription
	for _, s := range f.m {
		if s.Expires.After(now) {
			out = append(out, s)
		}
	}
	return out, nil
}
func (f *fakeStore) get(id string) (StoredSubscription, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.m[id]
	return s, ok
}
func (f *fakeStore) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}

// rig is a Notifier under test with its fakes.
type rig struct {
	n     *Notifier
	clock *transaction.FakeClock
	snd   *fakeSender
	pkg   *fakePkg
	store *fakeStore
	flow  Flow
}

func testContact(proto string, local netip.AddrPort) sip.Address {
	u, _ := sip.ParseURI("sip:" + local.String() + ";transport=" + strings.ToLower(proto))
	return sip.Address{URI: u}
}

func newRig(t testing.TB, cfg Config, store *fakeStore, pkgs ...Package) *rig {
	t.Helper()
	r := &rig{clock: transaction.NewFakeClock(t0), snd: &fakeSender{}, store: store,
		flow: Flow{Proto: "UDP", Local: netip.MustParseAddrPort("192.0.2.1:5060"), Remote: netip.MustParseAddrPort("192.0.2.10:5060")}}
	if len(pkgs) == 0 {
		r.pkg = newPkg("presence")
		pkgs = []Package{r.pkg}
	} else if p, ok := pkgs[0].(*fakePkg); ok {
		r.pkg = p
	}
	env := Env{Sender: r.snd, Clock: r.clock, Contact: testContact, ServerName: "hlas-test"}
	if store != nil {
		env.Store = store
	}
	n, err := New(cfg, env, pkgs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	r.n = n
	return r
}

// subscribe is a SUBSCRIBE from alice to bob; extra header lines are
// added (e.g. "Expires: 0", "To: <sip:bob@example.com>;tag=x").
func subscribeReq(t testing.TB, callID, fromTag string, cseq int, extra ...string) *sip.Request {
	t.Helper()
	to := "<sip:bob@example.com>"
	hdrs := []string{}
	event := "Event: presence"
	for _, e := range extra {
		switch {
		case strings.HasPrefix(e, "To-tag: "):
			to += ";tag=" + strings.TrimPrefix(e, "To-tag: ")
		case strings.HasPrefix(e, "Event: "):
			event = e
		case e == "No-Event":
			event = ""
		default:
			hdrs = append(hdrs, e)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "SUBSCRIBE sip:bob@example.com SIP/2.0\r\n")
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK%s%d\r\n", fromTag, cseq)
	fmt.Fprintf(&b, "Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: \"Alice\" <sip:alice@example.com>;tag=%s\r\n", fromTag)
	fmt.Fprintf(&b, "To: %s\r\n", to)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", callID)
	fmt.Fprintf(&b, "CSeq: %d SUBSCRIBE\r\n", cseq)
	fmt.Fprintf(&b, "Contact: <sip:alice@192.0.2.10:5060>\r\n")
	if event != "" {
		b.WriteString(event + "\r\n")
	}
	for _, h := range hdrs {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	m, err := sip.ParseString(b.String())
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, b.String())
	}
	return m.(*sip.Request)
}

// do sends req to the Notifier and returns its one response.
func (r *rig) do(t testing.TB, req *sip.Request, watcher string) *sip.Response {
	t.Helper()
	tx := &fakeTx{}
	r.n.HandleSUBSCRIBE(context.Background(), tx, req, r.flow, watcher, "bob@example.com")
	return tx.final(t)
}

// subscribe creates a subscription and returns the 200's To tag.
func (r *rig) subscribe(t testing.TB, callID string, extra ...string) string {
	t.Helper()
	res := r.do(t, subscribeReq(t, callID, "ft-"+callID, 1, extra...), "alice@example.com")
	if res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d %s", res.StatusCode, res.Reason)
	}
	return res.To.Tag()
}

func subState(req *sip.Request) string { return req.Get("Subscription-State") }

var errTransport = errors.New("transport: connection refused")

func parseReq(raw string) (*sip.Request, error) {
	m, err := sip.ParseString(raw)
	if err != nil {
		return nil, err
	}
	req, ok := m.(*sip.Request)
	if !ok {
		return nil, errors.New("not a request")
	}
	return req, nil
}
