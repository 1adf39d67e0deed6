package transaction

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip"
)

// manualClock is a Clock for driving a timerQueue by hand: time moves
// only when the test says, and its timer never fires by itself (the test
// calls fire). It counts how often the queue sets its timer.
type manualClock struct {
	now  time.Time
	sets int // AfterFunc and Reset calls
}

type manualTimer struct{ c *manualClock }

func (c *manualClock) Now() time.Time { return c.now }

func (c *manualClock) AfterFunc(time.Duration, func()) Timer {
	c.sets++
	return manualTimer{c}
}

func (t manualTimer) Stop() bool { return true }

func (t manualTimer) Reset(time.Duration) bool {
	t.c.sets++
	return true
}

// nopOwner is a transaction that does nothing when its timers fire.
type nopOwner struct{}

func (nopOwner) fire(*timerSlot, uint32) {}
func (nopOwner) unlink()                 {}

// BenchmarkTimerQueue is the queue's work for one NOTIFY client
// transaction of a presence server at 10 000 a second: Timers E and F
// armed, both stopped by the 200, Timer K armed for T4 (and, one T4
// later, fired). About 50 000 Timers K wait in the queue throughout, as
// in such a server; each iteration moves the clock 100 µs and lets the
// queue fire what is due (one Timer K on average).
func BenchmarkTimerQueue(b *testing.B) {
	const (
		t1, t4 = 500 * time.Millisecond, 5 * time.Second
		step   = 100 * time.Microsecond // 10 000 transactions a second
		ring   = 1 << 16                // > t4/step: a slot's Timer K has fired when it is reused
	)
	clock := &manualClock{now: time.Unix(1_000_000, 0)}
	var q timerQueue
	q.init(clock, 0)
	txs := make([][2]timerSlot, ring)
	for i := range txs {
		for j := range txs[i] {
			txs[i][j] = timerSlot{owner: nopOwner{}, idx: -1}
		}
	}
	i := 0
	notify := func() {
		tx := &txs[i%ring]
		i++
		q.arm(&tx[0], t1)    // Timer E
		q.arm(&tx[1], 64*t1) // Timer F
		q.stop(&tx[0])
		q.stop(&tx[1])
		q.arm(&tx[0], t4) // Timer K
		clock.now = clock.now.Add(step)
		q.fire()
	}
	for range int(t4/step) + 1000 { // fill the queue: the steady state
		notify()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		notify()
	}
	b.StopTimer()
	b.ReportMetric(float64(q.len()), "queued")
}

// tqProbe is a timerQueue on a FakeClock with named slots whose owners
// log when they fire, as "name@offset from the start".
type tqProbe struct {
	t     *testing.T
	clock *FakeClock
	q     *timerQueue
	slots map[string]*timerSlot
	log   []string
}

type probeOwner struct {
	p    *tqProbe
	name string
}

func (o probeOwner) fire(s *timerSlot, seq uint32) {
	if s.seq != seq || seq == 0 {
		return
	}
	s.seq = 0
	o.p.log = append(o.p.log, fmt.Sprintf("%s@%v", o.name, time.Duration(o.p.q.now())))
}

func (probeOwner) unlink() {}

func newTQProbe(t *testing.T) *tqProbe {
	clock := NewFakeClock(time.Unix(1_000_000, 0))
	p := &tqProbe{t: t, clock: clock, q: new(timerQueue), slots: map[string]*timerSlot{}}
	p.q.init(clock, 0)
	return p
}

func (p *tqProbe) slot(name string) *timerSlot {
	s := p.slots[name]
	if s == nil {
		s = &timerSlot{owner: probeOwner{p, name}, idx: -1}
		p.slots[name] = s
	}
	return s
}

// arm arms the named slots, in order, for d.
func (p *tqProbe) arm(d time.Duration, names ...string) {
	for _, n := range names {
		p.q.arm(p.slot(n), d)
	}
}

func (p *tqProbe) stop(names ...string) {
	for _, n := range names {
		p.q.stop(p.slot(n))
	}
}

// expect advances the clock by d and checks what fired.
func (p *tqProbe) expect(d time.Duration, want ...string) {
	p.t.Helper()
	p.log = p.log[:0]
	p.clock.Advance(d)
	if !slices.Equal(p.log, want) {
		p.t.Errorf("fired %v, want %v", p.log, want)
	}
}

// TestTimerQueueSameDuration: timers armed for one duration fire in the
// order they were armed, at their due times, those due together too.
func TestTimerQueueSameDuration(t *testing.T) {
	p := newTQProbe(t)
	p.arm(time.Second, "a", "b")
	p.clock.Advance(100 * time.Millisecond)
	p.arm(time.Second, "c", "d", "e")
	p.clock.Advance(100 * time.Millisecond)
	p.arm(time.Second, "f")
	p.expect(time.Second, "a@1s", "b@1s", "c@1.1s", "d@1.1s", "e@1.1s", "f@1.2s")
	if n := p.q.len(); n != 0 {
		t.Errorf("%d timers left", n)
	}
}

