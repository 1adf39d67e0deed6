package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/handler"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
	"github.com/hlas-voip/hlas/sip/transport"
)

// sent is one message the proxy put on the (fake) wire.
type sent struct {
	proto         string
	local, remote netip.AddrPort
	msg           sip.Message
}

// fakeNet records what the proxy sends; writes to an address in fail
// return an error.
type fakeNet struct {
	mu   sync.Mutex
	sent []sent
	fail map[netip.AddrPort]bool
}

func (n *fakeNet) WriteTo(proto string, local, remote netip.AddrPort, data []byte) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fail[remote] {
		return fmt.Errorf("unreachable %s", remote)
	}
	m, err := sip.Parse(append([]byte(nil), data...))
	if err != nil {
		return fmt.Errorf("proxy sent an unparsable message: %v\n%s", err, data)
	}
	n.sent = append(n.sent, sent{proto, local, remote, m})
	return nil
}

func (n *fakeNet) Lookup(string, netip.AddrPort) *transport.Conn { return nil }

// take returns and forgets what was sent.
func (n *fakeNet) take() []sent {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.sent
	n.sent = nil
	return s
}

// requests returns (and forgets) the requests sent, in order, without the
// ACKs the client transactions send for non-2xx responses.
func (n *fakeNet) requests(t testing.TB) []*sip.Request {
	t.Helper()
	var out []*sip.Request
	for _, r := range n.all(t) {
		if r.Method != sip.ACK {
			out = append(out, r)
		}
	}
	return out
}

// all returns (and forgets) every request sent, in order.
func (n *fakeNet) all(t testing.TB) []*sip.Request {
	t.Helper()
	var out []*sip.Request
	for _, s := range n.take() {
		if r, ok := s.msg.(*sip.Request); ok {
			out = append(out, r)
		} else {
			t.Errorf("unexpected response on the wire: %d", s.msg.(*sip.Response).StatusCode)
		}
	}
	return out
}

// fakeTx is a server transaction that records the responses.
type fakeTx struct {
	mu        sync.Mutex
	res       []*sip.Response
	stateless []bool
	flow      Flow
	onCancel  func()
}

func (f *fakeTx) Respond(r *sip.Response) error { return f.record(r, false) }
func (f *fakeTx) RespondStateless(r *sip.Response) error {
	return f.record(r, true)
}
func (f *fakeTx) record(r *sip.Response, stateless bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.res = append(f.res, r)
	f.stateless = append(f.stateless, stateless)
	return nil
}
func (f *fakeTx) Source() netip.AddrPort { return f.flow.Remote }
func (f *fakeTx) Transport() string      { return f.flow.Proto }
func (f *fakeTx) Flow() Flow             { return f.flow }
func (f *fakeTx) OnCancel(fn func()) {
	f.mu.Lock()
	f.onCancel = fn
	f.mu.Unlock()
}
func (f *fakeTx) cancel() {
	f.mu.Lock()
	fn := f.onCancel
	f.mu.Unlock()
	if fn != nil {
		fn()
	}
}

// codes lists the status codes answered, "100 180 200".
func (f *fakeTx) codes() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s []string
	for _, r := range f.res {
		s = append(s, fmt.Sprint(r.StatusCode))
	}
	return strings.Join(s, " ")
}

func (f *fakeTx) last() *sip.Response {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.res) == 0 {
		return nil
	}
	return f.res[len(f.res)-1]
}

var (
	proxyUDP = netip.MustParseAddrPort("192.0.2.1:5060")
	callerIn = netip.MustParseAddrPort("198.51.100.7:5070")
)

// testEnv is a proxy wired to a fake network and a fake clock.
type testEnv struct {
	t     testing.TB
	p     *Proxy
	l     *transaction.Layer
	clock *transaction.FakeClock
	net   *fakeNet
	reg   *prometheus.Registry
	h     handler.Handler // chain, for serve
}

