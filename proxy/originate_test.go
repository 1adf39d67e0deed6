package proxy

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transport"
)

// heldWrites is a Batch that keeps what it is given until flush.
type heldWrites struct {
	n    *fakeNet
	held [][]byte
	dst  []netip.AddrPort
}

func (h *heldWrites) WriteTo(proto string, local, remote netip.AddrPort, data []byte) error {
	if proto != transport.UDP {
		return fmt.Errorf("batched a %s write", proto)
	}
	h.held = append(h.held, append([]byte(nil), data...))
	h.dst = append(h.dst, remote)
	return nil
}

func (h *heldWrites) flush() {
	for i, b := range h.held {
		_ = h.n.WriteTo(transport.UDP, proxyUDP, h.dst[i], b)
	}
	h.held, h.dst = nil, nil
}

func ownNotify(t *testing.T, seq uint32) *sip.Request {
	t.Helper()
	m, err := sip.ParseString("NOTIFY sip:w@198.51.100.9:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKold\r\nMax-Forwards: 70\r\n" +
		"From: <sip:bob@example.test>;tag=n1\r\nTo: <sip:w@example.test>;tag=w1\r\nCall-ID: sub-1\r\n" +
		fmt.Sprintf("CSeq: %d NOTIFY\r\n", seq) + "Event: presence\r\nSubscription-State: active;expires=60\r\nContent-Length: 0\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Request)
}

// TestSendRequestWithBatch: a request of the proxy's own over UDP with a
// Batch leaves through the batch the first time only (the caller flushes
// it); its retransmissions (Timer E) go straight to the network; Inline
// marks its transaction for the reader; the outcome reaches done once.
func TestSendRequestWithBatch(t *testing.T) {
	e := newTestEnv(t, Config{}, nil)
	watcher := netip.MustParseAddrPort("198.51.100.9:5080")
	b := &heldWrites{n: e.net}
	var outcomes []int
	req := ownNotify(t, 1)
	err := e.p.SendRequestWith(req, Flow{Proto: transport.UDP, Local: proxyUDP, Remote: watcher},
		func(res *sip.Response, err error) {
			if err != nil {
				outcomes = append(outcomes, -1)
				return
			}
			outcomes = append(outcomes, res.StatusCode)
		}, SendOptions{Inline: true, Batch: b})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.held) != 1 || len(e.net.take()) != 0 {
		t.Fatalf("first send: %d held in the batch, want 1 and nothing on the wire", len(b.held))
	}
	b.flush()
	first := e.net.requests(t)
	if len(first) != 1 || first[0].Method != sip.NOTIFY || first[0].Via[0].Branch() == "" {
		t.Fatalf("after flush the wire has %v", first)
	}
	e.clock.Advance(600 * time.Millisecond) // Timer E: T1
	if len(b.held) != 0 {
		t.Fatal("a retransmission went into the batch after its flush")
	}
	if re := e.net.requests(t); len(re) != 1 || re[0].Via[0].Branch() != first[0].Via[0].Branch() {
		t.Fatalf("retransmission: %v", re)
	}
	res := sip.NewResponse(first[0], 200, "")
	tx := e.l.Match(res)
	if tx == nil || !tx.Inline() {
		t.Fatalf("the NOTIFY's transaction: %v, want one marked inline", tx)
	}
	e.l.HandleResponse(sip.NewResponse(first[0], 100, ""))
	tx.Receive(res)
	if fmt.Sprint(outcomes) != "[200]" {
		t.Fatalf("done saw %v, want [200] (provisional responses are not its business)", outcomes)
	}
}

// TestSendRequestWithBatchTCP: a Batch does not take stream sends.
func TestSendRequestWithBatchTCP(t *testing.T) {
	e := newTestEnv(t, Config{}, nil)
	b := &heldWrites{n: e.net}
	req := ownNotify(t, 2)
	req.URI.Params = req.URI.Params.Set("transport", "tcp")
	if err := e.p.SendRequestWith(req, Flow{Proto: transport.TCP, Local: proxyUDP, Remote: netip.MustParseAddrPort("198.51.100.9:5080")},
		nil, SendOptions{Batch: b}); err != nil {
		t.Fatal(err)
	}
	if len(b.held) != 0 {
		t.Fatal("a TCP request went into the batch")
	}
	if req.Via[0].Transport != transport.TCP {
		t.Fatalf("sent over %s, want TCP", req.Via[0].Transport)
	}
}