// TestTimerQueueInterleaved: timers of several durations, armed at
// different times, fire in order of due time, then of arming — whatever
// the order their durations were first used.
func TestTimerQueueInterleaved(t *testing.T) {
	p := newTQProbe(t)
	p.arm(4*time.Second, "k1")    // due 4s
	p.arm(time.Second, "e1")      // due 1s
	p.arm(32*time.Second, "f1")   // due 32s
	p.arm(2*time.Second, "e1bis") // due 2s
	p.clock.Advance(500 * time.Millisecond)
	p.arm(time.Second, "e2")    // due 1.5s
	p.arm(4*time.Second, "k2")  // due 4.5s
	p.arm(2*time.Second, "g")   // due 2.5s
	p.arm(32*time.Second, "f2") // due 32.5s
	p.expect(time.Minute, "e1@1s", "e2@1.5s", "e1bis@2s", "g@2.5s", "k1@4s", "k2@4.5s", "f1@32s", "f2@32.5s")
}

// TestTimerQueueEqualDueTimes: timers due at the same instant fire in
// arming order across durations — a FIFO's head against another's and
// against the heap's — not in the order the FIFOs were made.
func TestTimerQueueEqualDueTimes(t *testing.T) {
	p := newTQProbe(t)
	p.arm(time.Second, "w") // the FIFOs: 1s, 2s, 500ms
	p.arm(2*time.Second, "a")
	p.arm(500*time.Millisecond, "v")
	for i := 0; len(p.q.heap) == 0; i++ { // every FIFO in use: odd durations go to the heap
		p.arm(time.Duration(i+100)*time.Hour, fmt.Sprint("filler", i))
	}
	p.expect(400 * time.Millisecond)
	p.arm(1600*time.Millisecond, "h1") // due 2s, in the heap
	p.expect(600*time.Millisecond, "v@500ms", "w@1s")
	p.arm(time.Second, "c") // due 2s, in the 1s FIFO
	p.expect(200 * time.Millisecond)
	p.arm(800*time.Millisecond, "h2") // due 2s: takes over the 500ms FIFO, empty
	p.expect(300 * time.Millisecond)
	p.arm(500*time.Millisecond, "u") // due 2s, in the heap: no FIFO left
	if len(p.q.heap) != 3 {
		t.Fatalf("%d timers in the heap, want the last filler, h1 and u", len(p.q.heap))
	}
	p.expect(500*time.Millisecond, "a@2s", "h1@2s", "c@2s", "h2@2s", "u@2s")
}

// TestTimerQueueStop: stopping the first, a middle or the last timer of a
// FIFO, or its only one, leaves the others to fire in order, and stopping
// twice or a timer that fired is harmless.
func TestTimerQueueStop(t *testing.T) {
	p := newTQProbe(t)
	p.arm(time.Second, "h", "m1", "m2", "m3", "t")
	p.arm(2*time.Second, "only")
	p.stop("m2", "h", "t", "only")
	p.stop("m2")
	p.expect(time.Second, "m1@1s", "m3@1s")
	p.stop("m1") // fired: nothing to do
	p.arm(time.Second, "m2")
	p.stop("m2") // the last: the Clock timer goes too
	if n, pending := p.q.len(), p.clock.Pending(); n != 0 || pending != 0 {
		t.Errorf("%d timers queued, %d clock timers pending", n, pending)
	}
	p.expect(time.Hour)
	// The FIFO still works: armed again, the slots fire once each.
	p.arm(time.Second, "t", "h")
	p.stop("t")
	p.arm(time.Second, "t")
	p.expect(time.Second, "h@1h0m2s", "t@1h0m2s")
}

// TestTimerQueueRearm: arming an armed timer moves it, to another
// duration's FIFO or to the end of its own, and it fires once, at the
// new time.
func TestTimerQueueRearm(t *testing.T) {
	p := newTQProbe(t)
	p.arm(4*time.Second, "k", "moved", "k2")
	p.arm(2*time.Second, "f")
	p.arm(time.Second, "moved") // earlier, other FIFO
	p.arm(2*time.Second, "e")
	p.arm(8*time.Second, "f") // later, other FIFO
	p.arm(4*time.Second, "k") // to the end of its own
	p.expect(10*time.Second, "moved@1s", "e@2s", "k2@4s", "k@4s", "f@8s")
}