func newTestEnv(t testing.TB, cfg Config, mod func(*Env)) *testEnv {
	t.Helper()
	clock := transaction.NewFakeClock(time.Unix(1_700_000_000, 0))
	e := &testEnv{t: t, clock: clock, net: &fakeNet{}, reg: prometheus.NewRegistry()}
	e.l = transaction.New(transaction.Config{Clock: clock})
	env := Env{
		Transactions: e.l,
		Network:      e.net,
		Domains:      []string{"example.test"},
		ServerName:   "hlas-test",
		Registerer:   e.reg,
		IsSelf: func(u *sip.URI) bool {
			h := strings.ToLower(u.Hostname())
			return (h == "192.0.2.1" || h == "proxy.test") && (u.Port == 0 || u.Port == 5060)
		},
	}
	if mod != nil {
		mod(&env)
	}
	p, err := New(cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	p.SetListeners([]Listener{{transport.UDP, proxyUDP}, {transport.TCP, proxyUDP}})
	e.p = p
	e.h = e.chain()
	return e
}

// chain is the routing part of the server's chain: Preprocess, Route,
// and a 404 at the end.
func (e *testEnv) chain() handler.Handler {
	notFound := handler.HandlerFunc(func(ctx context.Context, tx handler.ServerTx, req *sip.Request) {
		_ = tx.RespondStateless(sip.NewResponse(req, 404, ""))
	})
	return e.p.Preprocess(e.p.Route(notFound))
}

// serve runs req (as received from the caller over UDP) through the chain,
// built once as the server builds its own.
func (e *testEnv) serve(req *sip.Request) *fakeTx {
	tx := &fakeTx{flow: Flow{Proto: transport.UDP, Local: proxyUDP, Remote: callerIn}}
	req.StampVia(callerIn)
	e.h.ServeSIP(context.Background(), tx, req)
	return tx
}

// answer sends a response to req as its next hop would: through the
// transaction layer, or as a stray to the proxy.
func (e *testEnv) answer(req *sip.Request, code int, tag string, mod ...func(*sip.Response)) {
	e.t.Helper()
	res := sip.NewResponse(req, code, "")
	if code > 100 && tag != "" {
		res.To.Params = res.To.Params.Set("tag", tag)
	}
	if code >= 200 && code < 300 {
		res.Contact = []sip.Address{{URI: req.URI}}
	}
	for _, m := range mod {
		m(res)
	}
	// Through the wire: what the proxy gets is what it parses.
	m, err := sip.ParseString(res.String())
	if err != nil {
		e.t.Fatal(err)
	}
	res = m.(*sip.Response)
	if !e.l.HandleResponse(res) && !e.p.HandleResponse(res, Flow{}) {
		e.t.Errorf("response %d to %s matched nothing", code, req.Method)
	}
}

func parseRequest(t testing.TB, s string) *sip.Request {
	t.Helper()
	s = strings.ReplaceAll(strings.TrimLeft(s, "\n"), "\n", "\r\n")
	m, err := sip.ParseString(s)
	if err != nil {
		t.Fatalf("%v\n%s", err, s)
	}
	return m.(*sip.Request)
}

// request builds a request from the caller (alice) to ruri.
func request(t testing.TB, method, ruri string, extra ...string) *sip.Request {
	t.Helper()
	h := "Via: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bKcaller1;rport\n" +
		"Max-Forwards: 70\n" +
		"From: <sip:alice@example.test>;tag=a1\n" +
		"To: <" + ruri + ">\n" +
		"Call-ID: call-1@198.51.100.7\n" +
		"CSeq: 1 " + method + "\n" +
		"Contact: <sip:alice@198.51.100.7:5070>\n"
	for _, x := range extra {
		h += x + "\n"
	}
	return parseRequest(t, method+" "+ruri+" SIP/2.0\n"+h+"Content-Length: 0\n\n")
}

func uris(rs []*sip.Request) string {
	var s []string
	for _, r := range rs {
		s = append(s, r.Method+" "+r.URI.String())
	}
	return strings.Join(s, ", ")
}

func boolp(b bool) *bool { return &b }
