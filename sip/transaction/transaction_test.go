package transaction

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip"
)

// recorder is a Sender that records what it sends, with the fake time.
type recorder struct {
	mu       sync.Mutex
	clock    *FakeClock
	reliable bool
	fail     bool
	sent     []sip.Message
	at       []time.Duration
	start    time.Time
}

func (r *recorder) Send(m sip.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("network is down")
	}
	r.sent = append(r.sent, m)
	r.at = append(r.at, r.clock.Now().Sub(r.start))
	return nil
}

func (r *recorder) Reliable() bool { return r.reliable }

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sent)
}

func (r *recorder) last() sip.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sent) == 0 {
		return nil
	}
	return r.sent[len(r.sent)-1]
}

func (r *recorder) times() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.at...)
}

func newTestLayer(reliable bool) (*Layer, *FakeClock, *recorder) {
	clock := NewFakeClock(time.Unix(1_000_000, 0))
	l := New(Config{Clock: clock})
	return l, clock, &recorder{clock: clock, reliable: reliable, start: clock.Now()}
}

func mustRequest(t testing.TB, method, branch string) *sip.Request {
	t.Helper()
	text := method + " sip:bob@example.test SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=" + branch + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=f1\r\nTo: <sip:bob@example.test>\r\n" +
		"Call-ID: call-" + branch + "\r\nCSeq: 7 " + method + "\r\nContent-Length: 0\r\n\r\n"
	m, err := sip.ParseString(text)
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Request)
}

func responseTo(req *sip.Request, code int) *sip.Response {
	res := sip.NewResponse(req, code, "")
	if code > 100 {
		res.To.Params = res.To.Params.Set("tag", "t1")
	}
	return res
}

func codeOf(m sip.Message) int {
	if r, ok := m.(*sip.Response); ok {
		return r.StatusCode
	}
	return 0
}

func durations(ds ...float64) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = time.Duration(d * float64(time.Second))
	}
	return out
}

func equalDurations(a, b []time.Duration) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

// --- INVITE server transaction, RFC 3261 Figure 7 and RFC 6026 Figure 7 ---