// TestTimerQueueManyDurations: more distinct durations than there are
// FIFOs: the rest go to the heap, timers still fire in order, the heap's
// room goes when it empties, and a FIFO left empty takes a new duration.
func TestTimerQueueManyDurations(t *testing.T) {
	p := newTQProbe(t)
	const n = 2000
	rng := rand.New(rand.NewPCG(1, 2))
	var want []string
	for _, i := range rng.Perm(n) { // the FIFOs' durations scattered among the heap's
		p.arm(time.Duration(i+1)*time.Millisecond, fmt.Sprint("d", i+1))
	}
	for i := range n {
		want = append(want, fmt.Sprintf("d%d@%v", i+1, time.Duration(i+1)*time.Millisecond))
	}
	if p.q.nfifo != maxFIFOs || len(p.q.heap) != n-maxFIFOs {
		t.Fatalf("%d FIFOs, %d timers in the heap", p.q.nfifo, len(p.q.heap))
	}
	p.expect(time.Hour, want...)
	if p.q.heap != nil {
		t.Errorf("the heap keeps room for %d timers", cap(p.q.heap))
	}
	p.arm(time.Minute, "new")
	if len(p.q.heap) != 0 {
		t.Error("a new duration went to the heap with every FIFO empty")
	}
	p.expect(time.Minute, "new@1h1m0s")
}

// TestTimerQueueClockSteppedBack: a timer armed after the clock stepped
// back is due before those armed earlier for the same duration, and fires
// first.
func TestTimerQueueClockSteppedBack(t *testing.T) {
	clock := &manualClock{now: time.Unix(1_000_000, 0)}
	var q timerQueue
	q.init(clock, 0)
	var order []string
	slot := func(name string) *timerSlot {
		return &timerSlot{owner: funcOwner(func() { order = append(order, name) }), idx: -1}
	}
	a, b, c := slot("a"), slot("b"), slot("c")
	clock.now = clock.now.Add(10 * time.Second)
	q.arm(a, time.Second) // due 11s
	q.arm(c, time.Second)
	clock.now = clock.now.Add(-2 * time.Second)
	q.arm(b, time.Second) // due 9s
	clock.now = clock.now.Add(10 * time.Second)
	q.fire()
	if want := []string{"b", "a", "c"}; !slices.Equal(order, want) {
		t.Errorf("fired %v, want %v", order, want)
	}
}

type funcOwner func()

func (f funcOwner) fire(*timerSlot, uint32) { f() }
func (funcOwner) unlink()                   {}

// TestTimerQueueClockTimer: the Clock timer is set again only when the
// earliest due time moves earlier, stopped when the queue empties.
func TestTimerQueueClockTimer(t *testing.T) {
	clock := &manualClock{now: time.Unix(1_000_000, 0)}
	var q timerQueue
	q.init(clock, 0)
	s := make([]timerSlot, 4)
	for i := range s {
		s[i] = timerSlot{owner: nopOwner{}, idx: -1}
	}
	steps := []struct {
		do   func()
		sets int
	}{
		{func() { q.arm(&s[0], 5*time.Second) }, 1},
		{func() { q.arm(&s[1], 5*time.Second) }, 1},
		{func() { q.arm(&s[2], time.Second) }, 2},
		{func() { q.stop(&s[2]) }, 2},
		{func() { q.arm(&s[2], 2*time.Second) }, 2}, // still set for 1s
		{func() { q.arm(&s[3], 32*time.Second) }, 2},
		{func() { clock.now = clock.now.Add(time.Second); q.fire() }, 3}, // nothing due: set for 2s
		{func() { q.arm(&s[2], time.Hour) }, 3},
		{func() { clock.now = clock.now.Add(time.Second); q.fire() }, 4}, // set for 5s
	}
	for i, st := range steps {
		st.do()
		if clock.sets != st.sets {
			t.Fatalf("step %d: the Clock timer set %d times, want %d", i, clock.sets, st.sets)
		}
	}
}

