package proxy

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
	"github.com/hlas-voip/hlas/sip/transport"
)

// discardSender is the sender of the server transactions: what goes back
// to the caller is encoded (as the server's would be) and dropped.
type discardSender struct{ buf []byte }

func (s *discardSender) Send(m sip.Message) error { s.buf = m.AppendTo(s.buf[:0]); return nil }
func (s *discardSender) SendWire([]byte) error    { return nil }
func (s *discardSender) Reliable() bool           { return false }

// answerCalls runs calls from, from+1, ... from+n-1 through the proxy the
// way the server does (server transaction, chain, client transaction; the
// callee's 200 back; the caller's ACK along the recorded route, forwarded
// statelessly), leaving the transactions to their timers.
func answerCalls(t testing.TB, e *testEnv, snd *discardSender, from, n int) {
	t.Helper()
	in := Flow{Proto: transport.UDP, Local: proxyUDP, Remote: callerIn}
	for i := from; i < from+n; i++ {
		id := "mem-" + strconv.Itoa(i)
		req := request(t, sip.INVITE, "sip:carol@example.test")
		req.CallID = id
		req.Via[0].Params = sip.Params(";branch=z9hG4bKmem" + strconv.Itoa(i) + ";rport")
		req.StampVia(callerIn)
		tx, disp := e.l.HandleRequest(req, snd)
		if disp != transaction.NewRequest {
			t.Fatalf("INVITE %d: disposition %d", i, disp)
		}
		e.h.ServeSIP(context.Background(), layerTx{tx, in}, req)
		out := e.net.requests(t)
		if len(out) != 1 {
			t.Fatalf("call %d: %d requests forwarded", i, len(out))
		}
		e.answer(out[0], 200, "callee")
		ack := parseRequest(t, "ACK sip:carol@198.51.100.30:5062 SIP/2.0\n"+
			"Via: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bKmemack"+strconv.Itoa(i)+";rport\n"+
			"Route: "+out[0].RecordRoute[0].String()+"\n"+
			"Max-Forwards: 70\n"+
			"From: <sip:alice@example.test>;tag=a1\n"+
			"To: <sip:carol@example.test>;tag=callee\n"+
			"Call-ID: "+id+"\n"+
			"CSeq: 1 ACK\n"+
			"Content-Length: 0\n\n")
		ack.StampVia(callerIn)
		if _, disp := e.l.HandleRequest(ack, snd); disp != transaction.PassACK {
			t.Fatalf("ACK %d: disposition %d", i, disp)
		}
		e.p.HandleACK(context.Background(), ack, in)
		if acks := e.net.all(t); len(acks) != 1 || acks[0].Method != sip.ACK {
			t.Fatalf("call %d: ACK not forwarded: %v", i, uris(acks))
		}
	}
}

func heapAlloc() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// A stateful proxy keeps no dialog state (RFC 3261 §16): once the
// transactions of an answered call have ended (64*T1 after the 2xx, RFC
// 6026 Timers L and M), the call holds nothing in the proxy or the
// transaction layer, whether or not its BYE ever comes.
func TestAnsweredCallHoldsNothing(t *testing.T) {
	const n = 2000
	e := newTestEnv(t, Config{Locations: map[string][]string{"carol@example.test": {"sip:carol@198.51.100.30:5062"}}}, nil)
	snd := &discardSender{}
	end := 64*e.l.Config().T1 + time.Second
	// A first round grows the tables (the transaction maps, the clock's
	// heap) to their high-water mark; the second one is measured.
	start := heapAlloc()
	answerCalls(t, e, snd, 0, n)
	e.clock.Advance(end)
	before := heapAlloc()
	answerCalls(t, e, snd, n, n)
	live := heapAlloc()
	e.clock.Advance(end)
	after := heapAlloc()
	if s, c := e.l.Len(); s != 0 || c != 0 {
		t.Errorf("transactions left: %d server, %d client", s, c)
	}
	if p := e.p.Pending(); p != 0 {
		t.Errorf("%d response contexts left", p)
	}
	held := (int64(after) - int64(before)) / n
	t.Logf("heap per answered call: %d B while its transactions live, %d B after 64*T1 (%d B in the first round, tables growing)",
		(int64(live)-int64(before))/n, held, (int64(before)-int64(start))/n)
	if held > 256 {
		t.Errorf("an answered call holds %d B after its transactions ended", held)
	}
}