func TestInviteServer(t *testing.T) {
	t.Run("RFC3261 17.2.1 100 Trying when the TU is silent for 200 ms", func(t *testing.T) {
		l, clock, rec := newTestLayer(false)
		inv := mustRequest(t, sip.INVITE, "z9hG4bKa1")
		tx, d := l.HandleRequest(inv, rec)
		if d != NewRequest || tx == nil {
			t.Fatalf("disposition %v", d)
		}
		clock.Advance(199 * time.Millisecond)
		if rec.count() != 0 {
			t.Fatal("100 sent before 200 ms")
		}
		clock.Advance(time.Millisecond)
		if codeOf(rec.last()) != 100 {
			t.Fatalf("sent %v, want 100 Trying", rec.last())
		}
		// Retransmitted INVITE in Proceeding: the last provisional again.
		if _, d := l.HandleRequest(inv, rec); d != Absorbed || rec.count() != 2 || codeOf(rec.last()) != 100 {
			t.Fatalf("retransmission: %v, %d sent", d, rec.count())
		}
	})
	t.Run("RFC3261 17.2.1 no 100 when the TU answered in time", func(t *testing.T) {
		l, clock, rec := newTestLayer(false)
		tx, _ := l.HandleRequest(mustRequest(t, sip.INVITE, "z9hG4bKa2"), rec)
		_ = tx.Respond(responseTo(tx.Request(), 180))
		clock.Advance(time.Second)
		if rec.count() != 1 || codeOf(rec.last()) != 180 {
			t.Fatalf("sent %d messages, last %d", rec.count(), codeOf(rec.last()))
		}
	})
	t.Run("RFC3261 17.2.1 Completed: Timer G retransmits up to T2, Timer H gives up", func(t *testing.T) {
		l, clock, rec := newTestLayer(false)
		tx, _ := l.HandleRequest(mustRequest(t, sip.INVITE, "z9hG4bKa3"), rec)
		if err := tx.Respond(responseTo(tx.Request(), 486)); err != nil {
			t.Fatal(err)
		}
		if tx.State() != Completed {
			t.Fatalf("state %v", tx.State())
		}
		clock.Advance(64 * 500 * time.Millisecond)
		want := durations(0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5)
		if got := rec.times(); !equalDurations(got, want) {
			t.Errorf("486 sent at %v, want %v", got, want)
		}
		if tx.State() != Terminated || !errors.Is(tx.Err(), ErrTimeout) {
			t.Fatalf("after Timer H: %v, %v", tx.State(), tx.Err())
		}
		if s := l.Stats(); s.ServerActive != 0 {
			t.Fatalf("%d server transactions left", s.ServerActive)
		}
	})
	t.Run("RFC3261 17.2.1 ACK moves Completed to Confirmed, Timer I ends it", func(t *testing.T) {
		l, clock, rec := newTestLayer(false)
		inv := mustRequest(t, sip.INVITE, "z9hG4bKa4")
		tx, _ := l.HandleRequest(inv, rec)
		res := responseTo(inv, 404)
		_ = tx.Respond(res)
		ack := NewACK(inv, res)
		if _, d := l.HandleRequest(ack, rec); d != Absorbed {
			t.Fatalf("ACK to a non-2xx: %v, want Absorbed", d)
		}
		if tx.State() != Confirmed {
			t.Fatalf("state %v", tx.State())
		}
		sent := rec.count()
		clock.Advance(time.Second)
		if rec.count() != sent {
			t.Error("Timer G still retransmitting in Confirmed")
		}
		if _, d := l.HandleRequest(ack, rec); d != Absorbed {
			t.Error("ACK retransmission in Confirmed not absorbed")
		}
		clock.Advance(4 * time.Second) // T4 = 5 s after the ACK
		if tx.State() != Terminated || tx.Err() != nil {
			t.Fatalf("after Timer I: %v %v", tx.State(), tx.Err())
		}
	})
	t.Run("RFC6026 7.1 2xx moves to Accepted; INVITE retransmissions absorbed; Timer L", func(t *testing.T) {
		l, clock, rec := newTestLayer(false)
		inv := mustRequest(t, sip.INVITE, "z9hG4bKa5")
		tx, _ := l.HandleRequest(inv, rec)
		ok := responseTo(inv, 200)
		_ = tx.Respond(ok)
		if tx.State() != Accepted {
			t.Fatalf("state %v", tx.State())
		}
		if _, d := l.HandleRequest(inv, rec); d != Absorbed || rec.count() != 1 {
			t.Fatal("INVITE retransmission in Accepted was not absorbed silently")
		}
		// The TU retransmits the 2xx; the transaction passes it on.
		if err := tx.Respond(ok); err != nil || rec.count() != 2 {
			t.Fatalf("2xx retransmission: %v", err)
		}
		if err := tx.Respond(responseTo(inv, 500)); err == nil {
			t.Error("non-2xx accepted in Accepted")
		}
		// The ACK to a 2xx has its own branch and goes to the TU.
		ack := mustRequest(t, sip.ACK, "z9hG4bKother")
		if _, d := l.HandleRequest(ack, rec); d != PassACK {
			t.Errorf("ACK to 2xx: %v, want PassACK", d)
		}
		clock.Advance(32 * time.Second)
		if tx.State() != Terminated {
			t.Fatalf("after Timer L: %v", tx.State())
		}
	})
	t.Run("RFC3261 17.2.1 reliable transport: no Timer G, ACK terminates at once", func(t *testing.T) {
		l, clock, rec := newTestLayer(true)
		inv := mustRequest(t, sip.INVITE, "z9hG4bKa6")
		tx, _ := l.HandleRequest(inv, rec)
		res := responseTo(inv, 603)
		_ = tx.Respond(res)
		clock.Advance(10 * time.Second)
		if rec.count() != 1 {
			t.Fatalf("%d sends over a reliable transport, want 1", rec.count())
		}
		l.HandleRequest(NewACK(inv, res), rec)
		if tx.State() != Terminated {
			t.Fatalf("state %v, want Terminated (Timer I is 0 on reliable transports)", tx.State())
		}
	})
	t.Run("RFC3261 9.2 CANCEL: 200 to the CANCEL, 487 to the INVITE", func(t *testing.T) {
		l, _, rec := newTestLayer(false)
		inv := mustRequest(t, sip.INVITE, "z9hG4bKa7")
		tx, _ := l.HandleRequest(inv, rec)
		_ = tx.Respond(responseTo(inv, 180))
		if _, d := l.HandleRequest(NewCANCEL(inv), rec); d != Absorbed {
			t.Fatalf("CANCEL: %v", d)
		}
		select {
		case <-tx.Cancelled():
		default:
			t.Fatal("Cancelled not closed")
		}
		var codes []string
		for _, m := range rec.sent {
			r := m.(*sip.Response)
			codes = append(codes, fmt.Sprintf("%d %s", r.StatusCode, r.CSeq.Method))
		}
		if got := strings.Join(codes, ", "); got != "180 INVITE, 200 CANCEL, 487 INVITE" {
			t.Fatalf("sent %s", got)
		}
		// RFC 3261 §8.2.6.2: every response to the INVITE carries one To tag.
		if tag180, tag487 := rec.sent[0].(*sip.Response).To.Tag(), rec.sent[2].(*sip.Response).To.Tag(); tag180 != tag487 {
			t.Errorf("487 To tag %q differs from the 180's %q", tag487, tag180)
		}
		if tx.State() != Completed {
			t.Fatalf("INVITE state %v, want Completed", tx.State())
		}
	})
	t.Run("RFC3261 9.2 CANCEL after the final response changes nothing", func(t *testing.T) {
		l, _, rec := newTestLayer(false)
		inv := mustRequest(t, sip.INVITE, "z9hG4bKa8")
		tx, _ := l.HandleRequest(inv, rec)
		_ = tx.Respond(responseTo(inv, 200))
		l.HandleRequest(NewCANCEL(inv), rec)
		if c := codeOf(rec.last()); c != 200 || rec.last().(*sip.Response).CSeq.Method != sip.CANCEL {
			t.Fatalf("last sent %v", rec.last())
		}
	})
	t.Run("RFC3261 9.2 CANCEL matching nothing gets 481", func(t *testing.T) {
		l, _, rec := newTestLayer(false)
		l.HandleRequest(NewCANCEL(mustRequest(t, sip.INVITE, "z9hG4bKnone")), rec)
		if codeOf(rec.last()) != 481 {
			t.Fatalf("sent %v", rec.last())
		}
	})
	t.Run("RFC3261 17.2.4 transport error terminates", func(t *testing.T) {
		l, _, rec := newTestLayer(false)
		tx, _ := l.HandleRequest(mustRequest(t, sip.INVITE, "z9hG4bKa9"), rec)
		rec.fail = true
		if err := tx.Respond(responseTo(tx.Request(), 486)); err == nil {
			t.Fatal("no error")
		}
		if tx.State() != Terminated || !errors.Is(tx.Err(), ErrTransport) {
			t.Fatalf("%v %v", tx.State(), tx.Err())
		}
	})
}

