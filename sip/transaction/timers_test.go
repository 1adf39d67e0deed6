package transaction

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip"
)

func (q *timerQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// TestTimersFireInArmingOrder: timers of a Layer due at the same instant
// fire in the order they were armed, as separate FakeClock timers would.
func TestTimersFireInArmingOrder(t *testing.T) {
	t.Run("RFC3261 17.2.1 Timer G of three transactions", func(t *testing.T) {
		l, clock, rec := newTestLayer(false)
		var invs []*sip.Request
		for i := range 3 {
			inv := mustRequest(t, sip.INVITE, fmt.Sprintf("z9hG4bKo%d", i))
			tx, _ := l.HandleRequest(inv, rec)
			_ = tx.Respond(responseTo(inv, 486))
			invs = append(invs, inv)
		}
		clock.Advance(500 * time.Millisecond)
		if rec.count() != 6 {
			t.Fatalf("%d sends, want 3 486s and 3 retransmissions", rec.count())
		}
		for i, m := range rec.sent[3:] {
			if got, want := m.(*sip.Response).CallID, invs[i].CallID; got != want {
				t.Errorf("retransmission %d for %s, want %s", i, got, want)
			}
		}
	})
	t.Run("RFC3261 17.1.2.2 Timer F armed before the Timer E due with it", func(t *testing.T) {
		// T2 = T1: Timer E fires every T1, and its 64th firing is due
		// with Timer F. F was armed first and ends the transaction.
		clock := NewFakeClock(time.Unix(1_000_000, 0))
		l := New(Config{Clock: clock, T1: 500 * time.Millisecond, T2: 500 * time.Millisecond})
		rec := &recorder{clock: clock, start: clock.Now()}
		var got collected
		tx, _ := l.Request(mustRequest(t, sip.OPTIONS, "z9hG4bKo9"), rec, got.handler)
		clock.Advance(time.Minute)
		if rec.count() != 64 {
			t.Errorf("%d sends, want the request and 63 retransmissions", rec.count())
		}
		if tx.State() != Terminated || len(got.errs) != 1 {
			t.Fatalf("state %v, TU errors %v", tx.State(), got.errs)
		}
	})
}

// TestStatelessAnswerLeavesNoTimer: a transaction answered statelessly
// leaves neither a queued timer nor a pending Clock timer behind.
func TestStatelessAnswerLeavesNoTimer(t *testing.T) {
	for _, method := range []string{sip.OPTIONS, sip.INVITE} {
		l, clock, rec := newTestLayer(false)
		req := mustRequest(t, method, "z9hG4bKsl1")
		tx, _ := l.HandleRequest(req, rec)
		if err := tx.RespondStateless(responseTo(req, 404)); err != nil {
			t.Fatal(err)
		}
		if n, p := l.timers.len(), clock.Pending(); n != 0 || p != 0 {
			t.Errorf("%s: %d queued timers, %d pending clock timers after a stateless answer", method, n, p)
		}
	}
}

// TestLookupsAllocateNothing: matching a retransmission of a request or a
// response to its transaction builds no key on the heap.
func TestLookupsAllocateNothing(t *testing.T) {
	clock := NewFakeClock(time.Unix(1_000_000, 0))
	l := New(Config{Clock: clock})
	w := &wireRecorder{recorder: recorder{clock: clock, start: clock.Now()}, discard: true}
	req := mustRequest(t, sip.REGISTER, "z9hG4bKla1")
	tx, _ := l.HandleRequest(req, w)
	_ = tx.Respond(responseTo(req, 200))
	if n := testing.AllocsPerRun(100, func() {
		if _, d := l.HandleRequest(req, w); d != Absorbed {
			t.Fatalf("retransmission: %v", d)
		}
	}); n != 0 {
		t.Errorf("a retransmitted request: %v allocations", n)
	}
	opt := mustRequest(t, sip.OPTIONS, "z9hG4bKla2")
	l.Request(opt, w, nil)
	ok := responseTo(opt, 200)
	l.HandleResponse(ok)
	if n := testing.AllocsPerRun(100, func() {
		if !l.HandleResponse(ok) {
			t.Fatal("retransmitted 200 matched nothing")
		}
	}); n != 0 {
		t.Errorf("a retransmitted response: %v allocations", n)
	}
}

// TestClientACKBytes: with a WireSender, an INVITE client transaction in
// Completed keeps the bytes of its ACK and sends them again for each
// retransmission of the final response (RFC 3261 §17.1.1.2).
func TestClientACKBytes(t *testing.T) {
	clock := NewFakeClock(time.Unix(1_000_000, 0))
	l := New(Config{Clock: clock})
	w := &wireRecorder{recorder: recorder{clock: clock, start: clock.Now()}}
	inv := mustRequest(t, sip.INVITE, "z9hG4bKab1")
	tx, _ := l.Request(inv, w, nil)
	busy := responseTo(inv, 486)
	l.HandleResponse(busy)
	l.HandleResponse(busy)
	want := NewACK(inv, busy).String()
	if len(w.wires) != 2 || string(w.wires[0]) != want || string(w.wires[1]) != want {
		t.Fatalf("sent %q, want the ACK twice:\n%s", w.wires, want)
	}
	if tx.ack != nil {
		t.Error("the ACK is kept as a message besides its bytes")
	}
	clock.Advance(32 * time.Second)
	if tx.State() != Terminated {
		t.Fatalf("state %v after Timer D", tx.State())
	}
}

// TestChannelsOnDemand: Done and Cancelled work whether asked for before
// or after the event.
func TestChannelsOnDemand(t *testing.T) {
	l, _, rec := newTestLayer(true)
	inv := mustRequest(t, sip.INVITE, "z9hG4bKcd1")
	early, _ := l.HandleRequest(inv, rec)
	done, cancelled := early.Done(), early.Cancelled()
	late, _ := l.HandleRequest(mustRequest(t, sip.INVITE, "z9hG4bKcd2"), rec)
	for _, tx := range []*ServerTx{early, late} {
		l.HandleRequest(NewCANCEL(tx.Request()), rec) // 200, then 487
		l.HandleRequest(NewACK(tx.Request(), responseTo(tx.Request(), 487)), rec)
	}
	for i, ch := range []<-chan struct{}{done, cancelled, late.Done(), late.Cancelled()} {
		select {
		case <-ch:
		default:
			t.Errorf("channel %d not closed", i)
		}
	}
}

// TestRealClock runs transactions on the wall clock with a 1 ms T1, side
// by side, to exercise the timer queue with concurrent arming and firing
// (under -race). Every transaction must end and leave nothing behind.
func TestRealClock(t *testing.T) {
	l := New(Config{T1: time.Millisecond, T2: 4 * time.Millisecond, T4: 5 * time.Millisecond,
		TryingDelay: time.Millisecond, TimerD: 10 * time.Millisecond})
	var wg sync.WaitGroup
	for i := range 40 {
		method := [...]string{sip.MESSAGE, sip.INVITE, sip.INVITE, sip.OPTIONS}[i%4]
		req := mustRequest(t, method, fmt.Sprintf("z9hG4bKrc%d", i))
		wg.Go(func() {
			rec := &recorder{clock: NewFakeClock(time.Time{})}
			switch i % 4 {
			case 0: // non-INVITE server: 200, Timer J
				tx, _ := l.HandleRequest(req, rec)
				_ = tx.Respond(responseTo(req, 200))
				l.HandleRequest(req, rec)
				<-tx.Done()
			case 1: // INVITE server: 100 Trying, 486, Timer G, ACK, Timer I
				inv := req
				tx, _ := l.HandleRequest(inv, rec)
				for rec.count() == 0 {
					time.Sleep(time.Millisecond)
				}
				res := responseTo(inv, 486)
				_ = tx.Respond(res)
				time.Sleep(3 * time.Millisecond)
				l.HandleRequest(NewACK(inv, res), rec)
				<-tx.Done()
			case 2: // INVITE client: Timer A until Timer B
				tx, _ := l.Request(req, rec, nil)
				<-tx.Done()
			case 3: // non-INVITE client: 100, 200, Timer K
				tx, _ := l.Request(req, rec, nil)
				l.HandleResponse(responseTo(req, 100))
				time.Sleep(2 * time.Millisecond)
				l.HandleResponse(responseTo(req, 200))
				<-tx.Done()
			}
		})
	}
	wg.Wait()
	if srv, cli := l.Len(); srv != 0 || cli != 0 || l.timers.len() != 0 {
		t.Fatalf("left: %d server, %d client transactions, %d queued timers", srv, cli, l.timers.len())
	}
}

// stopOnlyClock is a Clock whose timers cannot be Reset: the Layer then
// stops its timer and asks for a new one.
type stopOnlyClock struct{ *FakeClock }

type stopOnlyTimer struct{ t Timer }

func (c stopOnlyClock) AfterFunc(d time.Duration, f func()) Timer {
	return stopOnlyTimer{c.FakeClock.AfterFunc(d, f)}
}
func (t stopOnlyTimer) Stop() bool { return t.t.Stop() }

// TestClockWithoutReset: the RFC 3261 §17.2.1 schedule of Timers G and H
// on a Clock whose timers have no Reset.
func TestClockWithoutReset(t *testing.T) {
	clock := NewFakeClock(time.Unix(1_000_000, 0))
	l := New(Config{Clock: stopOnlyClock{clock}})
	rec := &recorder{clock: clock, start: clock.Now()}
	inv := mustRequest(t, sip.INVITE, "z9hG4bKnr1")
	tx, _ := l.HandleRequest(inv, rec)
	_ = tx.Respond(responseTo(inv, 486))
	clock.Advance(time.Minute)
	want := durations(0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5)
	if got := rec.times(); !equalDurations(got, want) {
		t.Errorf("486 sent at %v, want %v", got, want)
	}
	if tx.State() != Terminated || clock.Pending() != 0 {
		t.Fatalf("state %v, %d timers pending", tx.State(), clock.Pending())
	}
}

// TestFakeTimerReset: Reset re-arms a pending, fired or stopped timer, as
// time.Timer's does for AfterFunc timers.
func TestFakeTimerReset(t *testing.T) {
	clock := NewFakeClock(time.Unix(1_000_000, 0))
	fired := 0
	tm := clock.AfterFunc(time.Second, func() { fired++ }).(resetter)
	if !tm.Reset(2 * time.Second) {
		t.Error("Reset of a pending timer reported false")
	}
	clock.Advance(time.Second)
	if fired != 0 {
		t.Fatal("fired at the time it was moved from")
	}
	clock.Advance(time.Second)
	if fired != 1 || clock.Pending() != 0 {
		t.Fatalf("fired %d times, %d pending", fired, clock.Pending())
	}
	if tm.Reset(time.Second) {
		t.Error("Reset of a fired timer reported true")
	}
	tm.(Timer).Stop()
	if tm.Reset(time.Second) || clock.Pending() != 1 {
		t.Errorf("Reset of a stopped timer: %d pending", clock.Pending())
	}
	clock.Advance(time.Second)
	if fired != 2 || clock.Pending() != 0 {
		t.Fatalf("fired %d times, %d pending", fired, clock.Pending())
	}
}

// TestTimerSlack: with TimerSlack, timers fire on a grid of it, those
// due between two points together at the later one, never early; the
// 32 s of a Timer F is not stretched by more than the slack.
func TestTimerSlack(t *testing.T) {
	start := time.Unix(1_000_000, 0)
	clock := NewFakeClock(start)
	l := New(Config{Clock: clock, T1: 503 * time.Millisecond, T2: 4 * time.Second, TimerSlack: 10 * time.Millisecond})
	rec := &recorder{clock: clock, start: clock.Now()}
	var got collected
	tx, _ := l.Request(mustRequest(t, sip.OPTIONS, "z9hG4bKs1"), rec, got.handler)
	clock.Advance(2 * time.Millisecond) // a second request, due 2 ms after the first
	_, _ = l.Request(mustRequest(t, sip.OPTIONS, "z9hG4bKs2"), rec, nil)
	if rec.count() != 2 {
		t.Fatalf("%d sends, want the two requests", rec.count())
	}
	clock.Advance(507 * time.Millisecond) // 509 ms: both Timer Es are due (503, 505), the grid point not yet
	if rec.count() != 2 {
		t.Fatalf("at 509 ms: %d sends, want no retransmission before the grid point 510 ms", rec.count())
	}
	clock.Advance(time.Millisecond) // 510 ms
	if rec.count() != 4 {
		t.Fatalf("at 510 ms: %d sends, want both retransmissions at once", rec.count())
	}
	// Timer F (64*T1 = 32.192 s) ends the first by the grid point after it.
	clock.Advance(64*503*time.Millisecond - 510*time.Millisecond - time.Millisecond)
	if tx.State() == Terminated {
		t.Fatal("ended before Timer F was due")
	}
	clock.Advance(10 * time.Millisecond)
	if tx.State() != Terminated || len(got.errs) != 1 {
		t.Fatalf("a slack after Timer F: state %v, TU errors %v", tx.State(), got.errs)
	}
}