// TestTimerQueueModel drives a queue with random arms (of the Layer's
// durations, odd ones, zero and huge ones), stops, re-arms from firing
// timers and clock moves, against a model that fires the earliest armed
// timer, by due time then arming order, one at a time. Each timer must
// fire at its due time, in the model's order; while any is queued the
// Clock timer must be pending, and none when none is.
func TestTimerQueueModel(t *testing.T) {
	const slots = 300
	durs := []time.Duration{0, 1, 500 * time.Millisecond, time.Second, 2 * time.Second,
		4 * time.Second, 5 * time.Second, 32 * time.Second, math.MaxInt64}
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		clock := NewFakeClock(time.Unix(1_000_000, 0))
		var q timerQueue
		q.init(clock, 0)
		type fired struct {
			i     int
			at    int64
			rearm time.Duration // -1: none
		}
		var log []fired
		dur := func() time.Duration {
			if rng.IntN(4) == 0 {
				return time.Duration(rng.Int64N(int64(40 * time.Second))) // odd
			}
			return durs[rng.IntN(len(durs))]
		}
		var s [slots]timerSlot
		// The model: each slot's due time and arming order; seq 0: not armed.
		var mwhen [slots]int64
		var mseq [slots]uint64
		var seq uint64
		marm := func(i int, now int64, d time.Duration) {
			seq++
			mwhen[i], mseq[i] = satAdd(now, int64(d)), seq
		}
		for i := range s {
			s[i] = timerSlot{idx: -1, owner: funcSlotOwner(func(sl *timerSlot, sq uint32) {
				if sl.seq != sq || sq == 0 {
					return
				}
				sl.seq = 0
				f := fired{i, q.now(), -1}
				if rng.IntN(3) == 0 {
					f.rearm = dur()
					q.arm(sl, f.rearm)
				}
				log = append(log, f)
			})}
		}
		for step := range 3000 {
			i := rng.IntN(slots)
			switch op := rng.IntN(10); {
			case op < 5:
				d := dur()
				q.arm(&s[i], d)
				marm(i, q.now(), d)
			case op < 7:
				q.stop(&s[i])
				mseq[i] = 0
			default:
				adv := time.Duration(rng.Int64N(int64(3 * time.Second)))
				end := q.now() + int64(adv)
				log = log[:0]
				clock.Advance(adv)
				for k := 0; ; k++ {
					m := -1
					for j := range slots {
						if mseq[j] != 0 && mwhen[j] <= end && (m < 0 || mwhen[j] < mwhen[m] ||
							mwhen[j] == mwhen[m] && mseq[j] < mseq[m]) {
							m = j
						}
					}
					if m < 0 {
						if k != len(log) {
							t.Fatalf("seed %d step %d: %d timers fired, want %d", seed, step, len(log), k)
						}
						break
					}
					if k >= len(log) || log[k].i != m || log[k].at != mwhen[m] {
						t.Fatalf("seed %d step %d: firing %d: %+v, want slot %d at %d", seed, step, k, log[k:], m, mwhen[m])
					}
					mseq[m] = 0
					if log[k].rearm >= 0 {
						marm(m, log[k].at, log[k].rearm)
					}
				}
			}
			armed := 0
			for j := range slots {
				if mseq[j] != 0 {
					armed++
				}
			}
			if n, p := q.len(), clock.Pending(); n != armed || p != min(armed, 1) {
				t.Fatalf("seed %d step %d: %d queued, %d clock timers pending; %d armed", seed, step, n, p, armed)
			}
		}
	}
}

type funcSlotOwner func(s *timerSlot, seq uint32)

func (f funcSlotOwner) fire(s *timerSlot, seq uint32) { f(s, seq) }
func (funcSlotOwner) unlink()                         {}

// TestTimerQueueNoAllocation: in the steady state arming and stopping
// allocate nothing.
func TestTimerQueueNoAllocation(t *testing.T) {
	clock := &manualClock{now: time.Unix(1_000_000, 0)}
	var q timerQueue
	q.init(clock, 0)
	var s [2]timerSlot
	for i := range s {
		s[i] = timerSlot{owner: nopOwner{}, idx: -1}
	}
	n := testing.AllocsPerRun(100, func() {
		q.arm(&s[0], 500*time.Millisecond)
		q.arm(&s[1], 32*time.Second)
		q.stop(&s[0])
		q.stop(&s[1])
		q.arm(&s[0], 5*time.Second)
		clock.now = clock.now.Add(time.Second)
		q.fire()
	})
	if n != 0 {
		t.Errorf("%v allocations a NOTIFY", n)
	}
}

// TestTimerQueueEmptiedByTransactions: transactions answered statelessly,
// or run to their end, leave no timer queued.
func TestTimerQueueEmptiedByTransactions(t *testing.T) {
	l, clock, rec := newTestLayer(false)
	for i, method := range []string{sip.OPTIONS, sip.INVITE, sip.REGISTER, sip.INVITE} {
		req := mustRequest(t, method, fmt.Sprintf("z9hG4bKqe%d", i))
		tx, _ := l.HandleRequest(req, rec)
		if i < 2 {
			_ = tx.RespondStateless(responseTo(req, 404))
		} else {
			_ = tx.Respond(responseTo(req, 486))
		}
	}
	req := mustRequest(t, sip.SUBSCRIBE, "z9hG4bKqe9")
	l.Request(req, rec, nil)
	l.HandleResponse(responseTo(req, 200))
	if n := l.timers.len(); n != 4 {
		t.Errorf("%d timers queued, want 4 (Timers J; G and H; K)", n)
	}
	clock.Advance(time.Minute)
	if n, p := l.timers.len(), clock.Pending(); n != 0 || p != 0 {
		t.Errorf("%d queued timers, %d pending clock timers", n, p)
	}
}