// --- non-INVITE server transaction, RFC 3261 Figure 8 ---

func TestNonInviteServer(t *testing.T) {
	t.Run("RFC3261 17.2.2 Trying absorbs, Completed resends, Timer J ends", func(t *testing.T) {
		l, clock, rec := newTestLayer(false)
		req := mustRequest(t, sip.OPTIONS, "z9hG4bKn1")
		tx, _ := l.HandleRequest(req, rec)
		if tx.State() != Trying {
			t.Fatalf("state %v", tx.State())
		}
		l.HandleRequest(req, rec)
		if rec.count() != 0 {
			t.Fatal("retransmission in Trying answered")
		}
		_ = tx.Respond(responseTo(req, 200))
		l.HandleRequest(req, rec)
		if rec.count() != 2 {
			t.Fatalf("retransmission in Completed: %d sent, want 2", rec.count())
		}
		clock.Advance(32*time.Second - time.Millisecond)
		if tx.State() != Completed {
			t.Fatal("ended before Timer J")
		}
		clock.Advance(time.Millisecond)
		if tx.State() != Terminated {
			t.Fatalf("state %v after Timer J", tx.State())
		}
	})
	t.Run("RFC3261 17.2.2 Proceeding resends the provisional", func(t *testing.T) {
		l, _, rec := newTestLayer(false)
		req := mustRequest(t, sip.REGISTER, "z9hG4bKn2")
		tx, _ := l.HandleRequest(req, rec)
		_ = tx.Respond(responseTo(req, 100))
		l.HandleRequest(req, rec)
		if rec.count() != 2 || codeOf(rec.last()) != 100 || tx.State() != Proceeding {
			t.Fatalf("%d sent, state %v", rec.count(), tx.State())
		}
	})
	t.Run("RFC3261 17.2.2 reliable: Timer J is zero", func(t *testing.T) {
		l, _, rec := newTestLayer(true)
		tx, _ := l.HandleRequest(mustRequest(t, sip.OPTIONS, "z9hG4bKn3"), rec)
		_ = tx.Respond(responseTo(tx.Request(), 200))
		if tx.State() != Terminated {
			t.Fatalf("state %v", tx.State())
		}
	})
}

// --- matching, RFC 3261 §17.2.3 ---

func TestServerMatching(t *testing.T) {
	l, _, rec := newTestLayer(false)
	a := mustRequest(t, sip.OPTIONS, "z9hG4bKm1")
	if _, d := l.HandleRequest(a, rec); d != NewRequest {
		t.Fatal(d)
	}
	b := mustRequest(t, sip.OPTIONS, "z9hG4bKm1")
	b.Via[0].Host = "192.0.2.99" // same branch, other sent-by: another transaction
	if _, d := l.HandleRequest(b, rec); d != NewRequest {
		t.Error("same branch from another sent-by matched")
	}
	c := mustRequest(t, sip.INFO, "z9hG4bKm1") // same branch, other method
	if _, d := l.HandleRequest(c, rec); d != NewRequest {
		t.Error("same branch with another method matched")
	}
	t.Run("RFC3261 17.2.3 RFC 2543 fallback without the magic cookie", func(t *testing.T) {
		old := mustRequest(t, sip.INVITE, "oldstyle1")
		if _, d := l.HandleRequest(old, rec); d != NewRequest {
			t.Fatal(d)
		}
		again := mustRequest(t, sip.INVITE, "oldstyle1")
		if _, d := l.HandleRequest(again, rec); d != Absorbed {
			t.Error("RFC 2543 retransmission not matched")
		}
		bare := mustRequest(t, sip.INVITE, "z9hG4bK") // RFC 4475 §3.2.1
		if _, d := l.HandleRequest(bare, rec); d != NewRequest {
			t.Error("bare magic cookie")
		}
	})
}

// --- INVITE client transaction, RFC 3261 Figure 5 and RFC 6026 Figure 5 ---

type collected struct {
	mu   sync.Mutex
	res  []int
	errs []error
}

func (c *collected) handler(res *sip.Response, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if res != nil {
		c.res = append(c.res, res.StatusCode)
	}
	if err != nil {
		c.errs = append(c.errs, err)
	}
}

