package transaction

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip"
)

// The benchmarks drive whole transactions with the FakeClock, so that the
// RFC's 32-second waits cost nothing, and reuse one request and its
// responses: what they count is the transaction layer's own work (and the
// FakeClock's), not the parser's. Each iteration leaves the table empty.

// reset forgets what the recorder has sent, keeping the room.
func (r *recorder) reset() {
	r.mu.Lock()
	r.sent, r.at = r.sent[:0], r.at[:0]
	r.mu.Unlock()
}

// benchSetup is a layer on a fake clock and a recorder that counts what
// it is given; the Sender is the recorder as a WireSender ("wire", as the
// server and the proxy send) or as a plain Sender ("message").
func benchSetup(wire bool) (string, *Layer, *FakeClock, *wireRecorder, Sender) {
	name := benchName(wire)
	clock := NewFakeClock(time.Unix(1_000_000, 0))
	l := New(Config{Clock: clock})
	w := &wireRecorder{recorder: recorder{clock: clock, start: clock.Now()}, discard: true}
	if wire {
		return name, l, clock, w, w
	}
	return name, l, clock, w, &w.recorder
}

func benchName(wire bool) string {
	if wire {
		return "wire"
	}
	return "message"
}

// BenchmarkServerNonInvite is the life of a non-INVITE server transaction
// over UDP (RFC 3261 Figure 8): a new request, the TU's 200, a
// retransmission of the request answered from Completed, Timer J.
// "wire" sends through a WireSender, as the server does; "message"
// through a plain Sender.
func BenchmarkServerNonInvite(b *testing.B) {
	for _, wire := range []bool{true, false} {
		b.Run(benchName(wire), func(b *testing.B) {
			_, l, clock, w, s := benchSetup(wire)
			req := mustRequest(b, sip.REGISTER, "z9hG4bK-524287-1---4e5b4b3a9c1d")
			ok := responseTo(req, 200)
			timerJ := 64 * l.Config().T1
			b.ReportAllocs()
			for range b.N {
				tx, d := l.HandleRequest(req, s)
				if d != NewRequest {
					b.Fatalf("disposition %v", d)
				}
				if err := tx.Respond(ok); err != nil {
					b.Fatal(err)
				}
				if _, d := l.HandleRequest(req, s); d != Absorbed {
					b.Fatalf("retransmission: %v", d)
				}
				clock.Advance(timerJ)
				w.reset()
			}
			b.StopTimer()
			if srv, _ := l.Len(); srv != 0 {
				b.Fatalf("%d server transactions left", srv)
			}
			if w.n != 2*b.N && wire {
				b.Fatalf("%d wire sends, want %d", w.n, 2*b.N)
			}
		})
	}
}

// BenchmarkServerStateless is a request answered statelessly
// (RespondStateless, as an OPTIONS to the server or a 401 challenge):
// the transaction only lives while the TU works on the request.
func BenchmarkServerStateless(b *testing.B) {
	l, clock, rec := newTestLayer(false)
	req := mustRequest(b, sip.OPTIONS, "z9hG4bK-524287-1---4e5b4b3a9c1d")
	ok := responseTo(req, 200)
	b.ReportAllocs()
	for range b.N {
		tx, d := l.HandleRequest(req, rec)
		if d != NewRequest {
			b.Fatalf("disposition %v", d)
		}
		if err := tx.RespondStateless(ok); err != nil {
			b.Fatal(err)
		}
		clock.Advance(0) // lets the FakeClock drop stopped timers
		rec.reset()
	}
	b.StopTimer()
	if srv, _ := l.Len(); srv != 0 {
		b.Fatalf("%d server transactions left", srv)
	}
}

// BenchmarkClientInvite is an INVITE client transaction over UDP that
// ends busy (RFC 3261 Figure 5): the INVITE, 100, 180, 486 (ACKed by the
// transaction), Timer D. "wire" sends through a WireSender, as the
// proxy's hopSender; "message" through a plain Sender.
func BenchmarkClientInvite(b *testing.B) {
	for _, wire := range []bool{true, false} {
		b.Run(benchName(wire), func(b *testing.B) {
			_, l, clock, w, s := benchSetup(wire)
			inv := mustRequest(b, sip.INVITE, "z9hG4bK-524287-1---4e5b4b3a9c1d")
			trying, ringing, busy := responseTo(inv, 100), responseTo(inv, 180), responseTo(inv, 486)
			var finals int
			h := func(res *sip.Response, err error) {
				if err == nil && res.StatusCode >= 200 {
					finals++
				}
			}
			timerD := l.Config().TimerD
			b.ReportAllocs()
			for range b.N {
				tx, err := l.Request(inv, s, h)
				if err != nil {
					b.Fatal(err)
				}
				l.HandleResponse(trying)
				l.HandleResponse(ringing)
				l.HandleResponse(busy)
				if tx.State() != Completed {
					b.Fatalf("state %v", tx.State())
				}
				clock.Advance(timerD)
				w.reset()
			}
			b.StopTimer()
			if _, cli := l.Len(); cli != 0 || finals != b.N {
				b.Fatalf("%d client transactions left, %d final responses", cli, finals)
			}
		})
	}
}

// BenchmarkCompletedHeld measures the memory a non-INVITE server
// transaction holds while it waits 32 s in Completed for Timer J (over
// UDP, through a WireSender, as in the server): the live heap with
// 100 000 of them, less the live heap before, per transaction. Each
// request is parsed anew and dropped, as the server's are.
func BenchmarkCompletedHeld(b *testing.B) {
	const n = 100_000
	for range b.N {
		_, l, clock, w, _ := benchSetup(true)
		before := liveHeap()
		for i := range n {
			req := mustRequest(b, sip.REGISTER, fmt.Sprintf("z9hG4bK-524287-1---%012x", i))
			tx, d := l.HandleRequest(req, w)
			if d != NewRequest {
				b.Fatalf("disposition %v", d)
			}
			if err := tx.Respond(responseTo(req, 200)); err != nil {
				b.Fatal(err)
			}
		}
		after := liveHeap()
		if srv, _ := l.Len(); srv != n {
			b.Fatalf("%d server transactions, want %d", srv, n)
		}
		b.ReportMetric(float64(after-before)/n, "B/held-tx")
		clock.Advance(64 * l.Config().T1)
		if srv, _ := l.Len(); srv != 0 {
			b.Fatalf("%d server transactions left after Timer J", srv)
		}
		runtime.KeepAlive(l)
	}
}

func liveHeap() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
