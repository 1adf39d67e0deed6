package proxy

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
	"github.com/hlas-voip/hlas/sip/transport"
)

// A callee that rings, answers the proxy's CANCEL with 200 and never
// sends a final response: the caller gets 487, and 64*T1 after the CANCEL
// (RFC 3261 §9.1) neither the branch's client transaction nor any state
// of the proxy is left.
func TestCancelledBranchWithoutFinalResponseEnds(t *testing.T) {
	e := newTestEnv(t, Config{Locations: bobLocations}, nil)
	tx := e.serve(request(t, sip.INVITE, "sip:carol@example.test"))
	out := e.net.requests(t)
	if len(out) != 1 {
		t.Fatalf("sent %s", uris(out))
	}
	e.answer(out[0], 180, "c1")
	tx.cancel()
	c := e.net.requests(t)
	if len(c) != 1 || c[0].Method != sip.CANCEL {
		t.Fatalf("sent %s, want CANCEL", uris(c))
	}
	e.answer(c[0], 200, "c1")
	e.clock.Advance(64 * e.l.Config().T1)
	if got := tx.codes(); got != "100 180 487" {
		t.Errorf("caller got %q", got)
	}
	if n := e.p.Pending(); n != 0 {
		t.Errorf("Pending() = %d", n)
	}
	if s := e.l.Stats(); s.ClientActive != 0 {
		t.Errorf("ClientActive = %d 64*T1 after the CANCEL", s.ClientActive)
	}
	e.p.mu.Lock()
	orphans := len(e.p.orphans)
	e.p.mu.Unlock()
	if orphans != 0 {
		t.Errorf("%d orphaned branches left", orphans)
	}
}

// callerSide is the caller's end of the server transactions in
// TestResentRequestAfterItsTransaction: it records their responses.
type callerSide struct {
	mu  sync.Mutex
	res []int
}

func (c *callerSide) Send(m sip.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := m.(*sip.Response); ok {
		c.res = append(c.res, r.StatusCode)
	}
	return nil
}

func (c *callerSide) Reliable() bool { return false }

func (c *callerSide) codes() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.res...)
}

// layerTx is a server transaction of the real transaction layer as the
// proxy sees it (the server's adapter, in miniature).
type layerTx struct {
	*transaction.ServerTx
	flow Flow
}

func (t layerTx) Source() netip.AddrPort { return t.flow.Remote }
func (t layerTx) Transport() string      { return t.flow.Proto }
func (t layerTx) Flow() Flow             { return t.flow }

// An INVITE resent as the same bytes after its transaction ended (486,
// ACK, Timer I) is a new request: the transaction layer makes a new server
// transaction and the proxy forwards it again, on a branch of its own,
// although the first branch's client transaction still waits out Timer D
// (RFC 3261 §17.1.1.2) and the request hashes the same (§16.6 step 8).
func TestResentRequestAfterItsTransaction(t *testing.T) {
	e := newTestEnv(t, Config{Locations: bobLocations}, nil)
	caller := &callerSide{}
	flow := Flow{Proto: transport.UDP, Local: proxyUDP, Remote: callerIn}
	wire := request(t, sip.INVITE, "sip:carol@example.test").String()
	parse := func() *sip.Request {
		t.Helper()
		m, err := sip.ParseString(wire)
		if err != nil {
			t.Fatal(err)
		}
		req := m.(*sip.Request)
		req.StampVia(callerIn)
		return req
	}
	// receive runs wire through the transaction layer and, when it is new,
	// the chain, as the server does.
	receive := func() transaction.Disposition {
		t.Helper()
		req := parse()
		stx, d := e.l.HandleRequest(req, caller)
		if d == transaction.NewRequest {
			e.chain().ServeSIP(context.Background(), layerTx{stx, flow}, req)
		}
		return d
	}

	if d := receive(); d != transaction.NewRequest {
		t.Fatalf("first INVITE: %v", d)
	}
	first := e.net.requests(t)
	if len(first) != 1 {
		t.Fatalf("sent %s", uris(first))
	}
	if d := receive(); d != transaction.Absorbed || len(e.net.requests(t)) != 0 {
		t.Fatalf("retransmission while the server transaction lives: %v, forwarded", d)
	}
	e.answer(first[0], 486, "c1")
	inv := parse()
	busy := sip.NewResponse(inv, 486, "")
	busy.To.Params = busy.To.Params.Set("tag", "c1")
	if d := receive(); d != transaction.Absorbed {
		t.Fatalf("retransmission in Completed: %v", d)
	}
	if _, d := e.l.HandleRequest(transaction.NewACK(inv, busy), caller); d != transaction.Absorbed {
		t.Fatalf("ACK: %v", d)
	}
	e.clock.Advance(5 * time.Second) // Timer I
	if s := e.l.Stats(); s.ServerActive != 0 || s.ClientActive != 1 {
		t.Fatalf("%d server, %d client transactions; want the INVITE's client one in Completed", s.ServerActive, s.ClientActive)
	}

	if d := receive(); d != transaction.NewRequest {
		t.Fatalf("resent INVITE: %v", d)
	}
	again := e.net.requests(t)
	if len(again) != 1 || again[0].Method != sip.INVITE {
		t.Fatalf("resent INVITE: sent %s, caller got %v", uris(again), caller.codes())
	}
	b1, b2 := first[0].Via[0].Branch(), again[0].Via[0].Branch()
	h1, _ := e.p.ownVia(&first[0].Via[0])
	h2, _ := e.p.ownVia(&again[0].Via[0])
	if b1 == b2 || h1 != h2 {
		t.Errorf("branches %s and %s: want the same request hash (loop detection), distinct branches", b1, b2)
	}
	for _, code := range caller.codes() {
		if code >= 500 {
			t.Errorf("caller got %v", caller.codes())
		}
	}
	e.answer(again[0], 200, "c2")
	if got := caller.codes(); len(got) == 0 || got[len(got)-1] != 200 {
		t.Errorf("caller got %v, want the 200 of the resent INVITE last", got)
	}
}