func TestInviteClient(t *testing.T) {
	t.Run("RFC3261 17.1.1.2 Timer A doubles, Timer B times out", func(t *testing.T) {
		l, clock, rec := newTestLayer(false)
		var got collected
		tx, err := l.Request(mustRequest(t, sip.INVITE, "z9hG4bKc1"), rec, got.handler)
		if err != nil {
			t.Fatal(err)
		}
		clock.Advance(32 * time.Second)
		want := durations(0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5)
		if ts := rec.times(); !equalDurations(ts, want) {
			t.Errorf("INVITE sent at %v, want %v", ts, want)
		}
		if tx.State() != Terminated || len(got.errs) != 1 || !errors.Is(got.errs[0], ErrTimeout) {
			t.Fatalf("state %v, errors %v", tx.State(), got.errs)
		}
	})
	t.Run("RFC3261 17.1.1.2 provisional stops Timer A; non-2xx is ACKed; Timer D", func(t *testing.T) {
		l, clock, rec := newTestLayer(false)
		var got collected
		inv := mustRequest(t, sip.INVITE, "z9hG4bKc2")
		tx, _ := l.Request(inv, rec, got.handler)
		l.HandleResponse(responseTo(inv, 180))
		clock.Advance(10 * time.Second)
		if rec.count() != 1 || tx.State() != Proceeding {
			t.Fatalf("%d sends in Proceeding, state %v", rec.count(), tx.State())
		}
		busy := responseTo(inv, 486)
		l.HandleResponse(busy)
		ack, ok := rec.last().(*sip.Request)
		if !ok || ack.Method != sip.ACK || ack.Via[0].Branch() != "z9hG4bKc2" || ack.To.Tag() != "t1" || ack.CSeq.Seq != 7 {
			t.Fatalf("ACK %v", rec.last())
		}
		l.HandleResponse(busy) // retransmission: ACK again, not passed up
		if rec.count() != 3 {
			t.Fatalf("%d sends, want INVITE, ACK, ACK", rec.count())
		}
		if fmt.Sprint(got.res) != "[180 486]" {
			t.Fatalf("TU saw %v", got.res)
		}
		clock.Advance(32 * time.Second)
		if tx.State() != Terminated {
			t.Fatalf("state %v after Timer D", tx.State())
		}
	})
	t.Run("RFC6026 7.2 2xx moves to Accepted; retransmitted 2xx go to the TU; Timer M", func(t *testing.T) {
		l, clock, rec := newTestLayer(false)
		var got collected
		inv := mustRequest(t, sip.INVITE, "z9hG4bKc3")
		tx, _ := l.Request(inv, rec, got.handler)
		ok := responseTo(inv, 200)
		l.HandleResponse(ok)
		l.HandleResponse(ok)
		if tx.State() != Accepted || fmt.Sprint(got.res) != "[200 200]" {
			t.Fatalf("state %v, TU saw %v", tx.State(), got.res)
		}
		if rec.count() != 1 {
			t.Error("the transaction ACKed a 2xx itself")
		}
		clock.Advance(32 * time.Second)
		if tx.State() != Terminated {
			t.Fatal("Timer M did not end Accepted")
		}
		if l.HandleResponse(ok) {
			t.Error("2xx after Timer M matched a transaction")
		}
	})
	t.Run("RFC3261 9.1 CANCEL waits for a provisional response", func(t *testing.T) {
		l, _, rec := newTestLayer(false)
		inv := mustRequest(t, sip.INVITE, "z9hG4bKc4")
		tx, _ := l.Request(inv, rec, nil)
		tx.Cancel()
		if rec.count() != 1 {
			t.Fatal("CANCEL sent before any provisional response")
		}
		l.HandleResponse(responseTo(inv, 180))
		c, ok := rec.last().(*sip.Request)
		if !ok || c.Method != sip.CANCEL || c.Via[0].Branch() != inv.Via[0].Branch() {
			t.Fatalf("sent %v", rec.last())
		}
		// The CANCEL's 200 belongs to the CANCEL's own transaction.
		cancelOK := responseTo(c, 200)
		if !l.HandleResponse(cancelOK) {
			t.Error("200 to CANCEL matched nothing")
		}
		if tx.State() != Proceeding {
			t.Error("200 to CANCEL affected the INVITE transaction")
		}
	})
	t.Run("RFC3261 17.1.1.2 reliable: no retransmissions, ACK ends Completed", func(t *testing.T) {
		l, clock, rec := newTestLayer(true)
		inv := mustRequest(t, sip.INVITE, "z9hG4bKc5")
		tx, _ := l.Request(inv, rec, nil)
		clock.Advance(10 * time.Second)
		if rec.count() != 1 {
			t.Fatalf("%d sends over a reliable transport", rec.count())
		}
		l.HandleResponse(responseTo(inv, 503))
		if tx.State() != Terminated {
			t.Fatalf("state %v", tx.State())
		}
	})
	t.Run("RFC3261 8.1.3.1 transport error", func(t *testing.T) {
		l, _, rec := newTestLayer(false)
		rec.fail = true
		var got collected
		tx, err := l.Request(mustRequest(t, sip.INVITE, "z9hG4bKc6"), rec, got.handler)
		if err == nil || tx.State() != Terminated || len(got.errs) != 1 || !errors.Is(got.errs[0], ErrTransport) {
			t.Fatalf("err %v, state %v, TU errors %v", err, tx.State(), got.errs)
		}
	})
}

// --- non-INVITE client transaction, RFC 3261 Figure 6 ---

func TestNonInviteClient(t *testing.T) {
	t.Run("RFC3261 17.1.2.2 Timer E doubles up to T2, Timer F times out", func(t *testing.T) {
		l, clock, rec := newTestLayer(false)
		var got collected
		tx, _ := l.Request(mustRequest(t, sip.OPTIONS, "z9hG4bKd1"), rec, got.handler)
		clock.Advance(32 * time.Second)
		want := durations(0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5)
		if ts := rec.times(); !equalDurations(ts, want) {
			t.Errorf("sent at %v, want %v", ts, want)
		}
		if tx.State() != Terminated || len(got.errs) != 1 {
			t.Fatalf("%v %v", tx.State(), got.errs)
		}
	})
	t.Run("RFC3261 17.1.2.2 Proceeding retransmits every T2", func(t *testing.T) {
		l, clock, rec := newTestLayer(false)
		req := mustRequest(t, sip.REGISTER, "z9hG4bKd2")
		l.Request(req, rec, nil)
		l.HandleResponse(responseTo(req, 100))
		clock.Advance(9 * time.Second)
		want := durations(0, 0.5, 4.5, 8.5)
		if ts := rec.times(); !equalDurations(ts, want) {
			t.Errorf("sent at %v, want %v", ts, want)
		}
	})
	t.Run("RFC3261 17.1.2.2 final response; retransmissions absorbed; Timer K", func(t *testing.T) {
		l, clock, rec := newTestLayer(false)
		var got collected
		req := mustRequest(t, sip.OPTIONS, "z9hG4bKd3")
		tx, _ := l.Request(req, rec, got.handler)
		ok := responseTo(req, 200)
		l.HandleResponse(ok)
		l.HandleResponse(ok)
		if fmt.Sprint(got.res) != "[200]" || tx.State() != Completed {
			t.Fatalf("TU saw %v, state %v", got.res, tx.State())
		}
		clock.Advance(5 * time.Second)
		if tx.State() != Terminated {
			t.Fatal("Timer K")
		}
	})
}

// TestBurstEmptiesTheTable: after thousands of transactions of every
// kind, the table returns to zero within the RFC's timers.
func TestBurstEmptiesTheTable(t *testing.T) {
	l, clock, rec := newTestLayer(false)
	for i := range 3000 {
		branch := fmt.Sprintf("z9hG4bKburst%d", i)
		switch i % 4 {
		case 0:
			inv := mustRequest(t, sip.INVITE, branch)
			tx, _ := l.HandleRequest(inv, rec)
			_ = tx.Respond(responseTo(inv, 200))
		case 1:
			inv := mustRequest(t, sip.INVITE, branch)
			tx, _ := l.HandleRequest(inv, rec)
			res := responseTo(inv, 486)
			_ = tx.Respond(res)
			if i%8 == 1 {
				l.HandleRequest(NewACK(inv, res), rec)
			}
		case 2:
			req := mustRequest(t, sip.MESSAGE, branch)
			tx, _ := l.HandleRequest(req, rec)
			_ = tx.Respond(responseTo(req, 202))
		case 3:
			req := mustRequest(t, sip.OPTIONS, branch)
			l.Request(req, rec, nil)
			if i%8 == 3 {
				l.HandleResponse(responseTo(req, 200))
			}
		}
	}
	if s := l.Stats(); s.ServerActive+s.ClientActive == 0 {
		t.Fatal("nothing active during the burst")
	}
	clock.Advance(64*500*time.Millisecond + 5*time.Second)
	if s := l.Stats(); s.ServerActive != 0 || s.ClientActive != 0 {
		t.Fatalf("left: %+v", s)
	}
	if clock.Pending() != 0 {
		t.Fatalf("%d timers still pending", clock.Pending())
	}
}

// wireRecorder is a recorder that also takes encoded messages.
type wireRecorder struct {
	recorder
	wires   [][]byte
	n       int  // SendWire calls
	discard bool // count the encoded messages only (benchmarks)
}

func (w *wireRecorder) SendWire(b []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n++
	if !w.discard {
		w.wires = append(w.wires, append([]byte(nil), b...))
	}
	return nil
}

// TestCompletedKeepsOnlyBytes: with a WireSender, a transaction waiting in
// Completed lets go of the request and retransmits the response's bytes.
func TestCompletedKeepsOnlyBytes(t *testing.T) {
	clock := NewFakeClock(time.Unix(1_000_000, 0))
	l := New(Config{Clock: clock})
	w := &wireRecorder{recorder: recorder{clock: clock, start: clock.Now()}}
	req := mustRequest(t, sip.OPTIONS, "z9hG4bKw1")
	tx, _ := l.HandleRequest(req, w)
	_ = tx.Respond(responseTo(req, 200))
	if tx.Request() != nil {
		t.Error("request still held in Completed")
	}
	l.HandleRequest(req, w)
	if len(w.wires) != 2 || string(w.wires[0]) != string(w.wires[1]) || !strings.HasPrefix(string(w.wires[1]), "SIP/2.0 200 OK\r\n") {
		t.Fatalf("wires %q", w.wires)
	}
	// INVITE: Timer G retransmits the bytes; the 2xx path keeps the message.
	inv := mustRequest(t, sip.INVITE, "z9hG4bKw2")
	itx, _ := l.HandleRequest(inv, w)
	_ = itx.Respond(responseTo(inv, 486))
	clock.Advance(600 * time.Millisecond)
	if len(w.wires) != 4 {
		t.Fatalf("%d wire sends, want 4 (486 and one Timer G retransmission)", len(w.wires))
	}
	// A 2xx: Accepted holds neither the INVITE nor the 2xx for its 32 s,
	// yet absorbs the INVITE's retransmissions and passes the TU's 2xx on.
	inv2 := mustRequest(t, sip.INVITE, "z9hG4bKw3")
	atx, _ := l.HandleRequest(inv2, w)
	ok := responseTo(inv2, 200)
	_ = atx.Respond(ok)
	if atx.State() != Accepted || atx.Request() != nil || atx.last != nil {
		t.Fatalf("Accepted: state %v, request held %v, 2xx held %v", atx.State(), atx.Request() != nil, atx.last != nil)
	}
	sent := w.count()
	if _, d := l.HandleRequest(inv2, w); d != Absorbed || w.count() != sent {
		t.Errorf("INVITE retransmission in Accepted: %v, %d sends", d, w.count()-sent)
	}
	if err := atx.Respond(ok); err != nil || w.count() != sent+1 {
		t.Errorf("the TU's 2xx retransmission: %v", err)
	}
	atx.cancel() // a CANCEL after the 2xx changes nothing
	if atx.State() != Accepted {
		t.Errorf("after CANCEL: %v", atx.State())
	}
}

// TestRemainingTransitions covers the arcs of Figures 5-8 the scenario
// tests above do not take.
func TestRemainingTransitions(t *testing.T) {
	t.Run("RFC3261 Figure 5 Calling to Completed on 300-699 without a provisional", func(t *testing.T) {
		l, _, rec := newTestLayer(false)
		inv := mustRequest(t, sip.INVITE, "z9hG4bKr1")
		tx, _ := l.Request(inv, rec, nil)
		l.HandleResponse(responseTo(inv, 404))
		if tx.State() != Completed {
			t.Fatalf("state %v", tx.State())
		}
		if ack, ok := rec.last().(*sip.Request); !ok || ack.Method != sip.ACK {
			t.Fatalf("no ACK: %v", rec.last())
		}
	})
	t.Run("RFC6026 Figure 5 Proceeding to Accepted on 2xx", func(t *testing.T) {
		l, _, rec := newTestLayer(false)
		inv := mustRequest(t, sip.INVITE, "z9hG4bKr2")
		tx, _ := l.Request(inv, rec, nil)
		l.HandleResponse(responseTo(inv, 183))
		l.HandleResponse(responseTo(inv, 200))
		if tx.State() != Accepted {
			t.Fatalf("state %v", tx.State())
		}
	})
	t.Run("RFC3261 Figure 6 Proceeding to Completed, then Timer K", func(t *testing.T) {
		l, clock, rec := newTestLayer(false)
		req := mustRequest(t, sip.SUBSCRIBE, "z9hG4bKr3")
		tx, _ := l.Request(req, rec, nil)
		l.HandleResponse(responseTo(req, 100))
		l.HandleResponse(responseTo(req, 202))
		if tx.State() != Completed {
			t.Fatalf("state %v", tx.State())
		}
		clock.Advance(5 * time.Second)
		if tx.State() != Terminated {
			t.Fatalf("state %v after Timer K", tx.State())
		}
	})
	t.Run("RFC3261 Figure 6 transport error on a retransmission", func(t *testing.T) {
		l, clock, rec := newTestLayer(false)
		var got collected
		tx, _ := l.Request(mustRequest(t, sip.MESSAGE, "z9hG4bKr4"), rec, got.handler)
		rec.mu.Lock()
		rec.fail = true
		rec.mu.Unlock()
		clock.Advance(500 * time.Millisecond)
		<-tx.Done()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got.mu.Lock()
			n := len(got.errs)
			got.mu.Unlock()
			if n == 1 || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if !errors.Is(tx.Err(), ErrTransport) || len(got.errs) != 1 || !errors.Is(got.errs[0], ErrTransport) {
			t.Fatalf("err %v, TU saw %v", tx.Err(), got.errs)
		}
	})
	t.Run("RFC3261 Figure 8 Proceeding to Completed", func(t *testing.T) {
		l, _, rec := newTestLayer(false)
		req := mustRequest(t, sip.REGISTER, "z9hG4bKr5")
		tx, _ := l.HandleRequest(req, rec)
		_ = tx.Respond(responseTo(req, 100))
		_ = tx.Respond(responseTo(req, 401))
		if tx.State() != Completed {
			t.Fatalf("state %v", tx.State())
		}
		if err := tx.Respond(responseTo(req, 200)); !errors.Is(err, ErrTerminated) {
			t.Errorf("second final response: %v", err)
		}
	})
	t.Run("RFC3261 Figure 7 Proceeding: 1xx then 2xx", func(t *testing.T) {
		l, _, rec := newTestLayer(false)
		inv := mustRequest(t, sip.INVITE, "z9hG4bKr6")
		tx, _ := l.HandleRequest(inv, rec)
		_ = tx.Respond(responseTo(inv, 180))
		_ = tx.Respond(responseTo(inv, 183))
		_ = tx.Respond(responseTo(inv, 200))
		if tx.State() != Accepted || rec.count() != 3 {
			t.Fatalf("state %v, %d sent", tx.State(), rec.count())
		}
	})
}

func TestRespondStateless(t *testing.T) {
	l, clock, rec := newTestLayer(false)
	inv := mustRequest(t, sip.INVITE, "z9hG4bKs1")
	tx, _ := l.HandleRequest(inv, rec)
	if err := tx.RespondStateless(responseTo(inv, 404)); err != nil {
		t.Fatal(err)
	}
	if tx.State() != Terminated {
		t.Fatalf("state %v", tx.State())
	}
	clock.Advance(32 * time.Second)
	if rec.count() != 1 {
		t.Fatalf("%d sends, want exactly one (no Timer G)", rec.count())
	}
	if _, d := l.HandleRequest(inv, rec); d != NewRequest {
		t.Errorf("retransmission after a stateless answer: %v, want NewRequest", d)
	}
}

// senderFunc is a Sender calling a function.
type senderFunc func(sip.Message) error

func (f senderFunc) Send(m sip.Message) error { return f(m) }
func (senderFunc) Reliable() bool             { return false }

// TestRespondStatelessRetransmissionRace: a retransmission that arrives
// while the stateless answer is being sent (the client got it and sent
// again at once) starts a new transaction; it used to meet the ending one
// in the table and be swallowed.
func TestRespondStatelessRetransmissionRace(t *testing.T) {
	l, _, rec := newTestLayer(false)
	inv := mustRequest(t, sip.INVITE, "z9hG4bKs2")
	got := make(chan Disposition, 1)
	send := senderFunc(func(m sip.Message) error {
		// The retransmission is handled beside the send, as the socket
		// reader would. The send waits a while for it: long enough for a
		// new transaction to be made, while one that had to wait for the
		// ending transaction's lock cannot finish.
		done := make(chan struct{})
		go func() {
			_, d := l.HandleRequest(inv, rec)
			got <- d
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(200 * time.Millisecond):
		}
		return nil
	})
	tx, _ := l.HandleRequest(inv, send)
	if err := tx.RespondStateless(responseTo(inv, 404)); err != nil {
		t.Fatal(err)
	}
	if d := <-got; d != NewRequest {
		t.Errorf("retransmission during the stateless answer: %v, want NewRequest", d)
	}
	// The ending transaction did not take the new one out of the table.
	if _, d := l.HandleRequest(inv, rec); d != Absorbed {
		t.Errorf("second retransmission: %v, want Absorbed by the new transaction", d)
	}
}

func TestMaxServerAndUnansweredRequests(t *testing.T) {
	clock := NewFakeClock(time.Unix(1_000_000, 0))
	l := New(Config{Clock: clock, MaxServer: 2})
	rec := &recorder{clock: clock, start: clock.Now()}
	a := mustRequest(t, sip.MESSAGE, "z9hG4bKq1")
	l.HandleRequest(a, rec)
	l.HandleRequest(mustRequest(t, sip.MESSAGE, "z9hG4bKq2"), rec)
	if _, d := l.HandleRequest(mustRequest(t, sip.MESSAGE, "z9hG4bKq3"), rec); d != Overloaded {
		t.Fatalf("third transaction: %v, want Overloaded", d)
	}
	if _, d := l.HandleRequest(a, rec); d != Absorbed {
		t.Errorf("retransmission at the ceiling: %v, want Absorbed", d)
	}
	// Nobody answers: after 64*T1 both are gone.
	clock.Advance(32 * time.Second)
	if s := l.Stats(); s.ServerActive != 0 {
		t.Fatalf("%d unanswered transactions left", s.ServerActive)
	}
}

// TestTimerBOnlyInCalling: a provisional response stops Timer B.
func TestTimerBOnlyInCalling(t *testing.T) {
	l, clock, rec := newTestLayer(false)
	var got collected
	inv := mustRequest(t, sip.INVITE, "z9hG4bKb1")
	tx, _ := l.Request(inv, rec, got.handler)
	l.HandleResponse(responseTo(inv, 180))
	clock.Advance(5 * time.Minute)
	if tx.State() != Proceeding || len(got.errs) != 0 {
		t.Fatalf("a ringing INVITE timed out: %v %v", tx.State(), got.errs)
	}
	l.HandleResponse(responseTo(inv, 200))
	clock.Advance(32 * time.Second)
	if tx.State() != Terminated {
		t.Fatalf("state %v", tx.State())
	}
}

// OnCancel set after the CANCEL came (the TU routed the INVITE off its
// worker meanwhile) runs the reaction at once: the TU learns of the
// CANCEL instead of going on as if none had come.
func TestOnCancelAfterCancel(t *testing.T) {
	l, _, rec := newTestLayer(false)
	inv := mustRequest(t, sip.INVITE, "z9hG4bKoc1")
	tx, _ := l.HandleRequest(inv, rec)
	if _, d := l.HandleRequest(NewCANCEL(inv), rec); d != Absorbed {
		t.Fatalf("CANCEL: %v", d)
	}
	called := 0
	tx.OnCancel(func() { called++ })
	if called != 1 {
		t.Errorf("reaction ran %d times for a CANCEL that had come, want 1", called)
	}
	fresh, _ := l.HandleRequest(mustRequest(t, sip.INVITE, "z9hG4bKoc2"), rec)
	fresh.OnCancel(func() { called++ })
	if called != 1 {
		t.Error("reaction ran without a CANCEL")
	}
}

// TestCancelledInviteEnds: a callee that rings, answers the CANCEL with
// 200 and never sends a final response does not pin the INVITE client
// transaction (RFC 3261 §9.1): 64*T1 after the CANCEL went out it is
// destroyed and its TU hears ErrTimeout, as after Timer B.
func TestCancelledInviteEnds(t *testing.T) {
	for _, tc := range []struct {
		name    string
		calling bool // Cancel in Calling: the CANCEL waits for the 180
		late1xx bool // a 183 after the CANCEL
	}{
		{"RFC3261 9.1 CANCEL in Proceeding", false, false},
		{"RFC3261 9.1 CANCEL held until the provisional response", true, false},
		{"RFC3261 9.1 a provisional response after the CANCEL keeps the wait", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, clock, rec := newTestLayer(false)
			var got collected
			inv := mustRequest(t, sip.INVITE, "z9hG4bKx1")
			tx, _ := l.Request(inv, rec, got.handler)
			if tc.calling {
				tx.Cancel()
				l.HandleResponse(responseTo(inv, 180))
			} else {
				l.HandleResponse(responseTo(inv, 180))
				clock.Advance(time.Minute) // ringing: no Timer B in Proceeding
				tx.Cancel()
			}
			c, ok := rec.last().(*sip.Request)
			if !ok || c.Method != sip.CANCEL {
				t.Fatalf("sent %v, want CANCEL", rec.last())
			}
			l.HandleResponse(responseTo(c, 200))
			if tc.late1xx {
				l.HandleResponse(responseTo(inv, 183))
			}
			clock.Advance(64*l.Config().T1 - time.Millisecond)
			if tx.State() != Proceeding || len(got.errs) != 0 {
				t.Fatalf("ended before 64*T1 after the CANCEL: %v %v", tx.State(), got.errs)
			}
			clock.Advance(time.Millisecond)
			if tx.State() != Terminated || len(got.errs) != 1 || !errors.Is(got.errs[0], ErrTimeout) {
				t.Fatalf("state %v, TU errors %v", tx.State(), got.errs)
			}
			if s := l.Stats(); s.ClientActive != 0 {
				t.Errorf("ClientActive = %d after the cancelled INVITE gave up", s.ClientActive)
			}
			if l.HandleResponse(responseTo(inv, 487)) {
				t.Error("a late 487 matched the destroyed transaction")
			}
		})
	}
}

// TestClientRequestThroughAccepted: ClientTx.Request takes no lock, which
// holds because the request is set before the transaction is published
// and never after: it stays the INVITE through Accepted (RFC 6026 §7.2,
// where the TU still sees 2xx retransmissions and may read it) and after
// Timer M. Run under -race, a write of it in any state fails this test.
func TestClientRequestThroughAccepted(t *testing.T) {
	l, clock, rec := newTestLayer(false)
	inv := mustRequest(t, sip.INVITE, "z9hG4bKra1")
	tx, err := l.Request(inv, rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			if r := tx.Request(); r != inv || r.Method != sip.INVITE {
				t.Errorf("Request() = %v, want the INVITE", r)
				return
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	ok := responseTo(inv, 200)
	l.HandleResponse(ok)
	l.HandleResponse(ok) // a 2xx retransmission, passed up in Accepted
	if tx.State() != Accepted {
		t.Errorf("state %v after the 2xx", tx.State())
	}
	clock.Advance(64 * l.Config().T1) // Timer M
	close(stop)
	<-stopped
	if tx.State() != Terminated || tx.Request() != inv {
		t.Fatalf("after Timer M: state %v, request %v", tx.State(), tx.Request())
	}
}

// TestMatchAndInline: Match finds a client transaction as HandleResponse
// does, Inline reports the promise RequestWith was given, and Receive runs
// the response through the state machine to the handler.
func TestMatchAndInline(t *testing.T) {
	l, _, rec := newTestLayer(false)
	var plain, quick collected
	reqPlain := mustRequest(t, sip.OPTIONS, "z9hG4bKm1")
	reqQuick := mustRequest(t, sip.NOTIFY, "z9hG4bKm2")
	txPlain, _ := l.Request(reqPlain, rec, plain.handler)
	txQuick, err := l.RequestWith(reqQuick, rec, quick.handler, ClientOptions{Inline: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Match(responseTo(reqPlain, 200)); got != txPlain || got.Inline() {
		t.Fatalf("Match(plain) = %p inline %v, want %p not inline", got, got != nil && got.Inline(), txPlain)
	}
	ok := responseTo(reqQuick, 200)
	got := l.Match(ok)
	if got != txQuick || !got.Inline() {
		t.Fatalf("Match(quick) = %p, want %p inline", got, txQuick)
	}
	got.Receive(ok)
	if fmt.Sprint(quick.res) != "[200]" || txQuick.State() != Completed || len(plain.res) != 0 {
		t.Fatalf("handler saw %v (other %v), state %v", quick.res, plain.res, txQuick.State())
	}
	other := responseTo(mustRequest(t, sip.NOTIFY, "z9hG4bKm3"), 200)
	if l.Match(other) != nil {
		t.Fatal("a response of no transaction matched one")
	}
	wrongMethod := responseTo(reqQuick, 200)
	wrongMethod.CSeq.Method = sip.INFO
	if l.Match(wrongMethod) != nil {
		t.Fatal("matched by branch alone, not branch and CSeq method (RFC 3261 §17.1.3)")
	}
}
